"""The PreAlign contrastive pre-alignment loss on Megatron-Core's GPTModel (paper §3.1, Eq. 1-4).

Public API (used by ``megatron_prealign.training`` / ``pretrain_prealign.py``):

* :class:`PreAlignLossConfig` — temperature, levels, loss weights.
* :class:`PreAlignForwardStep` — a Megatron ``forward_step_func(data_iterator, model)`` for
  ``get_forward_backward_func()``. The data iterator yields microbatch dicts of two kinds:
  ``kind == "prealign"`` (from :class:`~megatron_prealign.model.word_batches.WordBatchSampler`:
  one word per row, ``[num_words, max_word_len]``) and LM microbatches (``kind == "lm"`` or no
  ``kind``; Megatron's keys ``tokens``, ``labels``, ``loss_mask``, ``position_ids``,
  ``attention_mask``; ``[mbs, seq]``).
* :func:`forward_backward_step` — one optimizer step's forward/backward: one schedule call for
  the LM microbatches and one for the pre-alignment microbatches (each with its own
  ``seq_length`` / ``micro_batch_size``), gradients accumulating in the DDP buffers.
* :class:`LevelLossTracker` — per-level alignment losses for logging (reduce across PP/DP).
* :func:`aligned_cosine_similarity` — mean cosine similarity of aligned words per level (Fig. 5).
* :func:`resolve_levels`, :func:`level_name`, :func:`pooled_level_features`, :func:`alignment_level_losses` — the building blocks.

Levels (``--prealign-levels``): 0 = input embedding (token-embedding rows), ``1..L`` = output of
transformer layer ``l`` (before the final norm), ``L+1`` = output embedding (LM-head rows; with
tied embeddings the same matrix as level 0). Each word's representation at a level is the mean
over its subwords (Eq. 1). Per level the supervised contrastive loss of
:mod:`megatron_prealign.model.supcon` (cosine similarity / tau); levels are summed (Eq. 3), or averaged with
``level_reduction='mean'`` (the authors' code).

Loss scaling (Eq. 4). With ``M_a`` pre-alignment and ``M_l`` LM microbatches per step, the step
minimises::

    align_weight * mean_{pre-alignment mb} sum_levels SupCon  +  lm_weight * mean_{LM mb} CE

(``sum_levels`` becomes ``mean_levels`` with ``level_reduction='mean'``)

A :class:`PreAlignForwardStep` is told the ``M`` passed to its schedule call and ``M_a`` among
them; each microbatch's returned loss is multiplied by ``M / M_a`` resp. ``M / M_l`` and
Megatron's schedule divides by ``M`` (:func:`forward_backward_step` runs the kinds in separate
calls, ``M = M_a`` and ``M = M_l``). ``calculate_per_token_loss`` is not supported.

Parallelism (applied around the model, not inside it):

* Each word is a row of its own (positions from 0, right padding), run with the model's plain
  causal attention and no attention mask, so the same layer spec serves pretraining and
  pre-alignment (TransformerEngine / flash attention / fused softmax included). Under PP every
  stage builds the same microbatches (deterministic sampler), so all agree on the shape given to
  the schedule; with sequence parallelism the word length is rounded up to a multiple of TP.
* Layer outputs are captured with forward hooks on ``decoder.layers[i]`` (``layer_number`` is
  global, 1-based). With sequence parallelism each TP rank pools its sequence shard and the
  partial sums are all-reduced over TP (forward all-reduce, backward identity) — cheaper than
  gathering the hidden states. Embedding rows are vocab-parallel lookups (masked lookup of this
  rank's vocabulary shard, partial sums all-reduced over TP, like ``VocabParallelEmbedding``).
* PP: each stage computes the SupCon of the levels it holds (level 0 on the first stage, the
  output embedding on the last). A non-last stage injects its loss into the backward with
  ``MoEAuxLossAutoScaler.apply(output, loss)``; the scale ``grad_scale / M`` is set here (the
  schedule only sets it for MoE models). The last stage returns its levels' loss from the loss
  function. The LM head is skipped on pre-alignment microbatches.
* DP: pooled features are gathered with gradient over the data-parallel group only; each rank
  uses its own rows as anchors against all gathered rows and scales its sum by
  ``dp_size / global anchor count``, so that Megatron DDP's gradient averaging yields exactly the
  gradient of the loss on the concatenated global batch. The contrastive batch of one
  pre-alignment microbatch index is the words of all DP ranks.

Cost. A pre-alignment microbatch runs the embedding and the decoder on ``[num_words,
max_word_len]`` tokens but skips the LM head and cross entropy; it adds the pooling (a masked sum
over each row) and, per level, a ``[W, dp*W]`` similarity matrix over the real words only
(``W`` = this rank's words; padding rows never reach the loss); activation memory of the loss is
about ``levels * W * dp * W * 12`` bytes. ``bench/bench_prealign_step.py`` prints the time ratio
to an LM step of the same token count.

Known simplification: two different source words whose rows happen to have identical token ids
(a shared translation) are negatives of each other, as in the authors' code.

Not supported (clear errors): context parallelism, full activation recompute (hooks would see
no-grad outputs), ``calculate_per_token_loss``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import partial
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region
from megatron.core.transformer.moe.moe_utils import MoEAuxLossAutoScaler
from megatron.core.utils import get_model_config, unwrap_model

from megatron_prealign.model.supcon import supcon_terms
from megatron_prealign.model.word_batches import pad_word_batch
from megatron_prealign.platform import device as platform_device

__all__ = [
    "PreAlignLossConfig",
    "PreAlignForwardStep",
    "LevelLossTracker",
    "forward_backward_step",
    "aligned_cosine_similarity",
    "parse_levels",
    "resolve_levels",
    "level_name",
    "pooled_level_features",
    "alignment_level_losses",
    "output_embedding_weight",
]


@dataclass
class PreAlignLossConfig:
    """The pre-alignment objective (paper Eq. 2-4); its fields name their ``pretrain_prealign.py`` flags.

    Raises:
        ValueError: a non-positive temperature, a negative weight, an unknown reduction or
            malformed levels (one line naming the flag).
    """

    temperature: float = field(default=0.1, metadata={"flag": "--prealign-temperature"})
    """SupCon temperature tau of the alignment loss (> 0)."""
    levels: Optional[Sequence[int]] = field(default=None, metadata={"flag": "--prealign-levels", "default": "all",
                                                                                 "type": str})
    """Levels aligned: "all" or comma-separated levels, 0 = input embedding, 1..L = layers, L+1 =
    output embedding (as text, parsed by :func:`parse_levels`; ``None`` = all)."""
    align_weight: float = field(default=1.0, metadata={"flag": "--prealign-weight", "aliases": ("--prealign-align-weight",),
                                                       "dest": "prealign_align_weight"})
    """Alignment loss weight whenever it is active (default 1, paper Eq. 4; the authors' code
    uses 0.1 with --prealign-level-reduction mean; see docs/prealign-weighting.md)."""
    lm_weight: float = field(default=1.0, metadata={"flag": "--prealign-lm-weight"})
    """Auxiliary LM loss weight in the init/post alignment stage (Eq. 4; 0 = none)."""
    level_reduction: str = field(default="sum", metadata={"flag": "--prealign-level-reduction",
                                                          "choices": ("sum", "mean")})
    """Combine the per-level losses by sum (default, paper Eq. 3) or mean (the authors' released
    code)."""

    def __post_init__(self) -> None:
        if isinstance(self.levels, str):
            self.levels = parse_levels(self.levels)
        if self.temperature <= 0:
            raise ValueError(f"--prealign-temperature must be > 0, got {self.temperature}")
        if self.align_weight < 0 or self.lm_weight < 0:
            raise ValueError("--prealign-lm-weight and --prealign-weight must be >= 0")
        if self.level_reduction not in ("sum", "mean"):
            raise ValueError(f"--prealign-level-reduction must be 'sum' or 'mean', got {self.level_reduction!r}")

    def level_scale(self, num_levels: int) -> float:
        """Factor on the per-level sum: 1 for ``sum``, ``1 / num_levels`` (all levels, over
        every PP stage) for ``mean``."""
        return 1.0 / num_levels if self.level_reduction == "mean" else 1.0


# ----------------------------------------------------------------------------------- levels


def parse_levels(text: str) -> Optional[List[int]]:
    """``"all"`` -> ``None``; ``"0,3,6"`` -> ``[0, 3, 6]`` (``--prealign-levels``)."""
    if text.strip().lower() == "all":
        return None
    try:
        levels = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--prealign-levels: expected 'all' or comma-separated integers, got {text!r}") from None
    if not levels or levels[0] < 0:
        raise ValueError(f"--prealign-levels: levels must be non-negative integers, got {text!r}")
    return levels


def resolve_levels(levels: Optional[Sequence[int]], num_layers: int) -> Tuple[int, ...]:
    """Sorted, validated levels; ``None`` means all ``0..num_layers+1``."""
    if levels is None:
        return tuple(range(num_layers + 2))
    out = tuple(sorted({int(x) for x in levels}))
    if not out:
        raise ValueError("prealign levels: empty selection")
    bad = [x for x in out if not 0 <= x <= num_layers + 1]
    if bad:
        raise ValueError(f"prealign levels {bad} outside 0..{num_layers + 1} (0 = embedding, {num_layers + 1} = output)")
    return out


def level_name(level: int, num_layers: int) -> str:
    """``emb``, ``layer{l}`` or ``out`` (for logs)."""
    if level == 0:
        return "emb"
    if level == num_layers + 1:
        return "out"
    return f"layer{level}"


def stage_levels(gpt: torch.nn.Module, levels: Sequence[int]) -> Tuple[int, ...]:
    """The subset of ``levels`` this PP stage (TP shard) of ``gpt`` can compute."""
    num_layers = gpt.config.num_layers
    here = set()
    if gpt.pre_process:
        here.add(0)
    if gpt.post_process:
        here.add(num_layers + 1)
    here.update(layer.layer_number for layer in gpt.decoder.layers)
    return tuple(x for x in levels if x in here)


# ----------------------------------------------------------------------------------- checks


def check_model_supported(gpt: torch.nn.Module) -> None:
    """Raise if this model cannot run pre-alignment microbatches correctly."""
    if getattr(gpt, "_prealign_supported", False):
        return
    cfg = gpt.config
    if parallel_state.get_context_parallel_world_size() > 1:
        raise NotImplementedError("pre-alignment does not support context parallelism")
    if getattr(cfg, "recompute_granularity", None) == "full":
        raise NotImplementedError(
            "pre-alignment reads layer outputs with hooks; full activation recompute hides them "
            "(use --recompute-granularity selective or none)"
        )
    if getattr(cfg, "calculate_per_token_loss", False):
        raise NotImplementedError("pre-alignment does not support calculate_per_token_loss")
    gpt._prealign_supported = True


# ----------------------------------------------------------------------------------- pooling


def _row_sums(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``out[b] = sum_s weights[s, b] * values[s, b]`` in float32 (``values [s, b, h]``)."""
    return torch.einsum("sb,sbh->bh", weights, values.float())


