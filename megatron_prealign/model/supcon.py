"""The supervised contrastive loss of PreAlign (paper Eq. 2; Khosla et al. 2020, ``L_out``).

Small pure functions of tensors; no model, no process group. The distributed attachment lives in
:mod:`megatron_prealign.model.prealign`.

For a set of rows with labels (rows with the same label are translations of one source word),
every row ``i`` with at least one positive is an anchor::

    l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip / tau) / sum_{a in A(i)} exp(s_ia / tau) )

with ``s`` the cosine similarity (features L2-normalised in float32; the paper's "sim is the
cosine similarity function"), ``A(i)`` every other valid row (the self pair is excluded from
the numerator and the denominator), ``P(i)`` the rows of ``A(i)`` with ``i``'s label. The loss is
the mean of ``l_i`` over anchors that have a positive. Rows with a negative label are padding and
take no part. Computed as ``logsumexp_a(s_ia - mean_p s_ip) / tau`` (one similarity matrix, no
``[A, C]`` masks; the positive term comes from per-label sums of the candidates).

Differences from the authors' released code (Saltychtao/PreAlign, ``ContrastiveMultiMetric``),
which we do not follow because they contradict Eq. 2 / SupCon: there the self logit is zeroed
but kept in the denominator and the self pair counts as a positive, and the per-level losses
are averaged instead of summed (Eq. 3).
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = ["supcon_loss", "supcon_terms"]


class _MaskedLogSumExpOfProducts(torch.autograd.Function):
    """``logsumexp_j ((a @ c^T)[..., i, j] - shift[..., i])`` with the pairs ``(rows[k], cols[k])`` left out.

    Shifting by the anchor's mean positive logit makes the result the per-anchor loss itself, so
    it stays exact for large logits (small tau) instead of a difference of two large numbers.

    The same value as ``torch.logsumexp`` on the masked product, at a fraction of its cost: the
    ``[..., K, C]`` matrix is built once and exponentiated in place, and the backward reuses it
    (softmax = stored exp / row sum) instead of recomputing ``exp(x - lse)``.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, c: torch.Tensor, shift: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
                ) -> torch.Tensor:
        e = torch.matmul(a, c.transpose(-1, -2))
        e.sub_(shift.unsqueeze(-1))
        e[..., rows, cols] = float("-inf")
        row_max = e.amax(dim=-1, keepdim=True)
        e.sub_(row_max).exp_()  # <= 1; the row maximum gives 1, so the sum is >= 1
        total = e.sum(dim=-1, keepdim=True)
        ctx.save_for_backward(a, c, e, total)
        return (total.log() + row_max).squeeze(-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, c, e, total = ctx.saved_tensors
        p = e.mul_(grad.unsqueeze(-1) / total)  # softmax x grad; e is not needed again
        return torch.matmul(p, c), torch.matmul(p.transpose(-1, -2), a), -grad, None, None


def supcon_terms(
    anchors: torch.Tensor,
    anchor_labels: torch.Tensor,
    anchor_index: torch.Tensor,
    candidates: torch.Tensor,
    candidate_labels: torch.Tensor,
    temperature: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sum of per-anchor SupCon losses of ``anchors`` against ``candidates``, and the anchor count.

    The building block for data parallelism: each rank passes its own rows as anchors and the
    rows gathered from all ranks as candidates; the global loss is the sum of the ranks' sums
    divided by the global anchor count.

    Args:
        anchors: ``[..., A, D]`` features (leading dims, e.g. levels, are batched).
        anchor_labels: ``[A]`` integer labels; negative = padding (never an anchor).
        anchor_index: ``[A]`` position of each anchor among the candidates (its self pair), or
            -1 when the anchor is not a candidate.
        candidates: ``[..., C, D]`` features.
        candidate_labels: ``[C]`` integer labels; negative = padding (never a candidate).
        temperature: ``tau`` > 0.

    Returns:
        ``(loss_sum [...], num_anchors [])``: the summed per-anchor losses over anchors having at
        least one positive (float32), and how many such anchors there are (int64, same for all
        leading dims). ``loss_sum`` is 0 (still differentiable) when there is none.
    """
    if temperature <= 0:
        raise ValueError(f"supcon: temperature must be > 0, got {temperature}")
    if anchors.shape[-1] != candidates.shape[-1]:
        raise ValueError(f"supcon: feature sizes differ: {anchors.shape[-1]} vs {candidates.shape[-1]}")
    num_anchor, num_cand = anchors.shape[-2], candidates.shape[-2]
    if anchor_labels.shape != (num_anchor,) or anchor_index.shape != (num_anchor,):
        raise ValueError(f"supcon: anchor labels/index must be [{num_anchor}]")
    if candidate_labels.shape != (num_cand,):
        raise ValueError(f"supcon: candidate labels must be [{num_cand}], got {tuple(candidate_labels.shape)}")

    # Positive counts from per-label counts, not an [A, C] mask: the cost stays one matmul and
    # one logsumexp over the [A, C] logits (the step's dominant term for large word batches).
    device = candidate_labels.device
    cand_valid = candidate_labels >= 0
    _, inverse = torch.unique(torch.cat([candidate_labels, anchor_labels]), return_inverse=True)
    cand_ids, anchor_ids = inverse[:num_cand], inverse[num_cand:]
    label_counts = torch.zeros(int(inverse.max()) + 1, dtype=torch.int64, device=device)
    label_counts.index_add_(0, cand_ids[cand_valid], torch.ones_like(cand_ids[cand_valid]))
    has_self = anchor_index >= 0
    self_col = anchor_index.clamp(min=0)
    self_same = has_self & cand_valid[self_col] & (candidate_labels[self_col] == anchor_labels)
    num_pos = torch.where(anchor_labels >= 0, label_counts[anchor_ids] - self_same.long(), 0)
    keep = (num_pos > 0).nonzero(as_tuple=True)[0]
    num_anchors = keep.numel()
    if num_anchors == 0:
        return anchors.float().sum(dim=(-1, -2)) * 0.0, torch.tensor(0, dtype=torch.int64)

    valid_cols = cand_valid.nonzero(as_tuple=True)[0]
    a = F.normalize(anchors.float().index_select(-2, keep), dim=-1) / temperature
    c = F.normalize(candidates.float().index_select(-2, valid_cols), dim=-1)
    # Mean positive logit = a_i . (sum of its label's candidates - itself) / |P(i)|.
    new_col = torch.cumsum(cand_valid.long(), 0) - 1
    self_keep = self_same[keep]
    label_sums = c.new_zeros(c.shape[:-2] + (label_counts.numel(), c.shape[-1]))
    label_sums = label_sums.index_add(-2, cand_ids[valid_cols], c)
    pos_sum = label_sums.index_select(-2, anchor_ids[keep])
    self_feature = c.index_select(-2, new_col[self_col[keep]].clamp(min=0)) * self_keep.unsqueeze(1).to(c.dtype)
    mean_pos_logit = (a * (pos_sum - self_feature)).sum(-1) / num_pos[keep].to(a.dtype)
    rows = self_keep.nonzero(as_tuple=True)[0]
    # l_i = logsumexp_{a in A(i)} s_ia - mean_p s_ip = logsumexp_a (s_ia - mean_p s_ip)
    per_anchor = _MaskedLogSumExpOfProducts.apply(a, c, mean_pos_logit, rows, new_col[self_col[keep][rows]])
    return per_anchor.sum(dim=-1), torch.tensor(num_anchors, dtype=torch.int64)


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (SupCon ``L_out``, cosine similarity) over one batch.

    Args:
        features: ``[N, D]`` (or ``[..., N, D]``, batched over leading dims) word representations.
        labels: ``[N]`` source-word ids; rows with equal labels are positives; negative = padding.
        temperature: ``tau`` (``--prealign-temperature``, paper default 0.1).

    Returns:
        The mean over anchors that have at least one positive (a scalar, or ``[...]``).

    Raises:
        ValueError: if no row has a positive (the batch holds no aligned pair).
    """
    if features.dim() < 2:
        raise ValueError(f"supcon_loss: features must be [N, D], got shape {tuple(features.shape)}")
    index = torch.arange(features.shape[-2], device=features.device)
    total, count = supcon_terms(features, labels, index, features, labels, temperature)
    if int(count) == 0:
        raise ValueError("supcon_loss: the batch has no positive pair (every label occurs once)")
    return total / count.to(total.device, total.dtype)
