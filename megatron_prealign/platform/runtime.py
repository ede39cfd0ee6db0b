"""Choosing the device and the distributed backend, once per process."""

from __future__ import annotations

import datetime
import logging
import os

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
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # a 1-process run outside torchrun: a free port, so two tools at once do not collide
        from megatron_prealign.platform.process import ensure_master_port

        ensure_master_port()
    else:
        os.environ.setdefault("MASTER_PORT", "29500")
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
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
