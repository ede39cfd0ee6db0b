"""Building alignment tables: dictionaries x corpus words -> token ids, and the En-Clone table.

Choices (documented for users comparing against the paper):

* Source words are the corpus surface forms kept by
  :func:`megatron_prealign.alignment.words.select_words` (min count, top fraction), most frequent
  first. Their ids are ``tokenizer.encode_word(word)`` (word-initial form).
* Dictionary look-up (case policy, ``case_fallback``): the exact surface form first. A word with
  no exact entry that is not all lower case (``The``, ``Windows``, ``Tom``) is looked up through
  its lower case (``str.lower()``, exactly, never case-insensitively: a line ``US<TAB>USA`` does
  not make ``us`` -> ``USA``) only with ``case_fallback="auto"`` and only when the corpus counts
  say it is mostly a common word: ``0 < count(word.lower()) >= count(word)``, i.e. the
  lower-case form is seen at least as often (``The`` <= ``the``, but
  ``Windows`` > ``windows`` and ``Tom`` > ``tom`` in real text: proper nouns stay untranslated).
  A translation found this way keeps the word's capital where the target script has case:
  its first character is upper-cased (``The`` -> ``Die``; an all-caps word gets an all-caps
  translation); scripts without case (zh, ar) are unchanged. ``case_fallback="off"`` uses exact
  forms only. Translations found by the exact form are used as written.
* Bare forms: each entry and translation also gets ``bare_ids`` = ``tokenizer.tokenize(text)``
  (no leading space) where that differs from ``ids`` (GPT-2 style tokenizers), so that the
  codeswitcher reaches words at the start of a document and after a newline, tab, quote or
  bracket. Words NLTK keeps attached to a leading quote (``s``, ``t``, ``re``...) get none.
* A translation identical to the source word (same text, or same token ids) is dropped unless
  ``keep_identical``: it is a no-op for codeswitching and a trivial positive pair for the
  contrastive loss. Dropped ones are counted per language (``identical_skipped``).
* Words without any translation are left out of the table unless ``keep_untranslated``.
* A source word or translation whose ids contain a special token of the tokenizer (in practice
  its unknown token: SentencePiece/WordPiece models without byte fallback turn uncovered
  characters into ``<unk>``) is left out and counted (``words_unencodable``,
  ``unencodable_skipped`` per language): the codeswitcher would write ``<unk>`` into the corpus
  (and rejects such tables), and ``<unk>`` matches every uncovered word.
* Two surface forms with the same token ids (possible with normalising tokenizers) become one
  entry: the more frequent keeps its ``word``, counts add up, translations are merged, the other
  form is listed in ``aliases``. The codeswitcher keys on ids, so ids are unique per table.
* ``max_translations`` caps translations per language per word (paper: GPT-4's 5 most common).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from megatron_prealign.alignment.boundaries import CLITIC_WORDS
from megatron_prealign.alignment.dictionaries import BilingualDictionary
from megatron_prealign.alignment.table import AlignmentEntry, AlignmentTable, Translation

__all__ = [
    "CASE_FALLBACKS",
    "AlignmentBuildConfig",
    "build_alignment_table",
    "build_en_clone_table",
    "format_coverage",
    "measure_reach",
    "use_case_fallback",
    "recase",
]

CASE_FALLBACKS = ("auto", "off")


def use_case_fallback(word: str, counts: Mapping[str, int]) -> bool:
    """Whether ``word`` (no exact dictionary entry) may be translated through its lower case:
    it is not all lower case and its lower case is seen at least as often in the corpus
    (``0 < counts[word.lower()] >= counts[word]``: mostly a common word, e.g. ``The``), unlike a
    proper noun (``Windows``, ``Tom``: the capitalised form dominates)."""
    low = word.lower()
    n_low = int(counts.get(low, 0))
    return low != word and n_low > 0 and n_low >= int(counts.get(word, 0))


def recase(word: str, translation: str) -> str:
    """A lower-case entry's translation in ``word``'s case: all caps for an all-caps word of two
    or more letters, else the first character upper-cased; unchanged in scripts without case."""
    if len(word) > 1 and word.isupper():
        return translation.upper()
    if word[:1].isupper():
        return translation[:1].upper() + translation[1:]
    return translation


@dataclass
class AlignmentBuildConfig:
    """How translations are attached to source words."""

    case_fallback: str = "auto"
    """``"auto"``: a capitalised word without an exact entry is translated through its lower
    case when the corpus counts say it is mostly a common word (see the module docstring);
    ``"off"``: exact forms only. ``True``/``False`` are accepted as ``"auto"``/``"off"``."""

    bare_forms: bool = True
    """Store ``bare_ids`` (the form without a leading space) where it differs from ``ids``."""

    def __post_init__(self) -> None:
        if self.case_fallback is True:
            self.case_fallback = "auto"
        elif self.case_fallback is False:
            self.case_fallback = "off"
        if self.case_fallback not in CASE_FALLBACKS:
            raise ValueError(f"--case-fallback must be one of {', '.join(CASE_FALLBACKS)}, got {self.case_fallback!r}")

    keep_identical: bool = False
    """Keep translations identical to the source word (text or ids)."""

    keep_untranslated: bool = False
    """Keep source words that have no translation in any language."""

    max_translations: Optional[int] = None
    """At most this many translations per language per word (None = all)."""

    source_language: str = "en"
    """Language code of the source words."""


def _bare_ids(tokenizer: Any, text: str, ids: List[int], special: frozenset) -> Optional[List[int]]:
    """``tokenize(text)`` (no leading space) where it differs from ``ids`` and holds no special
    token, else None."""
    b = [int(i) for i in tokenizer.tokenize(text.strip())]
    return b if b and b != ids and special.isdisjoint(b) else None


def build_alignment_table(
    words: Sequence[Tuple[str, int]],
    dictionaries: Mapping[str, Union[BilingualDictionary, Sequence[BilingualDictionary]]],
    tokenizer: Any,
    config: Optional[AlignmentBuildConfig] = None,
    words_counted: Optional[int] = None,
    total_occurrences: Optional[int] = None,
    meta: Optional[Dict[str, Any]] = None,
    counts: Optional[Mapping[str, int]] = None,
) -> Tuple[AlignmentTable, Dict[str, Any]]:
    """Attach dictionary translations to source words and tokenize everything.

    Args:
        words (Sequence[Tuple[str, int]]): ``(word, count)``, most frequent first.
        dictionaries (Mapping): language -> one dictionary or several (looked up in order).
        tokenizer: a ``PreAlignTokenizer`` (``encode_word``, ``vocab_size``, ``describe``).
        config (Optional[AlignmentBuildConfig]): see the module docstring.
        words_counted (Optional[int]): distinct words in the corpus (for the report).
        total_occurrences (Optional[int]): word occurrences in the corpus (for the report).
        meta (Optional[Dict[str, Any]]): provenance stored in the table header.
        counts (Optional[Mapping[str, int]]): corpus counts of every surface form (for the case
            policy); default: the counts in ``words``.

    Returns:
        Tuple[AlignmentTable, Dict[str, Any]]: the table and the coverage report.
    """
    cfg = config or AlignmentBuildConfig()
    case_counts: Mapping[str, int] = counts if counts is not None else dict(words)
    languages = list(dictionaries)
    dicts: Dict[str, List[BilingualDictionary]] = {
        lang: list(d) if isinstance(d, (list, tuple)) else [d] for lang, d in dictionaries.items()
    }
    by_ids: Dict[Tuple[int, ...], AlignmentEntry] = {}
    per_lang = {
        lang: {"words_with_translation": 0, "translations": 0, "identical_skipped": 0,
               "unencodable_skipped": 0, "occurrences_covered": 0}
        for lang in languages
    }
    special = frozenset(int(i) for i in getattr(tokenizer, "special_ids", ()))
    words_with_any = 0
    words_unencodable = 0
    occurrences_kept = 0
    occurrences_translated = 0
    aliases_merged = 0
    case_fallbacks = 0

    @functools.lru_cache(maxsize=None)
    def encode(text: str) -> List[int]:
        return [int(i) for i in tokenizer.encode_word(text)]

    def bare(text: str, ids: List[int]) -> Optional[List[int]]:
        return _bare_ids(tokenizer, text, ids, special) if cfg.bare_forms else None

    for word, count in words:
        occurrences_kept += count
        ids = encode(word)
        if not special.isdisjoint(ids):
            words_unencodable += 1
            continue
        translations: Dict[str, List[Translation]] = {}
        fallback = cfg.case_fallback == "auto" and use_case_fallback(word, case_counts)
        used_fallback = False
        for lang in languages:
            seen_ids = set()
            out: List[Translation] = []
            for d in dicts[lang]:
                texts = d.lookup(word, case_fallback=False)
                if not texts and fallback:
                    texts = [recase(word, t) for t in d.lookup(word.lower(), case_fallback=False)]
                    used_fallback = used_fallback or bool(texts)
                for text in texts:
                    t_ids = encode(text)
                    if not cfg.keep_identical and (text == word or t_ids == ids):
                        per_lang[lang]["identical_skipped"] += 1
                        continue
                    if not special.isdisjoint(t_ids):
                        per_lang[lang]["unencodable_skipped"] += 1
                        continue
                    if tuple(t_ids) in seen_ids:
                        continue
                    seen_ids.add(tuple(t_ids))
                    out.append(Translation(text, t_ids, bare(text, t_ids)))
            if cfg.max_translations is not None:
                out = out[: cfg.max_translations]
            if out:
                translations[lang] = out
                per_lang[lang]["words_with_translation"] += 1
                per_lang[lang]["translations"] += len(out)
                per_lang[lang]["occurrences_covered"] += count
        if translations:
            case_fallbacks += int(used_fallback)
            words_with_any += 1
            occurrences_translated += count
        elif not cfg.keep_untranslated:
            continue
        key = tuple(ids)
        existing = by_ids.get(key)
        if existing is None:
            entry = AlignmentEntry(word=word, count=count, ids=ids, translations=translations)
            if word.lower() not in CLITIC_WORDS:
                entry.bare_ids = bare(word, ids)
            by_ids[key] = entry
            continue
        aliases_merged += 1
        existing.aliases.append(word)
        existing.count += count
        for lang, ts in translations.items():
            have = existing.translations.setdefault(lang, [])
            have_ids = {tuple(t.ids) for t in have}
            for t in ts:
                if tuple(t.ids) not in have_ids and (
                    cfg.max_translations is None or len(have) < cfg.max_translations
                ):
                    have.append(t)
                    have_ids.add(tuple(t.ids))

    entries = list(by_ids.values())
    n = len(words)
    for s in per_lang.values():
        s["fraction_of_kept_words"] = s["words_with_translation"] / n if n else 0.0
        s["fraction_of_occurrences"] = (
            s["occurrences_covered"] / total_occurrences if total_occurrences else None
        )
    report: Dict[str, Any] = {
        "words_counted": words_counted,
        "words_kept": n,
        "words_with_translation": words_with_any,
        "fraction_with_translation": words_with_any / n if n else 0.0,
        "entries": len(entries),
        "aliases_merged": aliases_merged,
        "case_fallback": cfg.case_fallback,
        "words_translated_via_lower_case": case_fallbacks,
        "words_unencodable": words_unencodable,
        "occurrences_total": total_occurrences,
        "occurrences_kept": occurrences_kept,
        "occurrences_translated": occurrences_translated,
        "per_language": per_lang,
        "dictionaries": [d.stats.to_json() for ds in dicts.values() for d in ds],
    }
    table = AlignmentTable(
        languages=languages,
        entries=entries,
        vocab_size=int(tokenizer.vocab_size),
        tokenizer=tokenizer.describe(),
        source_language=cfg.source_language,
        meta=dict(meta or {}, coverage={k: v for k, v in report.items() if k != "dictionaries"}),
    )
    if not entries:
        names = ", ".join(f"{d.stats.language}:{d.stats.path}" for ds in dicts.values() for d in ds)
        raise ValueError(
            f"alignment table would have 0 entries: none of the {n} corpus words has a translation in "
            f"{names or 'the dictionaries'} (case fallback {cfg.case_fallback})"
        )
    table.validate()
    return table, report


def build_en_clone_table(
    tokenizer: Any,
    words: Iterable[Union[str, Tuple[str, int]]],
    meta: Optional[Dict[str, Any]] = None,
) -> AlignmentTable:
    """The En-Clone alignment table: every word maps to its clone (language ``"en_clone"``).

    Args:
        tokenizer: an ``EnCloneTokenizer`` (ids of the table are in its 2V vocabulary).
        words (Iterable): words or ``(word, count)`` pairs, most frequent first.
        meta (Optional[Dict[str, Any]]): provenance for the header.

    Returns:
        AlignmentTable: entries ``word -> [Translation(text=word, ids=clone ids)]``; surface
        forms with identical ids are merged as in :func:`build_alignment_table`; words whose
        ids hold a special (unknown) token are left out.
    """
    from megatron_prealign.tokenizer.en_clone import EN_CLONE_LANGUAGE, EnCloneTokenizer

    if not isinstance(tokenizer, EnCloneTokenizer):
        raise TypeError("build_en_clone_table needs an EnCloneTokenizer (use --en-clone)")
    by_ids: Dict[Tuple[int, ...], AlignmentEntry] = {}
    special = frozenset(int(i) for i in tokenizer.special_ids)
    for item in words:
        word, count = (item, 0) if isinstance(item, str) else (item[0], int(item[1]))
        ids = tokenizer.encode_word(word)
        if not special.isdisjoint(ids):  # an unknown token: its "clone" would be itself
            continue
        key = tuple(ids)
        if key in by_ids:
            by_ids[key].aliases.append(word)
            by_ids[key].count += count
            continue
        bare = None if word.lower() in CLITIC_WORDS else _bare_ids(tokenizer, word, ids, special)
        # the clone of the ids already encoded (no second tokenization of the word)
        bare_clone = tokenizer.clone_id_list(bare) if bare else None
        translation = Translation(word, tokenizer.clone_id_list(ids), bare_clone)
        by_ids[key] = AlignmentEntry(word, count, ids, {EN_CLONE_LANGUAGE: [translation]},
                                     bare_ids=bare)
    table = AlignmentTable(
        languages=[EN_CLONE_LANGUAGE],
        entries=list(by_ids.values()),
        vocab_size=tokenizer.vocab_size,
        tokenizer=tokenizer.describe(),
        meta=dict(meta or {}),
    )
    table.validate()
    return table


def format_coverage(report: Mapping[str, Any]) -> str:
    """Human-readable multi-line summary of a coverage report."""

    def pct(x: Optional[float]) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"

    lines = [
        f"words counted: {report.get('words_counted')}, kept: {report['words_kept']}, "
        f"with >= 1 translation: {report['words_with_translation']} "
        f"({pct(report['fraction_with_translation'])}), table entries: {report['entries']} "
        f"(aliases merged: {report['aliases_merged']})"
        + (f", words with an unknown/special token skipped: {report['words_unencodable']}"
           if report.get("words_unencodable") else "")
    ]
    total = report.get("occurrences_total")
    if total:
        lines.append(
            f"word occurrences: {total}, in kept words: {pct(report['occurrences_kept'] / total)}, "
            f"translated: {pct(report['occurrences_translated'] / total)}"
        )
    for lang, s in report["per_language"].items():
        lines.append(
            f"  {lang}: {s['words_with_translation']} words ({pct(s['fraction_of_kept_words'])} of kept), "
            f"{s['translations']} translations, identical skipped: {s['identical_skipped']}, "
            + (f"unencodable (unknown/special token) skipped: {s['unencodable_skipped']}, "
               if s.get("unencodable_skipped") else "")
            + f"occurrences covered: {pct(s['fraction_of_occurrences'])}"
        )
    reach = report.get("reach")
    if reach:
        lines.append(
            f"reachable by codeswitching (the pass's matcher over {reach['documents']} documents): "
            f"{reach['reachable']} of {reach['table_word_occurrences']} table-word occurrences found by NLTK "
            f"({pct(reach['fraction_reachable'])})"
        )
    for d in report.get("dictionaries", []):
        lines.append(
            f"  dictionary {d['language']}:{d['path']} ({d['format']}): {d['pairs']} pairs, "
            f"{d['malformed']} malformed lines"
            + (f", e.g. {d['malformed_examples'][0]}" if d["malformed_examples"] else "")
        )
    return "\n".join(lines)


def measure_reach(table: AlignmentTable, tokenizer: Any, documents: Iterable[str]) -> Dict[str, Any]:
    """What codeswitching can reach, measured with the pass's own matcher.

    Each document is tokenized and run through the C++ codeswitcher at ratio 1 (every whole-word
    match of a table source is substituted), with the tokenizer's word boundaries; the matches
    are counted against the occurrences of the table's words that NLTK finds in the same
    documents (:func:`~megatron_prealign.alignment.words.words_of`).

    Args:
        table (AlignmentTable): the table (built for ``tokenizer``).
        tokenizer: its ``PreAlignTokenizer``.
        documents (Iterable[str]): sample documents.

    Returns:
        Dict[str, Any]: ``documents``, ``table_word_occurrences`` (NLTK), ``reachable`` (matches
        of the pass), ``fraction_reachable``.
    """
    from megatron_prealign.alignment.boundaries import word_boundaries
    from megatron_prealign.alignment.words import words_of
    from megatron_prealign.data.codeswitch import CodeswitchConfig, Codeswitcher

    switcher = Codeswitcher(
        table, tokenizer.word_start_mask(), CodeswitchConfig(ratio=1.0), tokenizer.special_ids,
        word_boundaries(tokenizer),
    )
    surface = {e.word for e in table} | {a for e in table for a in e.aliases}
    n_docs = occurrences = 0
    for i, text in enumerate(documents):
        n_docs += 1
        occurrences += sum(1 for w in words_of(text) if w in surface)
        switcher.apply(np.asarray(tokenizer.tokenize(text), dtype=np.int32), i)
    reachable = switcher.applied_stats().substituted
    return {
        "documents": n_docs,
        "table_word_occurrences": occurrences,
        "reachable": reachable,
        "fraction_reachable": reachable / occurrences if occurrences else 0.0,
    }