def _vocab_shard_row_sums(weight: torch.Tensor, vocab_start: int, token_ids: torch.Tensor, valid: torch.Tensor
                          ) -> torch.Tensor:
    """Per-row sums of the rows of a vocab-parallel ``weight`` shard at ``token_ids [b, s]``
    where ``valid [b, s]`` (partial over TP: ids outside this shard contribute zero)."""
    local = token_ids - vocab_start
    inside = (local >= 0) & (local < weight.shape[0]) & valid
    rows = torch.nn.functional.embedding(local.clamp(0, weight.shape[0] - 1), weight)  # [b, s, h]
    return _row_sums(rows.transpose(0, 1), inside.t().to(torch.float32))


@contextlib.contextmanager
def _capture_layer_outputs(gpt: torch.nn.Module, layer_numbers: Iterable[int]):
    wanted = set(layer_numbers)
    store: Dict[int, torch.Tensor] = {}
    handles = []

    def hook(module, args, output, number):
        store[number] = output[0] if isinstance(output, (tuple, list)) else output

    for layer in gpt.decoder.layers:
        if layer.layer_number in wanted:
            handles.append(layer.register_forward_hook(partial(hook, number=layer.layer_number)))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _without_lm_head(gpt: torch.nn.Module):
    """Make GPTModel return the decoder output instead of computing logits (no LM head)."""
    saved = gpt.post_process
    gpt.post_process = False
    try:
        yield
    finally:
        gpt.post_process = saved


