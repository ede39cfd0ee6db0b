"""Process setup for evaluation: torch.distributed + Megatron parallel state (TP=1, PP=1 default)."""

from __future__ import annotations


import torch
from megatron.core import parallel_state
from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

from megatron_prealign.platform import ensure_master_port, init_distributed


def setup_eval_process(tensor_model_parallel_size: int = 1, seed: int = 1234) -> torch.device:
    """Initialise distributed + model-parallel state once (idempotent) and seed the RNGs.

    Outside torchrun (no ``MASTER_PORT`` set) a free local port is chosen, so several evaluation
    processes on one machine do not collide.

    Args:
        tensor_model_parallel_size: TP size when the parallel state is not yet initialised.
        seed: seed for torch and Megatron's model-parallel RNG tracker.

    Returns:
        The device this rank computes on.
    """
    if not torch.distributed.is_initialized():
        ensure_master_port()
    dev = init_distributed()
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(tensor_model_parallel_size=tensor_model_parallel_size)
    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed)
    return dev


def seed_model_parallel_rng(seed: int = 1234) -> None:
    """Seed torch and Megatron's model-parallel RNG tracker (needed before building a model)."""
    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed)


def is_main_rank() -> bool:
    """Whether this process writes results (rank 0, or no torch.distributed)."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
