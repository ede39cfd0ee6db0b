"""platform.initialize / seed_all: the one process set-up seeds every generator as Megatron-LM does."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture
def saved_rng(single_process_parallel_state):
    """Global generators and Megatron's tracker put back after the test."""
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

    state = (random.getstate(), np.random.get_state(), torch.get_rng_state(), get_cuda_rng_tracker().get_states())
    yield
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])
    get_cuda_rng_tracker().set_states(state[3])


def _draws():
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

    with get_cuda_rng_tracker().fork():
        tracked = torch.rand(2, device=torch.device("cuda") if torch.cuda.is_available() else None).cpu()
    return random.random(), float(np.random.rand()), torch.rand(2), tracked


def test_initialize_seeds_python_numpy_torch_and_the_tracker(saved_rng):
    from megatron_prealign.platform import initialize

    initialize(seed=77)  # parallel state already up (TP=PP=1): kept, generators seeded
    got = _draws()
    # Reference: each generator seeded by hand with seed + 100 * pp_rank (pp_rank 0 here), the
    # tracker by megatron-core's own model_parallel_cuda_manual_seed.
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    random.seed(77)
    np.random.seed(77)
    torch.manual_seed(77)
    model_parallel_cuda_manual_seed(77)
    want = _draws()
    assert got[:2] == want[:2]
    assert torch.equal(got[2], want[2]) and torch.equal(got[3], want[3])
    initialize(seed=78)
    assert _draws()[0] != got[0]


def test_initialize_without_seed_leaves_generators_alone(saved_rng):
    from megatron_prealign.platform import initialize

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    initialize(seed=None)
    assert torch.equal(torch.rand(3), expected)
