"""How aligned two languages' representations are: raw cosine, centred cosine, norm ratio.

The raw cosine of aligned pairs is dominated by a per-language offset (all clone rows share a
direction that English rows lack, and vice versa) that costs nothing downstream: a model that
maps ``x`` and ``x + offset`` alike transfers perfectly. The *centred* cosine removes each
language's mean representation first, so it measures what transfer needs (the relative geometry
of the words). The norm ratio tells whether the target language's representations have the same
scale as the source's (a rescaled copy still hurts the downstream layers).

Pure tensor functions; the training log and ``tools/eval_similarity.py`` both report them.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

__all__ = ["alignment_stats"]


@torch.no_grad()
def alignment_stats(
    src: torch.Tensor,
    tgt: torch.Tensor,
    src_mean: Optional[torch.Tensor] = None,
    tgt_mean: Optional[torch.Tensor] = None,
) -> Dict[str, float]:
    """Alignment statistics of ``N`` aligned pairs (row ``i`` of ``src`` <-> row ``i`` of ``tgt``).

    Args:
        src: ``[N, d]`` source-language representations (e.g. English embedding rows or pooled
            hidden states of English words).
        tgt: ``[N, d]`` their translations' representations.
        src_mean: ``[d]`` the source language's mean representation to remove for the centred
            cosine (e.g. the mean of all English embedding rows); default the mean of ``src``.
        tgt_mean: ``[d]`` the same for the target language; default the mean of ``tgt``.

    Returns:
        ``raw_cosine``: mean of ``cos(src_i, tgt_i)``; ``centred_cosine``: mean of
        ``cos(src_i - src_mean, tgt_i - tgt_mean)``; ``norm_ratio``: mean ``||tgt_i||`` over
        mean ``||src_i||``; ``pairs``: ``N``.
    """
    if src.dim() != 2 or src.shape != tgt.shape:
        raise ValueError(f"alignment_stats: src and tgt must both be [N, d], got {tuple(src.shape)} and {tuple(tgt.shape)}")
    if src.shape[0] == 0:
        raise ValueError("alignment_stats: no aligned pairs")
    src = src.double()
    tgt = tgt.double()
    src_mean = src.mean(0) if src_mean is None else src_mean.double()
    tgt_mean = tgt.mean(0) if tgt_mean is None else tgt_mean.double()
    raw = torch.nn.functional.cosine_similarity(src, tgt, dim=1, eps=1e-12)
    centred = torch.nn.functional.cosine_similarity(src - src_mean, tgt - tgt_mean, dim=1, eps=1e-12)
    norm_ratio = tgt.norm(dim=1).mean() / src.norm(dim=1).mean().clamp_min(1e-12)
    return {
        "raw_cosine": float(raw.mean()),
        "centred_cosine": float(centred.mean()),
        "norm_ratio": float(norm_ratio),
        "pairs": int(src.shape[0]),
    }
