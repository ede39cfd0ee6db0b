"""alignment_stats against hand-computed cases."""

import math

import pytest
import torch

from megatron_prealign.model.alignment_metrics import alignment_stats


def test_offset_is_removed_by_centring():
    torch.manual_seed(0)
    src = torch.randn(50, 8)
    offset = torch.full((8,), 3.0)
    stats = alignment_stats(src, src + offset)
    assert stats["centred_cosine"] == pytest.approx(1.0, abs=1e-9)
    assert stats["raw_cosine"] < 0.9  # the offset dominates the raw cosine
    assert stats["pairs"] == 50


def test_hand_case():
    src = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tgt = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    stats = alignment_stats(src, tgt, src_mean=torch.zeros(2), tgt_mean=torch.zeros(2))
    assert stats["raw_cosine"] == pytest.approx((1.0 + 1 / math.sqrt(2)) / 2)
    assert stats["centred_cosine"] == pytest.approx(stats["raw_cosine"])
    assert stats["norm_ratio"] == pytest.approx((2.0 + math.sqrt(2)) / 2)


def test_shape_errors():
    with pytest.raises(ValueError):
        alignment_stats(torch.zeros(3, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError):
        alignment_stats(torch.zeros(0, 2), torch.zeros(0, 2))
