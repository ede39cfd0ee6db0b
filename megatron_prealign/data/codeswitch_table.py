"""The alignment table compiled for the codeswitcher: candidates merged per source sequence.

See "Candidates" and "Bare forms" in :mod:`megatron_prealign.data.codeswitch` (the spec);
:func:`merged_candidates` is what both the C++ pass (through :func:`compile_table`'s flat
arrays) and the Python twin (:mod:`.codeswitch_reference`) are built from.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np


def _table_languages(table: Any) -> List[str]:
    langs = getattr(table, "languages", None)
    if langs is None:
        langs = sorted({lang for entry in table.entries for lang in entry.translations})
    return list(langs)


def _allowed_languages(table: Any, languages: Optional[Sequence[str]]) -> List[str]:
    """Allowed target languages, sorted by name; a one-line error for an unknown language."""
    known = _table_languages(table)
    if languages is None:
        return sorted(known)
    unknown = [lang for lang in languages if lang not in known]
    if unknown:
        where = getattr(table, "path", None) or "the alignment table"
        raise ValueError(
            f"codeswitch languages {', '.join(unknown)} are not in {where} "
            f"(it has: {', '.join(known) or 'none'})"
        )
    return sorted(set(languages))


def _validate_ids(ids: Tuple[int, ...], vocab_size: int, where: str, what: Callable[[], str]) -> None:
    if ids and (min(ids) < 0 or max(ids) >= vocab_size):
        bad = next(t for t in ids if not 0 <= t < vocab_size)
        raise ValueError(f"{where}: {what()} has token id {bad} outside the vocabulary (size {vocab_size})")


def merged_candidates(
    table: Any, vocab_size: int, special: np.ndarray, languages: Optional[Sequence[str]]
) -> Tuple[Dict[Tuple[int, ...], List[List[Tuple[int, ...]]]], Dict[Tuple[int, ...], List[str]], List[str]]:
    """Source token sequence -> list of groups (one per allowed language, sorted by language),
    each group a list of translation id tuples; see "Candidates" in the module docstring.

    Returns:
        (candidates, group languages per candidate, allowed languages).
    """
    allowed = _allowed_languages(table, languages)
    allowed_set = set(allowed)
    where = getattr(table, "path", None) or "alignment table"
    special_set = frozenset(np.flatnonzero(special).tolist())
    merged: Dict[Tuple[int, ...], Dict[str, List[Tuple[int, ...]]]] = {}
    merged_bare: Dict[Tuple[int, ...], Dict[str, List[Tuple[int, ...]]]] = {}
    for entry in table.entries:
        key = tuple(map(int, entry.ids))
        _validate_ids(key, vocab_size, where, lambda: f"word {getattr(entry, 'word', None)!r}")
        _add_translations(entry, key, "ids", merged, allowed_set, vocab_size, special_set, where)
        bare = getattr(entry, "bare_ids", None)
        if bare:
            bare_key = tuple(map(int, bare))
            _validate_ids(bare_key, vocab_size, where, lambda: f"bare form of word {getattr(entry, 'word', None)!r}")
            _add_translations(entry, bare_key, "bare_ids", merged_bare, allowed_set, vocab_size, special_set, where)
    # a bare form equal to some space form (SentencePiece) is not added
    for key, per_lang in merged_bare.items():
        merged.setdefault(key, per_lang)
    candidates: Dict[Tuple[int, ...], List[List[Tuple[int, ...]]]] = {}
    group_langs: Dict[Tuple[int, ...], List[str]] = {}
    for key, per_lang in merged.items():
        langs = sorted(lang for lang, lst in per_lang.items() if lst)
        if key and langs:
            candidates[key] = [per_lang[lang] for lang in langs]
            group_langs[key] = langs
    return candidates, group_langs, allowed


def _add_translations(
    entry: Any,
    key: Tuple[int, ...],
    form: str,
    merged: Dict[Tuple[int, ...], Dict[str, List[Tuple[int, ...]]]],
    allowed_set: set,
    vocab_size: int,
    special_set: frozenset,
    where: str,
) -> None:
    """Merge ``entry``'s translations (their ``form`` ids: ``ids`` or ``bare_ids``) under ``key``."""
    per_lang = merged.setdefault(key, {})
    for lang, translations in entry.translations.items():
        for tr in translations:
            raw = getattr(tr, form, None)
            if form == "bare_ids" and not raw:
                continue  # a translation without a bare form is not used word-initially
            ids = tuple(map(int, raw))

            def what() -> str:
                return f"translation {getattr(tr, 'text', None)!r} ({lang}) of word {getattr(entry, 'word', None)!r}"

            if not ids:
                raise ValueError(f"{where}: {what()} has no token ids")
            _validate_ids(ids, vocab_size, where, what)
            if not special_set.isdisjoint(ids):
                bad = next(t for t in ids if t in special_set)
                raise ValueError(f"{where}: {what()} contains special token id {bad}")
            if lang not in allowed_set:
                continue
            lst = per_lang.setdefault(lang, [])
            if ids not in lst:
                lst.append(ids)


