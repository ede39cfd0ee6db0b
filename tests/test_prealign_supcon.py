"""supcon_loss / supcon_terms against a naive per-anchor loop and a hand-computed case."""

from __future__ import annotations

import math

import pytest
import torch

from megatron_prealign.model.supcon import supcon_loss, supcon_terms


def naive_supcon(features: torch.Tensor, labels, temperature: float) -> torch.Tensor:
    """Khosla et al. L_out written out anchor by anchor (float64, no tricks)."""
    x = features.double()
    x = x / x.norm(dim=1, keepdim=True)
    labels = [int(v) for v in labels]
    losses = []
    for i, yi in enumerate(labels):
        if yi < 0:
            continue
        others = [a for a, ya in enumerate(labels) if a != i and ya >= 0]
        positives = [p for p in others if labels[p] == yi]
        if not positives:
            continue
        denom = sum(torch.exp(x[i] @ x[a] / temperature) for a in others)
        terms = [torch.log(torch.exp(x[i] @ x[p] / temperature) / denom) for p in positives]
        losses.append(-sum(terms) / len(positives))
    return sum(losses) / len(losses)


def test_hand_computed_three_rows():
    # cos(f0, f1) = 0, cos(f0, f2) = 1, cos(f1, f2) = 0; the norms must not matter.
    features = torch.tensor([[2.0, 0.0], [0.0, 3.0], [5.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    # anchor 0: -log(e^0 / (e^0 + e^1)); anchor 1: -log(e^0 / (e^0 + e^0)); row 2 has no positive.
    expected = (math.log(1 + math.e) + math.log(2)) / 2
    assert supcon_loss(features, labels, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    # temperature 0.5 doubles every logit
    expected_half = (math.log(1 + math.exp(2)) + math.log(2)) / 2
    assert supcon_loss(features, labels, temperature=0.5).item() == pytest.approx(expected_half, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_loop_value_and_gradient(seed):
    gen = torch.Generator().manual_seed(seed)
    n, d = 13, 8
    labels = torch.randint(0, 5, (n,), generator=gen)
    labels[3] = -1  # padding row
    features = torch.randn(n, d, generator=gen, dtype=torch.float64)
    a = features.clone().float().requires_grad_(True)
    b = features.clone().requires_grad_(True)
    ours = supcon_loss(a, labels, 0.1)
    ref = naive_supcon(b, labels, 0.1)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad.double(), b.grad, rtol=1e-4, atol=1e-6)
    assert a.grad[3].abs().max() == 0  # padding takes no part


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_naive_loop(dtype):
    """The loss as training runs it on a GPU (float32 / bf16 pooled states) against the CPU loop."""
    gen = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 6, (64,), generator=gen)
    features = torch.randn(64, 32, generator=gen, dtype=torch.float64)
    a = features.to("cuda", dtype).requires_grad_(True)
    ours = supcon_loss(a, labels.cuda(), 0.1)
    ref = naive_supcon(features.clone().requires_grad_(True), labels, 0.1)
    assert ours.device.type == "cuda"
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    assert ours.item() == pytest.approx(ref.item(), rel=tol)
    ours.backward()
    assert torch.isfinite(a.grad).all()


def test_large_logits_are_stable():
    # tau = 1e-3: logits of 1000 overflow exp() without the max subtraction. A positive and a
    # negative with the same similarity give log 2 for each anchor at any temperature.
    features = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    with torch.no_grad():
        assert not torch.isfinite(naive_supcon(features, labels, 1e-3))  # the naive loop overflows
    value = supcon_loss(features.requires_grad_(True), labels, 1e-3)
    assert value.item() == pytest.approx(math.log(2), rel=1e-6)
    value.backward()
    assert torch.isfinite(features.grad).all()


def test_batched_levels_equal_per_level_calls():
    gen = torch.Generator().manual_seed(5)
    feats = torch.randn(3, 10, 6, generator=gen)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 5])
    batched = supcon_loss(feats, labels, 0.2)
    assert batched.shape == (3,)
    for level in range(3):
        assert batched[level].item() == pytest.approx(supcon_loss(feats[level], labels, 0.2).item(), rel=1e-6)


def test_anchor_split_sums_to_the_whole():
    """The data-parallel decomposition: ranks' anchor sums / global count = the full loss."""
    gen = torch.Generator().manual_seed(7)
    feats = torch.randn(12, 5, generator=gen)
    labels = torch.tensor([0, 1, 2, 0, 1, 3, 2, 4, 4, 5, -1, 3])
    total, count = torch.zeros(()), 0
    for part in (slice(0, 5), slice(5, 12)):
        index = torch.arange(12)[part]
        s, c = supcon_terms(feats[part], labels[part], index, feats, labels, 0.1)
        total, count = total + s, count + int(c)
    assert (total / count).item() == pytest.approx(supcon_loss(feats, labels, 0.1).item(), rel=1e-6)


def test_anchor_without_positive_is_excluded():
    features = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 0, 1, 2, 3])
    full = supcon_loss(features, labels, 0.1)
    # Same as the naive loop that skips anchors 2..4 as anchors but keeps them as negatives.
    assert full.item() == pytest.approx(naive_supcon(features, labels, 0.1).item(), rel=1e-5)


def test_no_positive_pair_is_a_clear_error():
    with pytest.raises(ValueError, match="no positive pair"):
        supcon_loss(torch.randn(4, 3), torch.tensor([0, 1, 2, -1]), 0.1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        supcon_loss(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), 0.0)
    with pytest.raises(ValueError, match="labels"):
        supcon_loss(torch.randn(4, 3), torch.tensor([0, 0, 1]), 0.1)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        supcon_loss(torch.randn(4), torch.tensor([0, 0, 1, 1]), 0.1)
