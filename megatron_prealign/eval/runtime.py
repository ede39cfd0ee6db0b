"""Process helpers of the evaluation tools (set-up itself is :func:`megatron_prealign.platform.initialize`)."""

from __future__ import annotations

import torch

# The evaluation tools' names for the platform's set-up (kept so tools need not change).
from megatron_prealign.platform import initialize as setup_eval_process  # noqa: F401
from megatron_prealign.platform import seed_all as seed_model_parallel_rng  # noqa: F401


def is_main_rank() -> bool:
    """Whether this process writes results (rank 0, or no torch.distributed)."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
