"""The pure-Python twin of the C++ codeswitcher (slow; the executable spec for tests and benchmarks).

Follows :mod:`megatron_prealign.data.codeswitch`'s module docstring exactly and produces
byte-identical output to :meth:`~megatron_prealign.data.codeswitch.Codeswitcher.apply`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from megatron_prealign.data.codeswitch_table import as_masks, boundary_arrays, merged_candidates

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix64(z: int) -> int:
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _word_draw(seed: int, doc_index: int, offset: int) -> int:
    key = _mix64(_mix64(seed + _GOLDEN) ^ doc_index)
    return _mix64(key + (offset + 1) * _GOLDEN)


def reference_codeswitch(
    tokens: np.ndarray,
    doc_index: int,
    table: Any,
    word_start_mask: np.ndarray,
    config: Any,
    special_ids: Sequence[int] = (),
    boundaries: Any = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Pure-Python twin of :meth:`Codeswitcher.apply` (slow; for tests and as the spec).

    Args:
        tokens: token ids of one document.
        doc_index: global index of the document (>= 0).
        table: an ``AlignmentTable`` (``.entries`` with ``.ids`` and ``.translations``).
        word_start_mask: bool per vocabulary id, true for tokens that open a word.
        config: ratio, mode, seed and languages.
        special_ids: ids that form a word on their own and are never replaced (EOD, pad).
        boundaries: the tokenizer's :class:`~megatron_prealign.alignment.boundaries.WordBoundaries`
            (None: every token ends a word, only special tokens are openers).

    Returns:
        ``(tokens int32, mask uint8)`` of equal length.
    """
    ws, special = as_masks(word_start_mask, special_ids)
    opener, follow, lead = boundary_arrays(boundaries, special)
    candidates, _, _ = merged_candidates(table, ws.size, special, config.languages)
    return _reference_document(
        tokens, doc_index, candidates, ws.tolist(), special.tolist(), config,
        opener.tolist(), follow.tolist(), lead.tolist(),
    )


def _reference_document(
    tokens: np.ndarray,
    doc_index: int,
    candidates: Dict[Tuple[int, ...], List[List[Tuple[int, ...]]]],
    ws: Sequence[int],
    special: Sequence[int],
    config: Any,
    opener: Sequence[int],
    follow: Sequence[int],
    lead: Sequence[int],
) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`reference_codeswitch` after the table is merged (``merged_candidates``); ``ws``,
    ``special``, ``opener``, ``follow`` and ``lead`` are per-id flags (lists are fastest)."""
    from megatron_prealign.alignment.boundaries import FOLLOW_IF_SPACE, FOLLOW_NO, FOLLOW_YES, LEAD_DIGIT, LEAD_SPACE, LEAD_SPLIT

    vocab = len(ws)
    toks = [int(t) for t in np.asarray(tokens).reshape(-1)]
    for pos, t in enumerate(toks):
        if not (0 <= t < vocab):
            raise ValueError(f"document {doc_index}: token id {t} at position {pos} is outside the vocabulary (size {vocab})")
    n = len(toks)
    starts = [p for p in range(n) if p == 0 or ws[toks[p]] or special[toks[p]] or opener[toks[p - 1]]]

    def ends_word(j: int) -> bool:
        if j >= n:
            return True
        f = follow[toks[j]]
        if f == FOLLOW_YES or f == FOLLOW_NO:
            return f == FOLLOW_YES
        nxt = LEAD_SPACE if j + 1 >= n else lead[toks[j + 1]]
        return nxt in (LEAD_SPACE, LEAD_SPLIT) if f == FOLLOW_IF_SPACE else nxt != LEAD_DIGIT

    out: List[int] = []
    mask: List[int] = []
    masked = 0 if config.mode == "input-only" else 1
    for i, begin in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else n
        word = tuple(toks[begin:end])
        groups = None if (len(word) == 1 and special[word[0]]) else candidates.get(word)
        if groups is not None and ends_word(end):
            h = _word_draw(config.seed, int(doc_index), begin)
            if (h >> 11) * 2.0**-53 < config.ratio:
                group = groups[(_mix64(h + _GOLDEN) * len(groups)) >> 64]
                translation = group[(_mix64(h + 2 * _GOLDEN) * len(group)) >> 64]
                out.extend(translation)
                mask.extend([masked] * len(translation))
                continue
        out.extend(word)
        mask.extend([1] * len(word))
    return np.array(out, dtype=np.int32), np.array(mask, dtype=np.uint8)


