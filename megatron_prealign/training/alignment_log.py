"""Embedding alignment of a training job, per level, for the training log (issue 9).

At every log interval (and at the last alignment-stage iteration) the loop reports, for the
input embedding (``emb``) and the output embedding (``out``), over the alignment table's word
pairs: the raw aligned cosine, the centred cosine (each language's mean row removed) and the
target/source norm ratio, all from
:func:`megatron_prealign.model.alignment_metrics.alignment_stats`. A word's row is the mean of
its token ids' rows. Language means: for En-Clone (``clone_base_vocab`` ``V`` given) the mean of
all English rows ``[0, V)`` and of all clone rows ``[V, 2V)``; otherwise the mean over the
distinct ids of the table's source words, and over those of all its translations.

Rows are looked up in this rank's vocabulary shard and summed over the TP group (vocab-parallel
weights are never gathered whole); the input level is computed on the first pipeline stage,
the output level on the last, and the values are summed over the PP group so every rank knows
them.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from megatron.core import parallel_state
from megatron.core.utils import unwrap_model
from torch.nn.utils.rnn import pad_sequence

from megatron_prealign.model.alignment_metrics import alignment_stats
from megatron_prealign.model.prealign import output_embedding_weight
from megatron_prealign.platform import device

__all__ = ["EmbeddingAlignmentProbe"]

_NAMES = {"raw_cosine": "raw cos", "centred_cosine": "centred cos", "norm_ratio": "norm ratio"}
"""The statistics logged (keys of ``alignment_stats``, in log order) and their log names."""


def _pad(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    tensors = [torch.tensor(list(r), dtype=torch.long) for r in rows]
    return pad_sequence(tensors, batch_first=True, padding_value=-1)


class EmbeddingAlignmentProbe:
    """Per-level alignment statistics of the embedding matrices over a table's word pairs.

    Args:
        pairs: ``(source ids, target ids)`` of each aligned word pair (the table's entries and
            translations, most frequent first).
        clone_base_vocab: ``V`` of an En-Clone tokenizer (language = id range), else ``None``.
        max_pairs: pairs kept (the first ones), bounding the cost of a log line.
    """

    def __init__(self, pairs: Sequence[Tuple[Sequence[int], Sequence[int]]], clone_base_vocab: Optional[int] = None,
                 max_pairs: int = 4096) -> None:
        pairs = [(list(s), list(t)) for s, t in pairs if len(s) and len(t)][:max_pairs]
        if not pairs:
            raise ValueError("alignment log: the table has no word pair")
        self.src = _pad([s for s, _ in pairs])
        self.tgt = _pad([t for _, t in pairs])
        self.clone_base_vocab = clone_base_vocab
        if clone_base_vocab is None:
            self.src_lang = torch.tensor(sorted({i for s, _ in pairs for i in s}), dtype=torch.long).unsqueeze(1)
            self.tgt_lang = torch.tensor(sorted({i for _, t in pairs for i in t}), dtype=torch.long).unsqueeze(1)

    @classmethod
    def from_table(cls, table, clone_base_vocab: Optional[int] = None, max_pairs: int = 4096
                   ) -> "EmbeddingAlignmentProbe":
        """From an :class:`~megatron_prealign.alignment.AlignmentTable` (every translation)."""
        return cls([(entry.ids, t.ids) for entry, _, t in table.pairs()], clone_base_vocab, max_pairs)

    # -- row lookups on a vocab-parallel shard, summed over TP
    @staticmethod
    def _tp_sum(t: torch.Tensor) -> torch.Tensor:
        if parallel_state.get_tensor_model_parallel_world_size() > 1:
            torch.distributed.all_reduce(t, group=parallel_state.get_tensor_model_parallel_group())
        return t

    def _word_rows(self, weight: torch.Tensor, start: int, ids: torch.Tensor) -> torch.Tensor:
        """``[N, h]`` mean row of each word (``ids`` ``[N, L]``, padded with -1)."""
        ids = ids.to(weight.device)
        local = ids - start
        inside = (ids >= 0) & (local >= 0) & (local < weight.shape[0])
        rows = weight.detach().float()[local.clamp(0, weight.shape[0] - 1)] * inside.unsqueeze(-1)
        sums = self._tp_sum(rows.sum(1))
        return sums / (ids >= 0).sum(1, keepdim=True).clamp_min(1).to(sums.dtype)

    def _range_mean(self, weight: torch.Tensor, start: int, lo: int, hi: int) -> torch.Tensor:
        """Mean of global rows ``[lo, hi)``."""
        a, b = max(lo - start, 0), min(hi - start, weight.shape[0])
        part = weight.detach().float()[a:b].sum(0) if b > a else weight.new_zeros(weight.shape[1], dtype=torch.float32)
        return self._tp_sum(part.clone()) / max(hi - lo, 1)

    def _level(self, weight: torch.Tensor, start: int) -> torch.Tensor:
        """The statistics of one embedding matrix (this rank's vocabulary shard from ``start``), as
        float64 in :data:`_NAMES` order."""
        src = self._word_rows(weight, start, self.src)
        tgt = self._word_rows(weight, start, self.tgt)
        if self.clone_base_vocab is not None:
            v = self.clone_base_vocab
            src_mean, tgt_mean = self._range_mean(weight, start, 0, v), self._range_mean(weight, start, v, 2 * v)
        else:
            src_mean = self._word_rows(weight, start, self.src_lang).mean(0)
            tgt_mean = self._word_rows(weight, start, self.tgt_lang).mean(0)
        stats = alignment_stats(src, tgt, src_mean, tgt_mean)
        return torch.tensor([stats[k] for k in _NAMES], dtype=torch.float64)

    @torch.no_grad()
    def stats(self, model: torch.nn.Module) -> Dict[str, float]:
        """``{"align emb raw cos": ..., "align out centred cos": ..., ...}`` (collective over TP and PP).

        Call on every rank; every rank gets the same values.
        """
        gpt = unwrap_model(model)
        values = torch.zeros(2 * len(_NAMES), dtype=torch.float64)
        if gpt.pre_process:
            emb = gpt.embedding.word_embeddings
            values[:len(_NAMES)] = self._level(emb.weight, int(emb.vocab_start_index))
        if gpt.post_process:
            weight = output_embedding_weight(gpt)
            start = parallel_state.get_tensor_model_parallel_rank() * weight.shape[0]
            values[len(_NAMES):] = self._level(weight, start)
        if parallel_state.get_pipeline_model_parallel_world_size() > 1:
            buf = values.to(device())
            torch.distributed.all_reduce(buf, group=parallel_state.get_pipeline_model_parallel_group())
            values = buf.cpu()
        names = [f"align {level} {name}" for level in ("emb", "out") for name in _NAMES.values()]
        return dict(zip(names, values.tolist()))
