"""Pre-alignment microbatches: aligned words from an alignment table, one word per row.

Each aligned word (a source word or one of its translations, as the token ids stored in the
table: word-initial form) is encoded alone (paper §3.1), so a pre-alignment microbatch is a
batch of short sequences of its own: ``[num_words, max_word_len]`` token ids, one word per row
from position 0, padded on the right. It runs through the same model, layer spec and attention
as pretraining (plain causal attention, no custom mask): under a causal mask, right padding never
changes the earlier (real) tokens, and pooling ignores it. Megatron's schedule is given this
shape as its ``micro_batch_size`` / ``seq_length`` (``prealign.forward_backward_step``).

Batch format (a dict, what the data iterator yields; every PP stage builds its own copy, and
since the sampler is deterministic the copies, and so the shapes, agree):

* ``kind``: ``"prealign"``.
* ``tokens`` ``[n, L]`` int64: word ``i``'s token ids in row ``i``, ``pad_id`` after them.
* ``lengths`` ``[n]`` int64: subwords of each row's word; 0 for a padding row.
* ``word_labels`` ``[n]`` int64: per row, the id of its source word (the table entry index);
  rows with equal labels are positives; -1 = padding row (never reaches the loss).

:class:`WordBatchSampler` draws ``words_per_microbatch`` source words per microbatch from an
``AlignmentTable`` (contract in docs/interfaces.md) and adds up to ``max_translations_per_word``
of each one's translations. Draws are without replacement within an epoch over the table (one
shuffled order per epoch) and depend only on ``(seed, microbatch index, dp rank)``: the global
batch of microbatch ``i`` is the slice ``[(i*dp + r)*K, ...)`` of the epoch order, so DP ranks
never draw the same word in one step and a restart at any index reproduces the stream.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["WordBatchConfig", "WordBatchSampler", "word_rows", "pad_word_batch"]


def word_rows(
    words: Sequence[Sequence[int]],
    labels: Sequence[int],
    num_rows: Optional[int] = None,
    length: Optional[int] = None,
    pad_id: int = 0,
) -> Dict[str, object]:
    """One word per row, right-padded: the pre-alignment microbatch of ``words``.

    Args:
        words: token ids of each word (non-empty).
        labels: source-word id of each word (>= 0).
        num_rows: rows of the batch (default ``len(words)``); extra rows are padding.
        length: tokens per row (default: the longest word).
        pad_id: token id written after each word.

    Returns:
        The batch dict described in the module docstring.

    Raises:
        ValueError: mismatched lengths, an empty word, a negative label, or words that do not fit
            ``num_rows`` x ``length``.
    """
    if len(words) != len(labels):
        raise ValueError(f"word_rows: {len(words)} words but {len(labels)} labels")
    if not words:
        raise ValueError("word_rows: no words")
    longest = max(len(ids) for ids in words)
    num_rows = len(words) if num_rows is None else num_rows
    length = longest if length is None else length
    if num_rows < len(words) or length < longest:
        raise ValueError(f"word_rows: {len(words)} words of up to {longest} tokens do not fit {num_rows}x{length}")
    tokens = np.full((num_rows, length), pad_id, dtype=np.int64)
    lengths = np.zeros((num_rows,), dtype=np.int64)
    word_labels = np.full((num_rows,), -1, dtype=np.int64)
    for row, (ids, label) in enumerate(zip(words, labels)):
        if len(ids) == 0:
            raise ValueError(f"word_rows: word with label {label} has no tokens")
        if label < 0:
            raise ValueError(f"word_rows: labels must be >= 0, got {label}")
        tokens[row, : len(ids)] = ids
        lengths[row] = len(ids)
        word_labels[row] = label
    return {
        "kind": "prealign",
        "tokens": torch.from_numpy(tokens),
        "lengths": torch.from_numpy(lengths),
        "word_labels": torch.from_numpy(word_labels),
    }


def pad_word_batch(batch: Dict[str, object], num_rows: int, length: int, pad_id: int = 0) -> Dict[str, object]:
    """``batch`` grown to ``[num_rows, length]`` with padding rows/columns (a new dict).

    Several pre-alignment microbatches share one pipeline schedule call, which needs one shape.
    """
    tokens = batch["tokens"]
    rows, cols = tokens.shape
    if num_rows < rows or length < cols:
        raise ValueError(f"pad_word_batch: cannot shrink {rows}x{cols} to {num_rows}x{length}")
    if (num_rows, length) == (rows, cols):
        return batch
    out = dict(batch)
    out["tokens"] = torch.nn.functional.pad(tokens, (0, length - cols, 0, num_rows - rows), value=pad_id)
    out["lengths"] = torch.nn.functional.pad(batch["lengths"], (0, num_rows - rows), value=0)
    out["word_labels"] = torch.nn.functional.pad(batch["word_labels"], (0, num_rows - rows), value=-1)
    return out


@dataclass
class WordBatchConfig:
    """How pre-alignment microbatches are drawn."""

    words_per_microbatch: int
    """Source words drawn per microbatch and DP rank (``--prealign-words-per-batch``)."""
    micro_batch_size: int
    """Megatron ``--micro-batch-size`` of the LM microbatches. Not used for the shape (a
    pre-alignment microbatch has one row per word); kept so that callers need not change."""
    seq_length: int
    """Longest word kept, in subwords (``--seq-length``: a word must fit the model's sequence)."""
    max_translations_per_word: int = 5
    """At most this many translations (over all languages) join each source word; a random
    subset when it has more. The paper collects 5 translations per word and language."""
    languages: Optional[Sequence[str]] = None
    """Target languages used (default: all languages of the table)."""
    include_source: bool = True
    """Whether the source word itself is a row of its group (the paper aligns ``x`` with its
    translations ``y``)."""
    seed: int = 1234
    """Seed of the epoch orders and translation subsets."""
    pad_id: int = 0
    """Token id of padding positions (after each word: never seen by it, never pooled)."""

    @property
    def max_words(self) -> int:
        """Most rows a microbatch can have: every drawn source word with all its kept translations."""
        return self.words_per_microbatch * (int(self.include_source) + self.max_translations_per_word)


class WordBatchSampler:
    """Deterministic pre-alignment microbatches from an ``AlignmentTable``.

    Args:
        table: an ``AlignmentTable`` (``.entries``, each with ``.ids`` and
            ``.translations[lang] -> [Translation(text, ids)]``).
        config: drawing and packing parameters.
        dp_rank: this rank's data-parallel index.
        dp_size: data-parallel world size.
    """

    def __init__(self, table, config: WordBatchConfig, dp_rank: int = 0, dp_size: int = 1) -> None:
        if config.words_per_microbatch < 1:
            raise ValueError(f"words_per_microbatch must be >= 1, got {config.words_per_microbatch}")
        if config.max_translations_per_word < 1:
            raise ValueError(f"max_translations_per_word must be >= 1, got {config.max_translations_per_word}")
        if not 0 <= dp_rank < dp_size:
            raise ValueError(f"dp_rank {dp_rank} outside [0, {dp_size})")
        self.table = table
        self.config = config
        self.dp_rank = dp_rank
        self.dp_size = dp_size
        table_langs = list(getattr(table, "languages", []) or [])
        self.languages: List[str] = list(config.languages) if config.languages is not None else table_langs
        if config.languages is not None and table_langs:
            unknown = [lang for lang in config.languages if lang not in table_langs]
            if unknown:
                raise ValueError(f"languages {unknown} are not in the alignment table (it has {table_langs})")
        self._eligible = np.array(
            [i for i, entry in enumerate(table.entries) if self._has_pair(entry)], dtype=np.int64
        )
        if self._eligible.size == 0:
            raise ValueError(
                "alignment table has no source word with a usable translation "
                f"(languages {self.languages}, seq_length {config.seq_length}): no positive pair possible"
            )
        self._orders: Dict[int, np.ndarray] = {}

    @property
    def num_eligible(self) -> int:
        """Source words that can form a positive pair (have >= 1 usable translation)."""
        return int(self._eligible.size)

    def _usable_ids(self, entry) -> Iterator[Sequence[int]]:
        """The token ids of ``entry``'s group that fit a row: source (if included), then
        translations, in table order."""
        limit = self.config.seq_length
        if self.config.include_source and 0 < len(entry.ids) <= limit:
            yield entry.ids
        for lang in self.languages:
            for translation in entry.translations.get(lang, ()):
                if 0 < len(translation.ids) <= limit:
                    yield translation.ids

    def _has_pair(self, entry) -> bool:
        """Whether ``entry``'s group has at least two usable rows (cheap: no row is built)."""
        return len(list(itertools.islice(self._usable_ids(entry), 2))) == 2

    def _rows(self, entry) -> List[Tuple[int, ...]]:
        """The group of ``entry``: source ids (if included) then translations, in table order."""
        return [tuple(int(t) for t in ids) for ids in self._usable_ids(entry)]

    def _order(self, epoch: int) -> np.ndarray:
        order = self._orders.get(epoch)
        if order is None:
            rng = np.random.default_rng([self.config.seed, epoch])
            order = self._eligible[rng.permutation(self._eligible.size)]
            self._orders = {epoch: order}  # keep one epoch: indices grow monotonically
        return order

    def draw(self, index: int) -> List[int]:
        """The table entry indices of this rank's microbatch ``index``."""
        k = self.config.words_per_microbatch
        n = self._eligible.size
        first = (index * self.dp_size + self.dp_rank) * k
        return [int(self._order(g // n)[g % n]) for g in range(first, first + k)]

    def microbatch(self, index: int) -> Dict[str, object]:
        """This rank's pre-alignment microbatch number ``index`` (0-based, over the whole run).

        Raises:
            ValueError: if the packed microbatch holds no positive pair (no group kept two words).
        """
        cfg = self.config
        words: List[Tuple[int, ...]] = []
        labels: List[int] = []
        for entry_index in self.draw(index):
            rows = self._rows(self.table.entries[entry_index])
            head, tail = (rows[:1], rows[1:]) if cfg.include_source else ([], rows)
            if len(tail) > cfg.max_translations_per_word:
                rng = np.random.default_rng([cfg.seed, index, self.dp_rank, entry_index])
                keep = np.sort(rng.choice(len(tail), cfg.max_translations_per_word, replace=False))
                tail = [tail[i] for i in keep]
            words += head + tail
            labels += [entry_index] * len(head + tail)
        batch = word_rows(words, labels, pad_id=cfg.pad_id)
        if torch.unique(batch["word_labels"]).numel() == len(words):  # eligible entries make this impossible
            raise ValueError(f"pre-alignment microbatch {index} (dp rank {self.dp_rank}) holds no positive pair")
        return batch

    def iterator(self, start: int = 0) -> Iterator[Dict[str, object]]:
        """Microbatches ``start, start + 1, ...`` (for a Megatron data iterator)."""
        for index in itertools.count(start):
            yield self.microbatch(index)
