"""Devices and versions: the only package that knows whether CUDA exists.

Public surface:

* :func:`initialize` — set up a process for megatron-core: :func:`init_distributed`, the
  model-parallel groups and :func:`seed_all` (the one call training, eval, tools and tests use).
* :func:`init_distributed` — initialise ``torch.distributed`` (NCCL on GPU, gloo on CPU) from
  the torchrun environment and, when CUDA is absent, activate CPU support for megatron-core.
* :func:`ensure_platform` — activate CPU support without touching ``torch.distributed``.
* :func:`device` — the device library code should put tensors on.
* :mod:`.process` — free ports, children that die with their parent, stale temp files.
* :mod:`.compat` — differences between supported megatron-core releases.
* :mod:`.errors` — ``error_line``, the one-line form of an exception.
"""

from megatron_prealign.platform.runtime import (
    cpu_support_active,
    device,
    ensure_platform,
    ensure_single_process_group,
    init_distributed,
    initialize,
    seed_all,
)

from megatron_prealign.platform.process import (
    die_with_parent,
    ensure_master_port,
    free_port,
    remove_stale_temp_files,
)

__all__ = ["cpu_support_active", "device", "die_with_parent", "ensure_master_port", "free_port",
           "remove_stale_temp_files", "ensure_platform",
           "ensure_single_process_group", "init_distributed", "initialize", "seed_all"]
