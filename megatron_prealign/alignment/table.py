"""The alignment table: English words, their token ids, and their translations' token ids.

File format (JSONL, UTF-8), version 1. Line 1 is the header::

    {"format": "prealign-alignment-table", "version": 1, "source_language": "en",
     "languages": ["de", "zh"], "vocab_size": 50257, "tokenizer": {...describe()...},
     "num_entries": 2, "meta": {...free-form provenance: inputs, min_count, ...}}

then one line per source word, most frequent first::

    {"word": "bank", "count": 1234, "ids": [3331],
     "translations": {"de": [{"text": "Bank", "ids": [347, 962]},
                             {"text": "Ufer", "ids": [5512]}],
                      "zh": [{"text": "银行", "ids": [...]}]},
     "aliases": ["Bank"]}                       # optional: other surface forms merged here

Field meanings (stable; the codeswitcher and the pre-alignment word sampler read them):

* ``word``: the source word's surface form as counted in the corpus (case kept).
* ``count``: its corpus frequency (0 when the table was not built from a corpus).
* ``ids``: token ids of the word-initial form (``tokenizer.encode_word(word)``, i.e. as the
  word appears after a space); the first id is a word-start token.
* ``translations[lang]``: a list of ``Translation(text, ids)``, dictionary order, no duplicates;
  ``ids`` is the word-initial form of ``text``. A language may be absent for a word.
* ``aliases``: other source surface forms whose token ids are identical to ``ids`` (normalising
  tokenizers) and whose translations were merged into this entry.
* ``bare_ids`` (optional, on entries and on translations): token ids of the form without a
  leading space (``tokenizer.tokenize(word)``), as the word appears at the start of a document
  or after a newline, tab, quote or bracket; present only where it differs from ``ids`` (GPT-2
  style tokenizers). The codeswitcher substitutes bare source forms by bare translation forms.

Every id is in ``[0, vocab_size)`` (checked by :meth:`AlignmentTable.validate`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

from megatron_prealign.platform.files import atomic_open

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "Translation", "AlignmentEntry", "AlignmentTable"]

FORMAT_NAME = "prealign-alignment-table"
FORMAT_VERSION = 1


@dataclass
class Translation:
    """One translation of a source word."""

    text: str
    """The translation as written in the dictionary (may contain spaces)."""

    ids: List[int]
    """Token ids of its word-initial form (``encode_word(text)``)."""

    bare_ids: Optional[List[int]] = None
    """Token ids without a leading space (``tokenize(text)``); None when equal to ``ids``."""

    def to_json(self) -> Dict[str, Any]:
        """JSON object ``{"text", "ids"[, "bare_ids"]}``."""
        obj: Dict[str, Any] = {"text": self.text, "ids": [int(i) for i in self.ids]}
        if self.bare_ids:
            obj["bare_ids"] = [int(i) for i in self.bare_ids]
        return obj


@dataclass
class AlignmentEntry:
    """A source word and its translations in every target language."""

    word: str
    """Source surface form (case kept)."""

    count: int
    """Corpus frequency of ``word`` (0 when unknown)."""

    ids: List[int]
    """Token ids of the word-initial form of ``word``."""

    translations: Dict[str, List[Translation]] = field(default_factory=dict)
    """Language code -> translations (at least one language has one in a built table)."""

    aliases: List[str] = field(default_factory=list)
    """Other surface forms with identical ``ids`` merged into this entry."""

    bare_ids: Optional[List[int]] = None
    """Token ids of ``word`` without a leading space (``tokenize(word)``); None when equal to
    ``ids`` or when the word has no usable bare form."""

    def to_json(self) -> Dict[str, Any]:
        """JSON object of one table line."""
        obj: Dict[str, Any] = {
            "word": self.word,
            "count": int(self.count),
            "ids": [int(i) for i in self.ids],
            "translations": {
                lang: [t.to_json() for t in ts] for lang, ts in self.translations.items()
            },
        }
        if self.aliases:
            obj["aliases"] = list(self.aliases)
        if self.bare_ids:
            obj["bare_ids"] = [int(i) for i in self.bare_ids]
        return obj

    @classmethod
    def from_json(cls, obj: Dict[str, Any]) -> "AlignmentEntry":
        """Inverse of :meth:`to_json` (raises KeyError/TypeError on a malformed object)."""
        return cls(
            word=str(obj["word"]),
            count=int(obj.get("count", 0)),
            ids=[int(i) for i in obj["ids"]],
            translations={
                str(lang): [
                    Translation(
                        str(t["text"]), [int(i) for i in t["ids"]],
                        [int(i) for i in t["bare_ids"]] if t.get("bare_ids") else None,
                    )
                    for t in ts
                ]
                for lang, ts in obj.get("translations", {}).items()
            },
            aliases=[str(a) for a in obj.get("aliases", [])],
            bare_ids=[int(i) for i in obj["bare_ids"]] if obj.get("bare_ids") else None,
        )


@dataclass
class AlignmentTable:
    """Source words with their translations, all as token ids of one tokenizer."""

    languages: List[str]
    """Target language codes, in the order given when the table was built."""

    entries: List[AlignmentEntry]
    """One entry per source word, most frequent first."""

    vocab_size: int
    """Vocabulary size of the tokenizer the ids belong to."""

    tokenizer: Dict[str, Any]
    """``describe()`` of that tokenizer."""

    source_language: str = "en"
    """Language code of the source words."""

    meta: Dict[str, Any] = field(default_factory=dict)
    """Free-form provenance (inputs, thresholds, coverage)."""

    path: Optional[str] = None
    """File the table was loaded from (for error messages); not saved."""

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[AlignmentEntry]:
        return iter(self.entries)

    def header(self) -> Dict[str, Any]:
        """The header object (line 1 of the file)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "source_language": self.source_language,
            "languages": list(self.languages),
            "vocab_size": int(self.vocab_size),
            "tokenizer": self.tokenizer,
            "num_entries": len(self.entries),
            "meta": self.meta,
        }

    def pairs(self, language: Optional[str] = None) -> Iterator[tuple]:
        """Yield ``(entry, language, translation)`` for every translation (one language or all)."""
        for entry in self.entries:
            for lang, ts in entry.translations.items():
                if language is None or lang == language:
                    for t in ts:
                        yield entry, lang, t

    def validate(self, vocab_size: Optional[int] = None) -> None:
        """Check every id against ``vocab_size`` (default: the table's own) and basic structure.

        Raises:
            ValueError: one line naming the file, the word and the offending id/language.
        """
        v = self.vocab_size if vocab_size is None else int(vocab_size)
        where = self.path or "<alignment table>"
        if vocab_size is not None and int(vocab_size) < self.vocab_size:
            raise ValueError(
                f"{where}: table built for vocab_size {self.vocab_size}, tokenizer has {vocab_size}"
            )

        def check(what: str, ids: List[int], bare_ids: Optional[List[int]]) -> None:
            if not ids:
                raise ValueError(f"{where}: {what} has no token ids")
            bad = [i for i in list(ids) + list(bare_ids or []) if not 0 <= i < v]
            if bad:
                raise ValueError(f"{where}: {what}: id {bad[0]} outside vocab_size {v}")

        for entry in self.entries:
            check(f"word {entry.word!r}", entry.ids, entry.bare_ids)
            for lang, ts in entry.translations.items():
                if lang not in self.languages:
                    raise ValueError(f"{where}: word {entry.word!r}: language {lang!r} not in header {self.languages}")
                for t in ts:
                    check(f"word {entry.word!r} ({lang} {t.text!r})", t.ids, t.bare_ids)

    def save(self, path: str) -> None:
        """Write the JSONL file under a temporary name, then rename it to ``path``."""
        with atomic_open(path) as f:
            f.write(json.dumps(self.header(), ensure_ascii=False) + "\n")
            for entry in self.entries:
                f.write(json.dumps(entry.to_json(), ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str) -> "AlignmentTable":
        """Read a table file.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not an alignment table / unsupported version / malformed line
                (one line naming ``path:line``).
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(f"alignment table: no such file: {path}")
        entries: List[AlignmentEntry] = []
        with open(path, encoding="utf-8") as f:
            first = f.readline()
            try:
                header = json.loads(first)
            except json.JSONDecodeError:
                raise ValueError(f"{path}:1: not an alignment table (header is not JSON)") from None
            if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
                raise ValueError(f"{path}:1: not an alignment table (format != {FORMAT_NAME!r})")
            if int(header.get("version", -1)) > FORMAT_VERSION:
                raise ValueError(
                    f"{path}:1: table version {header.get('version')} is newer than supported {FORMAT_VERSION}"
                )
            for lineno, line in enumerate(f, 2):
                if not line.strip():
                    continue
                try:
                    entries.append(AlignmentEntry.from_json(json.loads(line)))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
                    raise ValueError(f"{path}:{lineno}: malformed table entry ({type(e).__name__}: {e})") from None
        table = cls(
            languages=list(header.get("languages", [])),
            entries=entries,
            vocab_size=int(header["vocab_size"]),
            tokenizer=header.get("tokenizer", {}),
            source_language=header.get("source_language", "en"),
            meta=header.get("meta", {}),
            path=path,
        )
        n = header.get("num_entries")
        if n is not None and int(n) != len(entries):
            raise ValueError(f"{path}: header says {n} entries, file has {len(entries)} (truncated?)")
        return table


def check_table_tokenizer(table: AlignmentTable, tokenizer: Any, flag: str) -> None:
    """Refuse an alignment table built for another tokenizer than ``tokenizer`` (one line).

    The one "table was built for this tokenizer" check, used by every tool and by training.
    A table without a tokenizer record (older tables) passes: its ids are still checked
    against the vocabulary by :meth:`AlignmentTable.validate`.

    Args:
        table: the loaded table (its recorded ``describe()`` is ``table.tokenizer``).
        tokenizer: the tokenizer in use (needs ``describe()`` and ``vocab_size``).
        flag: the command-line flag naming the table (``--alignment-table``).

    Raises:
        ValueError: the two tokenizers differ (names ``flag`` and the table's path).
    """
    from megatron_prealign.tokenizer.base import same_tokenizer

    recorded = table.tokenizer
    describe = getattr(tokenizer, "describe", None)
    if not recorded or describe is None:
        return
    mine = describe()
    if not same_tokenizer(recorded, mine):
        raise ValueError(
            f"{flag} {table.path}: was built for another tokenizer ({recorded.get('type')}, vocab "
            f"{recorded.get('vocab_size')}) than this run's ({mine.get('type')}, vocab {tokenizer.vocab_size})"
        )