def output_embedding_weight(gpt: torch.nn.Module) -> torch.Tensor:
    """The output layer's weight (this rank's vocabulary shard): the input embedding when tied."""
    if gpt.share_embeddings_and_output_weights:
        return gpt.shared_embedding_or_output_weight()
    return gpt.output_layer.weight


MAX_LENGTH_BUCKETS = 8
"""At most this many model calls per pre-alignment microbatch on a single-stage model."""


def _length_buckets(lengths: torch.Tensor, length: int, multiple: int) -> List[Tuple[torch.Tensor, int]]:
    """Rows grouped by word length: ``[(row indices, padded length)]``, longest group last.

    One group per distinct length (rounded up to ``multiple``, the TP size under sequence
    parallelism), the longest ones merged so that there are at most :data:`MAX_LENGTH_BUCKETS`.
    Padding rows (length 0) join the shortest group.
    """
    lengths = lengths.cpu().clamp(min=1)
    rounded = (lengths + multiple - 1) // multiple * multiple
    distinct = torch.unique(rounded).tolist()
    if len(distinct) > MAX_LENGTH_BUCKETS:
        distinct = distinct[: MAX_LENGTH_BUCKETS - 1] + [distinct[-1]]
    out = []
    lower = 0
    for width in distinct:
        rows = ((rounded > lower) & (rounded <= width)).nonzero(as_tuple=True)[0]
        if rows.numel():
            out.append((rows, min(int(width), length)))
        lower = width
    return out


