"""Setting up a process: the device, the distributed backend, model-parallel groups and seeds."""

from __future__ import annotations

import datetime
import logging
import os
from typing import Optional

import torch

logger = logging.getLogger(__name__)


def cpu_support_active() -> bool:
    """Whether megatron-core has been patched to run on CPU in this process."""
    from megatron_prealign.platform import cpu

    return cpu.is_active()


def ensure_platform() -> torch.device:
    """Make megatron-core usable on this machine and return the device to compute on.

    On a machine with CUDA this does nothing but pick the GPU of ``LOCAL_RANK``. Without CUDA it
    activates :mod:`megatron_prealign.platform.cpu` (idempotent).
    """
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    from megatron_prealign.platform import cpu

    cpu.activate()
    return torch.device("cpu")


def device() -> torch.device:
    """The device that model inputs and buffers belong on in this process."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_distributed(timeout_minutes: float = 10.0) -> torch.device:
    """Initialise ``torch.distributed`` from torchrun's environment (or a 1-process default).

    NCCL is used when CUDA is available, gloo otherwise. Safe to call twice.

    Args:
        timeout_minutes: collective timeout; a hang becomes an error after this long.

    Returns:
        The device this rank computes on.
    """
    dev = ensure_platform()
    if torch.distributed.is_initialized():
        return dev
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        # a 1-process run outside torchrun: a free port, so two tools at once do not collide
        from megatron_prealign.platform.process import ensure_master_port

        ensure_master_port()
    else:
        os.environ.setdefault("MASTER_PORT", "29500")
    rank = int(os.environ.get("RANK", "0"))
    backend = "nccl" if dev.type == "cuda" else "gloo"
    torch.distributed.init_process_group(
        backend=backend,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(minutes=timeout_minutes),
    )
    if rank == 0:
        logger.info("torch.distributed: backend=%s world_size=%d device=%s", backend, world_size, dev)
    return dev


def ensure_single_process_group() -> bool:
    """A 1-process gloo group (in-memory store, no port) for single-process tools that read
    ``dist_checkpointing`` checkpoints, which need a process group but no model-parallel state.

    Returns:
        Whether a group was created here (the caller destroys it when done).

    Raises:
        ValueError: a group of several processes exists (the caller must run in one process).
    """
    if torch.distributed.is_initialized():
        if torch.distributed.get_world_size() != 1:
            raise ValueError("this runs in one process; do not launch it with torchrun")
        return False
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    return True


def seed_all(seed: int = 1234) -> None:
    """Seed Python's, NumPy's and torch's generators and Megatron's model-parallel RNG tracker.

    As Megatron-LM: every generator gets ``seed + 100 * pp_rank``, and
    ``model_parallel_cuda_manual_seed`` derives the TP-aware streams from it. Needs the
    model-parallel state (:func:`initialize`).
    """
    import random

    import numpy as np
    from megatron.core import parallel_state, tensor_parallel

    rank_seed = seed + 100 * parallel_state.get_pipeline_model_parallel_rank()
    random.seed(rank_seed)
    np.random.seed(rank_seed)
    torch.manual_seed(rank_seed)
    tensor_parallel.model_parallel_cuda_manual_seed(rank_seed)


def initialize(tensor_model_parallel_size: int = 1, pipeline_model_parallel_size: int = 1,
               seed: Optional[int] = 1234, timeout_minutes: float = 10.0) -> torch.device:
    """Set up this process for megatron-core: the one place training, eval, tools and tests do it.

    CPU support where CUDA is absent, ``torch.distributed`` from torchrun's environment
    (:func:`init_distributed`), megatron-core's model-parallel groups (TP x PP, DP fills the
    rest; an existing parallel state is kept as it is), then :func:`seed_all`.

    Args:
        tensor_model_parallel_size: ``--tensor-model-parallel-size``.
        pipeline_model_parallel_size: ``--pipeline-model-parallel-size``.
        seed: ``--seed``; ``None`` leaves every generator as it is.
        timeout_minutes: collective timeout.

    Returns:
        The device this rank computes on.

    Raises:
        ValueError: TP x PP does not divide the number of processes (one line naming the flags).
    """
    from megatron.core import parallel_state

    dev = init_distributed(timeout_minutes)
    world = torch.distributed.get_world_size()
    model_parallel = tensor_model_parallel_size * pipeline_model_parallel_size
    if tensor_model_parallel_size < 1 or pipeline_model_parallel_size < 1 or world % model_parallel:
        # megatron-core would fail with a traceback (or an assertion) deep in its group setup.
        raise ValueError(
            f"--tensor-model-parallel-size {tensor_model_parallel_size} x --pipeline-model-parallel-size "
            f"{pipeline_model_parallel_size} = {model_parallel} must divide the number of processes ({world}); "
            f"launch a multiple of {model_parallel} processes (torchrun --nproc-per-node) or lower the sizes")
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=tensor_model_parallel_size,
            pipeline_model_parallel_size=pipeline_model_parallel_size,
        )
    if seed is not None:
        seed_all(seed)
    return dev
