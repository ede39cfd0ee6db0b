"""Process helpers of the evaluation tools (set-up itself is :func:`megatron_prealign.platform.initialize`)."""

from __future__ import annotations

import torch


def is_main_rank() -> bool:
    """Whether this process writes results (rank 0, or no torch.distributed)."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