def _run_and_pool_layers(
    model: torch.nn.Module, gpt: torch.nn.Module, tokens: torch.Tensor, valid: torch.Tensor,
    layer_levels: Sequence[int],
) -> Tuple[Dict[int, torch.Tensor], Optional[torch.Tensor], bool]:
    """Run the model on ``tokens [b, s]`` and sum each row's valid positions at ``layer_levels``.

    Returns ``({level: [b, h] float32 sums}, output, partial)``; ``partial`` when the sums are
    per-TP-rank shares of the sequence (sequence parallelism), to be all-reduced over TP.
    """
    num_rows, length = tokens.shape
    positions = torch.arange(length, device=tokens.device).expand(num_rows, length)
    with _capture_layer_outputs(gpt, layer_levels) as store, _without_lm_head(gpt):
        output = model(input_ids=tokens, position_ids=positions, attention_mask=None)
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    tp_size = parallel_state.get_tensor_model_parallel_world_size()
    partial = bool(gpt.config.sequence_parallel and tp_size > 1)
    weights_sb = valid.t().to(torch.float32)  # hidden states are [s, b, h]
    sums: Dict[int, torch.Tensor] = {}
    for level in layer_levels:
        hidden = store.get(level)
        if hidden is None:
            raise RuntimeError(f"prealign: layer {level} is not on this pipeline stage")
        if torch.is_grad_enabled() and not hidden.requires_grad and gpt.training:
            raise RuntimeError(f"prealign: layer {level} output carries no gradient (activation recompute?)")
        local_s = hidden.shape[0]
        # With sequence parallelism each TP rank holds a slice of the sequence.
        weights = weights_sb[tp_rank * local_s : (tp_rank + 1) * local_s] if partial else weights_sb
        sums[level] = _row_sums(hidden, weights)
    return sums, output, partial


