"""Bilingual dictionaries in the formats people have: MUSE, TSV, PreAlign JSONL.

* ``muse``: MUSE's ``src tgt`` per line, separated by one space or a tab; a word with several
  translations appears on several lines (``bank Bank`` / ``bank Ufer``).
* ``tsv``: ``src<TAB>tgt`` (further columns ignored), with or without a header line; the
  target may contain spaces (``ice cream<TAB>Speiseeis``).
* ``prealign-jsonl``: the PreAlign repository's files, one JSON object per line, either
  ``{"words": "bank $ 银行 $ 水岸"}`` (first item the source word, the rest its translations)
  or ``{"src_text": "bank", "tgt_text": "银行"}`` (``tgt_text`` may be a list).
* ``auto`` (default): ``.jsonl``/``.json`` -> prealign-jsonl, ``.tsv`` -> tsv, otherwise muse,
  which is line-based: lines with a tab are split on tabs, others on whitespace — so MUSE files
  and tab-separated files of any extension both load.

Compressed files (gzip, bzip2, xz) are read as such, recognised by their magic bytes (whatever
the extension); ``auto`` looks at the extension under ``.gz``/``.bz2``/``.xz``
(``en-de.tsv.gz`` is TSV). A file with no usable line (empty, binary, the wrong format) is a
one-line error naming the file.

Malformed lines (wrong number of fields, empty word, invalid JSON or UTF-8, missing keys) are counted
and reported with ``file:line`` examples; ``strict=True`` raises on the first one. A header
line (``src<TAB>tgt``, ``source target``, ``en de``, ``word translation``...) is skipped.
Translations keep file order; duplicates of a (source, translation) pair are dropped.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

__all__ = [
    "DICTIONARY_FORMATS",
    "DictionaryStats",
    "BilingualDictionary",
    "read_dictionary",
    "parse_dictionary_spec",
]

DICTIONARY_FORMATS = ("auto", "muse", "tsv", "prealign-jsonl")
_HEADER_SRC = {"src", "source", "src_word", "source_word", "word", "en", "eng", "english", "src_text"}
_HEADER_TGT = {"tgt", "target", "tgt_word", "target_word", "translation", "translations", "tgt_text", "trg"}
MAX_EXAMPLES = 5


@dataclass
class DictionaryStats:
    """What reading one dictionary file found."""

    path: str
    """The file."""

    language: str
    """Target language code."""

    format: str
    """Format actually used (``auto`` resolved)."""

    lines: int = 0
    """Non-empty lines read."""

    pairs: int = 0
    """Distinct (source, translation) pairs kept."""

    duplicates: int = 0
    """Repeated pairs dropped."""

    header_skipped: bool = False
    """Whether a header line was recognised and skipped."""

    malformed: int = 0
    """Malformed lines (skipped)."""

    malformed_examples: List[str] = field(default_factory=list)
    """Up to five ``file:line: reason`` strings."""

    def to_json(self) -> Dict[str, object]:
        """Plain dict for the coverage report."""
        return dict(self.__dict__)


@dataclass
class BilingualDictionary:
    """Source word -> translations (file order), for one target language."""

    language: str
    """Target language code."""

    entries: Dict[str, List[str]]
    """Source word as written -> translations."""

    stats: DictionaryStats
    """Reading statistics."""

    def lookup(self, word: str, case_fallback: bool = True) -> List[str]:
        """Translations of ``word``: exact match, else (``case_fallback``) those of its lower
        case ``word.lower()`` exactly, never a case-insensitive match (``US<TAB>USA`` does not
        translate ``us``). Translations are returned as written; the build's case policy
        (:mod:`megatron_prealign.alignment.build`) decides when the fallback applies and recases.

        Returns:
            List[str]: possibly empty.
        """
        found = self.entries.get(word)
        if found:
            return list(found)
        if case_fallback and word.lower() != word:
            return list(self.entries.get(word.lower(), []))
        return []

    def __len__(self) -> int:
        return len(self.entries)


def parse_dictionary_spec(spec: str) -> Tuple[str, str]:
    """``"de:path/en-de.txt"`` -> ``("de", "path/en-de.txt")``.

    Raises:
        ValueError: no ``LANG:`` prefix (names the flag value).
    """
    lang, sep, path = spec.partition(":")
    if not sep or not lang or not path or "/" in lang:
        raise ValueError(f"--dictionary {spec!r}: expected LANG:PATH, e.g. de:dicts/en-de.txt")
    return lang, path


_MAGIC = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz")


def _open_binary(path: str) -> io.BufferedIOBase:
    """Open ``path`` for reading bytes, decompressing gzip/bzip2/xz by their magic bytes."""
    with open(path, "rb") as f:
        head = f.read(6)
    for magic, opener in _MAGIC:
        if head.startswith(magic):
            return opener(path, "rb")
    return open(path, "rb")


def _is_header(fields: List[str], language: str) -> bool:
    a, b = fields[0].strip().lower(), fields[1].strip().lower()
    return a in _HEADER_SRC and (b in _HEADER_TGT or b == language.lower())


def read_dictionary(
    path: str, language: str, fmt: str = "auto", strict: bool = False
) -> BilingualDictionary:
    """Read one dictionary file.

    Args:
        path (str): the file (UTF-8).
        language (str): target language code it translates into.
        fmt (str): one of :data:`DICTIONARY_FORMATS`.
        strict (bool): raise on the first malformed line instead of counting it.

    Returns:
        BilingualDictionary: the entries and their statistics.

    Raises:
        FileNotFoundError: no such file (names the ``--dictionary`` flag).
        ValueError: unknown format; a malformed line with ``strict`` (``file:line: reason``).
    """
    if fmt not in DICTIONARY_FORMATS:
        raise ValueError(f"--dictionary-format {fmt!r}: not one of {', '.join(DICTIONARY_FORMATS)}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--dictionary {language}:{path}: no such file")
    if fmt == "auto":
        name = path
        while name.endswith(_COMPRESSED_SUFFIXES):
            name = name.rsplit(".", 1)[0]
        fmt = (
            "prealign-jsonl" if name.endswith((".jsonl", ".json"))
            else "tsv" if name.endswith(".tsv") else "muse"
        )
    stats = DictionaryStats(path=path, language=language, format=fmt)
    entries: Dict[str, List[str]] = {}

    def bad(lineno: int, reason: str) -> None:
        msg = f"{path}:{lineno}: {reason}"
        if strict:
            raise ValueError(f"malformed dictionary line: {msg}")
        stats.malformed += 1
        if len(stats.malformed_examples) < MAX_EXAMPLES:
            stats.malformed_examples.append(msg)

    def add(src: str, tgts: List[str]) -> None:
        bucket = entries.setdefault(src, [])
        for t in tgts:
            if t in bucket:
                stats.duplicates += 1
            else:
                bucket.append(t)
                stats.pairs += 1

    first_content = True
    with _open_binary(path) as f:
        for lineno, raw_bytes in enumerate(_lines(f, path), 1):
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as e:  # a Latin-1 file: name the file and line
                stats.lines += 1
                bad(lineno, f"invalid UTF-8 ({e.reason} at byte {e.start}); dictionaries must be UTF-8")
                continue
            line = raw.rstrip("\r\n")
            if lineno == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            stats.lines += 1
            if fmt == "prealign-jsonl":
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    bad(lineno, f"invalid JSON ({e.msg})")
                    continue
                if not isinstance(obj, dict):
                    bad(lineno, "expected a JSON object")
                    continue
                if isinstance(obj.get("words"), str):
                    items = [w.strip() for w in obj["words"].split("$")]
                    src, tgts = items[0], [t for t in items[1:] if t]
                    if not src or not tgts:
                        bad(lineno, "'words' needs 'source $ translation [$ translation ...]'")
                        continue
                    add(src, tgts)
                elif "src_text" in obj and "tgt_text" in obj:
                    src = obj["src_text"].strip() if isinstance(obj["src_text"], str) else ""
                    tgt = obj["tgt_text"]
                    tgts = [tgt] if isinstance(tgt, str) else tgt if isinstance(tgt, list) else []
                    tgts = [t.strip() for t in tgts if isinstance(t, str) and t.strip()]
                    if not src or not tgts:
                        bad(lineno, "empty or non-string 'src_text'/'tgt_text'")
                        continue
                    add(src, tgts)
                else:
                    bad(lineno, "expected key 'words' or keys 'src_text' and 'tgt_text'")
                continue
            # line-based: MUSE (whitespace) or TSV (tab)
            if "\t" in line:
                fields = [x.strip() for x in line.split("\t")]
                if len(fields) < 2 or not fields[0] or not fields[1]:
                    bad(lineno, f"expected 'source<TAB>translation', got {line[:60]!r}")
                    continue
            elif fmt == "tsv":
                bad(lineno, f"no tab in {line[:60]!r}")
                continue
            else:
                fields = line.split()
                if len(fields) != 2:
                    bad(lineno, f"expected 'source translation' (2 fields), got {len(fields)}: {line[:60]!r}")
                    continue
            if first_content and _is_header(fields, language):
                stats.header_skipped = True
            else:
                add(fields[0], [fields[1]])
            first_content = False
    if not entries:
        example = f"; e.g. {stats.malformed_examples[0]}" if stats.malformed_examples else ""
        raise ValueError(
            f"--dictionary {language}:{path}: no usable {fmt} line ({stats.lines} non-empty lines, "
            f"{stats.malformed} malformed{example})"
        )
    return BilingualDictionary(language=language, entries=entries, stats=stats)


def _lines(f: io.BufferedIOBase, path: str):
    """Lines of a (decompressed) file; a corrupt compressed stream is a one-line error."""
    try:
        yield from f
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise ValueError(f"--dictionary {path}: cannot decompress ({e})") from None
