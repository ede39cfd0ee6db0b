"""Readers for NLI data in the formats users have on disk.

* **XNLI 1.0 TSV** (``xnli.dev.tsv`` / ``xnli.test.tsv``): tab-separated with the header
  ``language gold_label sentence1_binary_parse ... sentence1 sentence2 ... match``. Lines are
  split on tabs only — the files contain unbalanced quote characters, so no CSV quoting is
  applied (``csv`` would silently merge lines).
* **XNLI-MT TSV** (``multinli.train.{lang}.tsv``): header ``premise hypo label``, label
  ``contradictory`` meaning contradiction.
* **MultiNLI JSONL** (``multinli_1.0_train.jsonl``): ``sentence1``, ``sentence2``,
  ``gold_label``; ``gold_label == "-"`` (no annotator consensus) is skipped and counted.
* **HF-style JSONL**: ``premise``, ``hypothesis``, ``label`` with 0/1/2 =
  entailment/neutral/contradiction; ``-1`` (no gold label, as in HF SNLI) is skipped and counted.

Malformed rows (wrong field count, bad JSON, missing fields, empty text) are reported as
``file:line: reason``; with ``strict=True`` the first one raises. An unknown label always raises.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

LABELS: Tuple[str, str, str] = ("entailment", "neutral", "contradiction")
"""Label names in index order (the HF/XNLI convention)."""

_LABEL_ALIASES: Dict[str, int] = {"entailment": 0, "neutral": 1, "contradiction": 2, "contradictory": 2}

XNLI_TSV_COLUMNS: Tuple[str, ...] = (
    "language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse",
    "sentence2_parse", "sentence1", "sentence2", "promptID", "pairID", "genre", "label1", "label2",
    "label3", "label4", "label5", "sentence1_tokenized", "sentence2_tokenized", "match",
)
"""The XNLI 1.0 TSV header."""


class NLIFormatError(ValueError):
    """Bad NLI input; the message names ``file:line``."""


@dataclass
class NLIExample:
    """One premise/hypothesis pair."""

    premise: str
    """The premise (``sentence1``)."""
    hypothesis: str
    """The hypothesis (``sentence2``)."""
    label: int
    """0 entailment, 1 neutral, 2 contradiction."""
    language: Optional[str] = None
    """Language code when the file records it (XNLI), else the reader's ``language`` argument."""
    where: str = ""
    """``file:line`` it came from."""


@dataclass
class ReadStats:
    """What a reader skipped."""

    path: str
    """The file read."""
    examples: int = 0
    """Examples returned."""
    no_consensus: int = 0
    """Rows skipped because they have no gold label (``-`` / ``-1``)."""
    other_language: int = 0
    """XNLI rows skipped because their language was not requested."""
    malformed: List[str] = field(default_factory=list)
    """``file:line: reason`` for every malformed row skipped."""

    def to_dict(self) -> dict:
        """JSON form (malformed rows are capped at 20 examples)."""
        return {
            "path": self.path,
            "examples": self.examples,
            "no_consensus": self.no_consensus,
            "other_language": self.other_language,
            "malformed": len(self.malformed),
            "malformed_examples": self.malformed[:20],
        }


def parse_label(value: object, where: str) -> Optional[int]:
    """Map a label (name or 0/1/2) to its index; ``None`` for no-consensus (``-``, ``-1``).

    Raises:
        NLIFormatError: an unknown label.
    """
    if isinstance(value, bool):
        raise NLIFormatError(f"{where}: unknown label {value!r}")
    if isinstance(value, int):
        if value == -1:
            return None
        if value in (0, 1, 2):
            return value
        raise NLIFormatError(f"{where}: unknown label {value!r} (expected 0/1/2)")
    if isinstance(value, str):
        v = value.strip()
        if v in ("-", "-1"):
            return None
        if v in ("0", "1", "2"):
            return int(v)
        if v.lower() in _LABEL_ALIASES:
            return _LABEL_ALIASES[v.lower()]
    raise NLIFormatError(f"{where}: unknown label {value!r} (expected one of {', '.join(LABELS)})")


def _malformed(stats: ReadStats, strict: bool, where: str, reason: str) -> None:
    msg = f"{where}: {reason}"
    if strict:
        raise NLIFormatError(msg)
    stats.malformed.append(msg)