def pooled_level_features(
    model: torch.nn.Module, batch: Dict[str, object], levels: Sequence[int], need_output: bool = True
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Run ``model`` on a pre-alignment microbatch (one word per row); mean-pool each row's word.

    ``levels`` must all be held by this stage (see :func:`stage_levels`). Under PP, the schedule
    has set the stage's input tensor. With ``need_output=False`` and only embedding levels, the
    model is not run at all (``output`` is ``None``). The model runs with its own causal mask
    (no attention mask is passed) and positions ``0..L-1`` in every row.

    On a single-stage model (no PP) the rows are run in groups of equal word length
    (:func:`_length_buckets`), so right padding costs nothing; a word's result does not depend on
    its group (causal attention, positions from 0). Under PP the microbatch runs at the shape the
    schedule communicates, padded.

    Returns:
        ``(features [len(levels), num_rows, hidden] float32, identical on all TP ranks; padding
        rows are zero, output)`` where ``output`` is the model's output (the decoder output on
        the last stage: the LM head is skipped; a zero-weighted scalar over the groups' outputs
        when the rows ran in groups).
    """
    gpt = unwrap_model(model)
    check_model_supported(gpt)
    dev = platform_device()
    tokens = batch["tokens"].to(dev)
    lengths = batch["lengths"].to(dev)
    tp_size = parallel_state.get_tensor_model_parallel_world_size()
    multiple = tp_size if gpt.config.sequence_parallel and tp_size > 1 else 1
    if tokens.shape[1] % multiple:  # sequence parallelism splits the sequence over TP ranks
        tokens = torch.nn.functional.pad(tokens, (0, multiple - tokens.shape[1] % multiple))
    num_rows, length = tokens.shape
    num_layers = gpt.config.num_layers
    valid = torch.arange(length, device=dev).unsqueeze(0) < lengths.unsqueeze(1)  # [b, s]
    layer_levels = [x for x in levels if 1 <= x <= num_layers]
    output = None
    layer_sums: Dict[int, torch.Tensor] = {}
    partial = False
    if layer_levels or need_output:
        buckets = _length_buckets(batch["lengths"], length, multiple) if gpt.pre_process and gpt.post_process else []
        if len(buckets) <= 1:
            layer_sums, output, partial = _run_and_pool_layers(model, gpt, tokens, valid, layer_levels)
        else:
            parts, outputs = [], []
            for rows, width in buckets:
                rows = rows.to(dev)
                sums, out, partial = _run_and_pool_layers(
                    model, gpt, tokens.index_select(0, rows)[:, :width], valid.index_select(0, rows)[:, :width],
                    layer_levels)
                parts.append(sums)
                outputs.append(out.float().sum() * 0.0)
            order = torch.cat([rows for rows, _ in buckets]).to(dev)
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(order.numel(), device=dev)
            layer_sums = {x: torch.cat([p[x] for p in parts]).index_select(0, inverse) for x in layer_levels}
            output = torch.stack(outputs).sum()

    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    partial_sums: Dict[int, torch.Tensor] = {}  # summed over TP below
    full_sums: Dict[int, torch.Tensor] = {}
    for level in levels:
        if level == 0:
            emb = gpt.embedding.word_embeddings
            partial_sums[level] = _vocab_shard_row_sums(emb.weight, emb.vocab_start_index, tokens, valid)
        elif level == num_layers + 1:
            weight = output_embedding_weight(gpt)
            partial_sums[level] = _vocab_shard_row_sums(weight, tp_rank * weight.shape[0], tokens, valid)
        elif level not in layer_sums:
            raise RuntimeError(f"prealign: layer {level} is not on this pipeline stage")
        else:
            (partial_sums if partial else full_sums)[level] = layer_sums[level]
    if partial_sums:
        reduced = reduce_from_tensor_model_parallel_region(
            torch.stack(list(partial_sums.values())), group=parallel_state.get_tensor_model_parallel_group()
        )
        full_sums.update(zip(partial_sums, reduced.unbind(0)))
    if not levels:
        return torch.zeros(0, num_rows, gpt.config.hidden_size, device=dev), output
    counts = lengths.clamp(min=1).to(torch.float32)
    features = torch.stack([full_sums[x] for x in levels]) / counts.unsqueeze(1)
    return features, output


# ----------------------------------------------------------------------------------- DP gather / loss


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along a new leading dim; backward sums every rank's gradient of our slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        world = dist.get_world_size(group=group)
        out = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(out, tensor.contiguous(), group=group)
        return torch.stack(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad[dist.get_rank(group=ctx.group)], None


def alignment_level_losses(
    features: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    dp_group=None,
) -> torch.Tensor:
    """Per-level SupCon over the global (DP-concatenated) batch, as this rank's share.

    Only real words take part: rows labelled -1 (padding rows, and the rows that pad the DP
    gather to equal sizes) are dropped before the similarity matrices are built.

    Args:
        features: ``[n_levels, W, h]`` pooled word features of this rank.
        labels: ``[W]`` source-word ids (-1 = padding row).
        temperature: ``tau``.
        dp_group: data-parallel group (default: Megatron's); ``None`` with no process group
            initialised means a single replica.

    Returns:
        ``[n_levels]``: ``sum over this rank's anchors / global anchor count * dp_size``. Their
        mean over DP ranks is the loss on the global batch, and so are DDP-averaged gradients.

    Raises:
        ValueError: if the global batch holds no positive pair.
    """
    labels = labels.to(features.device)
    real = (labels >= 0).nonzero(as_tuple=True)[0]
    if real.numel() != labels.numel():
        features, labels = features.index_select(1, real), labels.index_select(0, real)
    if dp_group is None and dist.is_initialized() and parallel_state.model_parallel_is_initialized():
        dp_group = parallel_state.get_data_parallel_group()
    dp_size = dist.get_world_size(group=dp_group) if dp_group is not None else 1
    if dp_size > 1:
        dp_rank = dist.get_rank(group=dp_group)
        sizes = [torch.zeros(1, dtype=torch.int64, device=features.device) for _ in range(dp_size)]
        dist.all_gather(sizes, torch.tensor([labels.shape[0]], device=features.device), group=dp_group)
        sizes = [int(x.item()) for x in sizes]
        width = max(sizes)
        pad = width - labels.shape[0]
        if pad:
            features = torch.nn.functional.pad(features, (0, 0, 0, pad))
            labels = torch.nn.functional.pad(labels, (0, pad), value=-1)
        candidates = _GatherWithGrad.apply(features, dp_group)  # [dp, n, width, h]
        candidates = candidates.permute(1, 0, 2, 3).reshape(features.shape[0], dp_size * width, -1)
        all_labels = [torch.empty_like(labels) for _ in range(dp_size)]
        dist.all_gather(all_labels, labels, group=dp_group)
        candidate_labels = torch.cat(all_labels)
        if pad or any(n != width for n in sizes):  # drop the gather padding: no empty slot in the loss
            keep = torch.cat([torch.arange(n, device=features.device) + r * width for r, n in enumerate(sizes)])
            candidates, candidate_labels = candidates.index_select(1, keep), candidate_labels.index_select(0, keep)
            features, labels = features[:, : sizes[dp_rank]], labels[: sizes[dp_rank]]
        anchor_index = torch.arange(sizes[dp_rank], device=features.device) + sum(sizes[:dp_rank])
    else:
        candidates, candidate_labels = features, labels
        anchor_index = torch.arange(labels.shape[0], device=features.device)
    loss_sum, _ = supcon_terms(features, labels, anchor_index, candidates, candidate_labels, temperature)
    # Every rank holds all labels: the global anchor count needs no collective.
    global_count = _count_anchors(candidate_labels)
    if global_count == 0:
        raise ValueError("prealign: the global batch holds no positive pair (no source word with a translation)")
    return loss_sum * (dp_size / global_count)


def _count_anchors(labels: torch.Tensor) -> int:
    """Rows with a non-negative label shared by at least one other row."""
    valid = labels[labels >= 0]
    if valid.numel() == 0:
        return 0
    _, inverse, counts = torch.unique(valid, return_inverse=True, return_counts=True)
    return int((counts[inverse] > 1).sum())


# ----------------------------------------------------------------------------------- logging


class LevelLossTracker:
    """Per-level alignment losses of the microbatches of a step, for logging.

    Every stage (or virtual-pipeline chunk) records the levels it holds (detached, this rank's DP
    share); :meth:`reduce` (a collective over the PP and DP groups: call it on every rank)
    returns, per level, the global-batch value averaged over the pre-alignment microbatches.
    """

    def __init__(self, num_layers: int, levels: Sequence[int]) -> None:
        self.num_layers = num_layers
        self.levels = tuple(levels)
        self._sums = torch.zeros(len(self.levels), dtype=torch.float64)
        self._counts = torch.zeros(len(self.levels), dtype=torch.float64)

    def record(self, levels: Sequence[int], values: torch.Tensor) -> None:
        """Add one microbatch's values of ``levels`` (those of this stage/chunk)."""
        values = values.detach().double().cpu()
        for level, value in zip(levels, values):
            i = self.levels.index(level)
            self._sums[i] += value
            self._counts[i] += 1

    def reduce(self, reset: bool = True) -> Dict[str, float]:
        """``{"emb": ..., "layer1": ..., "out": ..., "total": ...}`` over the whole model/batch.

        Levels no microbatch of the step recorded are left out.
        """
        buf = torch.cat([self._sums, self._counts]).to(platform_device())
        if dist.is_initialized() and parallel_state.model_parallel_is_initialized():
            # Each level is recorded on exactly one pipeline rank: sum over PP. Over DP the counts
            # add up too: the ratio is the DP mean.
            for group in (parallel_state.get_pipeline_model_parallel_group(),
                          parallel_state.get_data_parallel_group()):
                if dist.get_world_size(group=group) > 1:
                    dist.all_reduce(buf, group=group)
        sums, counts = buf.cpu().chunk(2)
        out = {
            level_name(x, self.num_layers): sums[i].item() / counts[i].item()
            for i, x in enumerate(self.levels)
            if counts[i] > 0
        }
        if out:
            out["total"] = sum(out.values())
        if reset:
            self._sums.zero_()
            self._counts.zero_()
        return out


# ----------------------------------------------------------------------------------- forward step


class PreAlignForwardStep:
    """Megatron ``forward_step_func`` for pre-alignment and LM microbatches (paper Eq. 4).

    Args:
        loss_config: temperature, levels, weights.
        num_microbatches: microbatches per step ``M`` (what is passed to the schedule).
        num_align_microbatches: how many of them are pre-alignment microbatches ``M_a``
            (``M`` for pre-alignment only; the rest are LM microbatches).
        tracker: where per-level values go (default: a new one, as ``self.tracker``, created on
            first use from the model's layer count).
        weights: ``(lm_weight, align_weight)`` of the current stage (default the loss config's).
    """

    def __init__(
        self,
        loss_config: PreAlignLossConfig,
        num_microbatches: int,
        num_align_microbatches: int,
        tracker: Optional[LevelLossTracker] = None,
        weights: Optional[Tuple[float, float]] = None,
    ) -> None:
        if not 0 <= num_align_microbatches <= num_microbatches or num_microbatches < 1:
            raise ValueError(
                f"num_align_microbatches {num_align_microbatches} must be within 0..num_microbatches {num_microbatches}"
            )
        self.loss_config = loss_config
        self.lm_weight, self.align_weight = weights or (loss_config.lm_weight, loss_config.align_weight)
        self.num_microbatches = num_microbatches
        self.num_align_microbatches = num_align_microbatches
        self.tracker = tracker

    def __call__(self, data_iterator, model):
        batch = next(data_iterator)
        if batch.get("kind", "lm") == "prealign":
            return self._align_step(batch, model)
        return self._lm_step(batch, model)

    # -- pre-alignment
    def _align_step(self, batch, model):
        if self.num_align_microbatches == 0:
            raise ValueError("got a pre-alignment microbatch but num_align_microbatches is 0")
        gpt = unwrap_model(model)
        cfg = gpt.config
        num_layers = cfg.num_layers
        levels = resolve_levels(self.loss_config.levels, num_layers)
        if self.tracker is None:
            self.tracker = LevelLossTracker(num_layers, levels)
        here = stage_levels(gpt, levels)
        dev = platform_device()
        grad_scale = cfg.grad_scale_func(torch.ones(1, device=dev)) if cfg.grad_scale_func else torch.ones(1, device=dev)
        MoEAuxLossAutoScaler.set_loss_scale(grad_scale / self.num_microbatches)

        features, output = pooled_level_features(model, batch, here)
        stage_loss = None
        if here:
            per_level = alignment_level_losses(features, batch["word_labels"], self.loss_config.temperature)
            self.tracker.record(here, per_level)
            scale = (self.align_weight * self.loss_config.level_scale(len(levels))
                     * self.num_microbatches / self.num_align_microbatches)
            stage_loss = per_level.sum() * scale
        if not gpt.post_process:
            if stage_loss is not None:
                output = MoEAuxLossAutoScaler.apply(output, stage_loss)
            return output, _never_called
        return output, partial(_align_loss_func, stage_loss, output_embedding_weight(gpt))

    # -- language modelling
    def _lm_step(self, batch, model):
        num_lm = self.num_microbatches - self.num_align_microbatches
        if num_lm == 0:
            raise ValueError("got an LM microbatch but every microbatch of the step is pre-alignment")
        dev = platform_device()
        tokens = batch["tokens"].to(dev)
        mask = batch.get("attention_mask")
        positions = batch.get("position_ids")
        if positions is None:
            positions = torch.arange(tokens.shape[1], device=dev).expand_as(tokens)
        output = model(
            input_ids=tokens,
            position_ids=positions.to(dev),
            attention_mask=mask.to(dev) if mask is not None else None,
            labels=batch["labels"].to(dev),
        )
        scale = self.lm_weight * self.num_microbatches / num_lm
        return output, partial(_lm_loss_func, batch["loss_mask"].to(dev), scale)


def _never_called(output_tensor):  # pragma: no cover - the schedule calls it on the last stage only
    raise RuntimeError("loss function called on a non-last pipeline stage")


def _align_loss_func(stage_loss: Optional[torch.Tensor], head_weight: torch.Tensor, output_tensor: torch.Tensor):
    # Zero-weighted terms keep every parameter of the last stage in the graph, as in an LM
    # microbatch: the stage input gets a gradient even when no level here depends on it (PP),
    # and the final norm and the (skipped) LM head get a zero gradient, so that Megatron DDP's
    # overlapped grad reduce sees the same set of ready parameters for both kinds.
    loss = output_tensor.float().sum() * 0.0 + head_weight.reshape(-1)[0].float() * 0.0
    if stage_loss is not None:
        loss = loss + stage_loss
    one = torch.ones((), dtype=torch.int, device=loss.device)
    return loss, one, {"lm loss": torch.zeros(2, device=loss.device)}


def _lm_loss_func(loss_mask: torch.Tensor, scale: float, output_tensor: torch.Tensor):
    mask = loss_mask.float().view(-1)
    total = torch.sum(output_tensor.float().view(-1) * mask)
    report = torch.cat([total.detach().view(1), mask.sum().view(1)])
    return total * scale, mask.sum().to(torch.int), {"lm loss": report}


def _align_call_shape(batches: Sequence[Dict[str, object]], config) -> Tuple[int, int]:
    """``(rows, length)`` one schedule call of ``batches`` needs (PP p2p: one shape per call)."""
    rows = max(int(b["tokens"].shape[0]) for b in batches)
    length = max(int(b["tokens"].shape[1]) for b in batches)
    tp = parallel_state.get_tensor_model_parallel_world_size()
    if getattr(config, "sequence_parallel", False) and tp > 1:
        length = -(-length // tp) * tp  # the sequence is split over TP ranks
    return rows, length


@contextlib.contextmanager
def _deferred_grad_sync(config, defer: bool):
    """Run one of several schedule calls of a step without starting the gradient reduction.

    The schedule enters ``config.no_sync_func`` for all but its last microbatch, leaves it for
    the last (so DDP's overlapped reduce fires) and calls ``config.finalize_model_grads_func``.
    For every call but the step's last we hold DDP's ``no_sync`` over the whole call and hide
    both hooks, so that gradients of all calls accumulate in the buffers and are reduced once.
    """
    if not defer:
        yield
        return
    saved = (config.no_sync_func, config.finalize_model_grads_func, config.grad_sync_func)
    funcs = saved[0] if isinstance(saved[0], list) else ([saved[0]] if saved[0] is not None else [])
    config.no_sync_func, config.finalize_model_grads_func, config.grad_sync_func = None, None, None
    try:
        with contextlib.ExitStack() as stack:
            for func in funcs:
                stack.enter_context(func())
            yield
    finally:
        config.no_sync_func, config.finalize_model_grads_func, config.grad_sync_func = saved


def forward_backward_step(
    model: List[torch.nn.Module],
    loss_config: PreAlignLossConfig,
    lm_batches: Optional[Iterator[Dict[str, object]]],
    num_lm_microbatches: int,
    seq_length: int,
    micro_batch_size: int,
    align_batches: Sequence[Dict[str, object]] = (),
    tracker: Optional[LevelLossTracker] = None,
    forward_only: bool = False,
    weights: Optional[Tuple[float, float]] = None,
) -> List[Dict[str, torch.Tensor]]:
    """Forward (and backward) of one step's LM and pre-alignment microbatches (paper Eq. 4).

    One ``get_forward_backward_func()`` call for the pre-alignment microbatches, given their own
    shape (``micro_batch_size`` = words, ``seq_length`` = longest word; shorter microbatches are
    padded to it), then one for the LM microbatches (``seq_length`` x ``micro_batch_size``).
    Gradients of both accumulate in the DDP buffers; the gradient reduction (DDP ``no_sync``,
    ``config.finalize_model_grads_func`` when set) happens once, in the last call. Every rank of
    a pipeline must pass the same ``align_batches`` (the sampler is deterministic).

    Args:
        model: this rank's model chunks (one chunk: virtual pipelines are not supported).
        loss_config: temperature, levels and the two weights.
        lm_batches: LM microbatches (``None`` when ``num_lm_microbatches`` is 0).
        num_lm_microbatches: LM microbatches of the step ``M_l``.
        seq_length: LM sequence length.
        micro_batch_size: LM micro batch size.
        align_batches: the step's pre-alignment microbatches (``M_a`` of them).
        tracker: per-level loss log (default: none kept).
        forward_only: no backward (evaluation).
        weights: ``(lm_weight, align_weight)`` of the current stage (default the loss config's).

    Returns:
        The loss reports of all microbatches (last pipeline stage; empty elsewhere).
    """
    from megatron.core.pipeline_parallel import get_forward_backward_func

    num_align = len(align_batches)
    if num_align + num_lm_microbatches == 0:
        raise ValueError("forward_backward_step: no microbatch")
    if num_lm_microbatches and lm_batches is None:
        raise ValueError("forward_backward_step: num_lm_microbatches > 0 needs lm_batches")
    config = get_model_config(model[0])
    if tracker is None:
        num_layers = unwrap_model(model[0]).config.num_layers
        tracker = LevelLossTracker(num_layers, resolve_levels(loss_config.levels, num_layers))
    calls = []
    if num_align:
        rows, length = _align_call_shape(align_batches, config)
        padded = [pad_word_batch(b, rows, length) for b in align_batches]
        calls.append((PreAlignForwardStep(loss_config, num_align, num_align, tracker, weights), iter(padded), num_align,
                      length, rows))
    if num_lm_microbatches:
        calls.append((PreAlignForwardStep(loss_config, num_lm_microbatches, 0, tracker, weights), lm_batches,
                      num_lm_microbatches, seq_length, micro_batch_size))
    reports: List[Dict[str, torch.Tensor]] = []
    for i, (step, data, count, seq, mbs) in enumerate(calls):
        with _deferred_grad_sync(config, defer=not forward_only and i < len(calls) - 1):
            out = get_forward_backward_func()(forward_step_func=step, data_iterator=data, model=model,
                                              num_microbatches=count, seq_length=seq, micro_batch_size=mbs,
                                              forward_only=forward_only)
        reports.extend(out or [])
    return reports


# ----------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def aligned_cosine_similarity(
    model: torch.nn.Module, batch: Dict[str, object], levels: Optional[Sequence[int]] = None
) -> Dict[str, float]:
    """Mean cosine similarity of aligned word pairs per level (paper Fig. 5), this rank's batch.

    Pairs are all ordered pairs of distinct words with the same source word in ``batch`` (a
    pre-alignment microbatch). Only the levels held by this PP stage are reported; with
    PP > 1, layer levels need the stage's input tensor (run it inside a schedule, or at PP = 1 as
    the evaluation does), embedding levels do not run the model at all.
    Also reports ``"{level}/unaligned"``: the mean over pairs of different source words, a
    baseline (anisotropy makes raw cosines high).
    """
    gpt = unwrap_model(model)
    was_training = gpt.training
    gpt.eval()
    try:
        levels = stage_levels(gpt, resolve_levels(levels, gpt.config.num_layers))
        features, _ = pooled_level_features(model, batch, levels, need_output=False)
    finally:
        gpt.train(was_training)
    labels = batch["word_labels"].to(features.device)
    pair_valid = (labels >= 0).unsqueeze(0) & (labels >= 0).unsqueeze(1)
    same = (labels.unsqueeze(0) == labels.unsqueeze(1)) & pair_valid
    pos = same & ~torch.eye(labels.shape[0], dtype=torch.bool, device=features.device)
    neg = ~same & pair_valid
    if not pos.any():
        raise ValueError("aligned_cosine_similarity: the batch holds no aligned pair")
    normed = torch.nn.functional.normalize(features, dim=-1)
    sims = normed @ normed.transpose(1, 2)
    out: Dict[str, float] = {}
    for i, level in enumerate(levels):
        name = level_name(level, gpt.config.num_layers)
        out[name] = sims[i][pos].mean().item()
        if neg.any():
            out[f"{name}/unaligned"] = sims[i][neg].mean().item()
    return out