def as_masks(word_start_mask: np.ndarray, special_ids: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    ws = np.ascontiguousarray(np.asarray(word_start_mask).astype(np.uint8, copy=False).reshape(-1))
    if ws.size == 0:
        raise ValueError("word_start_mask is empty: it must hold one flag per vocabulary id")
    special = np.zeros(ws.size, dtype=np.uint8)
    for s in special_ids:
        s = int(s)
        if not (0 <= s < ws.size):
            raise ValueError(f"special token id {s} is outside the vocabulary (size {ws.size})")
        special[s] = 1
    return ws, special


def boundary_arrays(boundaries: Any, special: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(opener, follow, lead) uint8 per id; special tokens are openers that end a word."""
    from megatron_prealign.alignment.boundaries import FOLLOW_YES, LEAD_SPACE, WordBoundaries

    vocab = special.size
    b = boundaries if boundaries is not None else WordBoundaries.permissive(vocab)
    if b.vocab_size != vocab:
        raise ValueError(f"word boundaries cover {b.vocab_size} token ids, the vocabulary has {vocab}")
    sp = special.astype(bool)
    opener = np.where(sp, 1, b.opener).astype(np.uint8)
    follow = np.where(sp, FOLLOW_YES, b.follow).astype(np.uint8)
    lead = np.where(sp, LEAD_SPACE, b.lead).astype(np.uint8)
    return opener, follow, lead


@dataclasses.dataclass
class CompiledTable:
    """The merged candidates as flat arrays (what the C++ engine is built from)."""

    src_tokens: np.ndarray  # int32, source sequences back to back
    src_offsets: np.ndarray  # int64 (n_candidates + 1)
    group_offsets: np.ndarray  # int64 (n_candidates + 1) into groups
    group_lang: np.ndarray  # int32 (n_groups) index into languages
    group_trans_offsets: np.ndarray  # int64 (n_groups + 1) into translations
    trans_offsets: np.ndarray  # int64 (n_translations + 1) into trans_tokens
    trans_tokens: np.ndarray  # int32
    languages: List[str]
    unreachable_entries: int
    max_translation_id: int


def compile_table(table: Any, ws: np.ndarray, special: np.ndarray, languages: Optional[Sequence[str]]) -> CompiledTable:
    candidates, group_langs, allowed = merged_candidates(table, ws.size, special, languages)
    opens = (ws.astype(bool) | special.astype(bool)).tolist()
    lang_index = {lang: i for i, lang in enumerate(allowed)}
    src_tokens: List[int] = []
    src_offsets = [0]
    group_offsets = [0]
    group_lang: List[int] = []
    group_trans_offsets = [0]
    trans_offsets = [0]
    trans_tokens: List[int] = []
    unreachable = 0
    for key, groups in candidates.items():
        if any(opens[t] for t in key[1:]):
            unreachable += 1
        src_tokens.extend(key)
        src_offsets.append(len(src_tokens))
        for lang, group in zip(group_langs[key], groups):
            group_lang.append(lang_index[lang])
            for tr in group:
                trans_tokens.extend(tr)
                trans_offsets.append(len(trans_tokens))
            group_trans_offsets.append(len(trans_offsets) - 1)
        group_offsets.append(len(group_lang))
    return CompiledTable(
        src_tokens=np.array(src_tokens, dtype=np.int32),
        src_offsets=np.array(src_offsets, dtype=np.int64),
        group_offsets=np.array(group_offsets, dtype=np.int64),
        group_lang=np.array(group_lang, dtype=np.int32),
        group_trans_offsets=np.array(group_trans_offsets, dtype=np.int64),
        trans_offsets=np.array(trans_offsets, dtype=np.int64),
        trans_tokens=np.array(trans_tokens, dtype=np.int32),
        languages=allowed,
        unreachable_entries=unreachable,
        max_translation_id=int(max(trans_tokens)) if trans_tokens else -1,
    )