def _read_tsv(path: str, language: Optional[str], strict: bool) -> Tuple[List[NLIExample], ReadStats]:
    stats = ReadStats(path=path)
    out: List[NLIExample] = []
    with open(path, encoding="utf-8", newline="") as fh:
        header_line = fh.readline()
        header = header_line.rstrip("\r\n").split("\t")
        if "sentence1" in header and "sentence2" in header and "gold_label" in header:
            p_col, h_col, l_col = header.index("sentence1"), header.index("sentence2"), header.index("gold_label")
            lang_col = header.index("language") if "language" in header else None
        elif header[:3] == ["premise", "hypo", "label"]:
            p_col, h_col, l_col, lang_col = 0, 1, 2, None
        else:
            raise NLIFormatError(
                f"{path}:1: unrecognised TSV header (expected XNLI 1.0 'language gold_label ... sentence1 sentence2 ...' "
                f"or XNLI-MT 'premise hypo label'), found {header_line.strip()[:80]!r}"
            )
        n_cols = len(header)
        for lineno, line in enumerate(fh, start=2):
            line = line.rstrip("\r\n")
            where = f"{path}:{lineno}"
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != n_cols:
                _malformed(stats, strict, where, f"expected {n_cols} tab-separated fields, found {len(fields)}")
                continue
            lang = fields[lang_col].strip() if lang_col is not None else language
            if language is not None and lang_col is not None and lang != language:
                stats.other_language += 1
                continue
            label = parse_label(fields[l_col], where)
            if label is None:
                stats.no_consensus += 1
                continue
            premise, hyp = fields[p_col].strip(), fields[h_col].strip()
            if not premise or not hyp:
                _malformed(stats, strict, where, "empty premise or hypothesis")
                continue
            out.append(NLIExample(premise, hyp, label, lang, where))
    stats.examples = len(out)
    return out, stats


def _read_jsonl(path: str, language: Optional[str], strict: bool) -> Tuple[List[NLIExample], ReadStats]:
    stats = ReadStats(path=path)
    out: List[NLIExample] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                _malformed(stats, strict, where, f"invalid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                _malformed(stats, strict, where, "expected a JSON object")
                continue
            if "sentence1" in row or "gold_label" in row:  # MultiNLI
                keys = ("sentence1", "sentence2", "gold_label")
            elif "premise" in row:  # HF style
                keys = ("premise", "hypothesis", "label")
            else:
                _malformed(stats, strict, where, "neither MultiNLI (sentence1, sentence2, gold_label) nor HF (premise, hypothesis, label) fields")
                continue
            missing = [k for k in keys if k not in row]
            if missing:
                _malformed(stats, strict, where, f"missing field(s) {', '.join(missing)}")
                continue
            label = parse_label(row[keys[2]], where)
            if label is None:
                stats.no_consensus += 1
                continue
            premise, hyp = row[keys[0]], row[keys[1]]
            if not isinstance(premise, str) or not isinstance(hyp, str) or not premise.strip() or not hyp.strip():
                _malformed(stats, strict, where, "empty or non-string premise/hypothesis")
                continue
            lang = row.get("language", language)
            if language is not None and "language" in row and row["language"] != language:
                stats.other_language += 1
                continue
            out.append(NLIExample(premise.strip(), hyp.strip(), label, lang, where))
    stats.examples = len(out)
    return out, stats


def read_nli(path: str, language: Optional[str] = None, strict: bool = False) -> Tuple[List[NLIExample], ReadStats]:
    """Read an NLI file, choosing the reader by extension (``.tsv`` or ``.jsonl``/``.json``).

    Args:
        path: the file.
        language: for XNLI TSVs, keep only this language (``None``: all); for other formats the
            language recorded on each example.
        strict: raise on the first malformed row instead of skipping it.

    Returns:
        ``(examples, stats)``.

    Raises:
        NLIFormatError: unreadable header, unknown label, or (strict) a malformed row.
        FileNotFoundError: ``path`` does not exist (one-line message).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    lower = path.lower()
    if lower.endswith((".tsv", ".txt")):
        return _read_tsv(path, language, strict)
    if lower.endswith((".jsonl", ".json")):
        return _read_jsonl(path, language, strict)
    raise NLIFormatError(f"{path}: unknown NLI file type (expected .tsv or .jsonl)")
