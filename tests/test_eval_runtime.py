"""Evaluation process setup is idempotent and seeds Megatron's RNG tracker."""

import torch


def test_setup_is_idempotent_and_seeds(single_process_parallel_state):
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    from megatron_prealign.platform import initialize, seed_all

    dev = initialize(seed=5)
    assert dev.type in ("cpu", "cuda") and parallel_state.model_parallel_is_initialized()
    assert "model-parallel-rng" in get_cuda_rng_tracker().get_states()
    seed_all(7)
    a = torch.rand(3)
    seed_all(7)
    assert torch.equal(a, torch.rand(3))
