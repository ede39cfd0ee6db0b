"""Mixed-script ratio (paper Table 4): how often continuations of English prompts switch language.

The model continues English prompts (greedy by default, or sampled); a generation is *mixed*
when it contains at least one target-language token:

* ``en_clone``: any generated id is an En-Clone id (``>= V``, the base vocabulary size).
* ``zh`` / ``ru`` / ``ar``: the decoded continuation contains a character of the language's
  script — Han (CJK ideographs), Cyrillic, Arabic (Unicode blocks listed in :data:`SCRIPT_RANGES`).
* ``de``: German shares the Latin script with English, so script detection cannot see it. We
  count a generation as German when its decoded text contains a German-specific letter
  (``ä ö ü ß`` and capitals) **or** one of the alignment table's German translations that is
  not also an English table word (whole-word match, case-sensitive), when a table is given.
  This is a lower bound (German words without umlauts outside the table are missed); the JSON
  records the method used.

The ratio is the share of generations (not tokens) that are mixed, in percent.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

SCRIPT_RANGES: Dict[str, Tuple[Tuple[int, int], ...]] = {
    "zh": ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF)),
    "ru": ((0x0400, 0x04FF), (0x0500, 0x052F)),
    "ar": ((0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
}
"""Unicode code-point ranges per script-detected language (Han, Cyrillic, Arabic)."""

GERMAN_LETTERS = frozenset("äöüßÄÖÜẞ")
"""Letters that mark German text among Latin-script languages."""

_WORD_RE = re.compile(r"\w+", re.UNICODE)


def contains_script(text: str, language: str) -> bool:
    """Whether ``text`` holds a character of ``language``'s script (zh, ru, ar).

    Raises:
        ValueError: a language without a distinct script.
    """
    ranges = SCRIPT_RANGES.get(language)
    if ranges is None:
        raise ValueError(f"no script detection for language {language!r} (have: {', '.join(SCRIPT_RANGES)})")
    return any(lo <= ord(ch) <= hi for ch in text for lo, hi in ranges)


def contains_german(text: str, german_words: Optional[Set[str]] = None) -> bool:
    """German-specific letters, or a whole word from ``german_words`` (see module docstring)."""
    if any(ch in GERMAN_LETTERS for ch in text):
        return True
    return bool(german_words) and any(w in german_words for w in _WORD_RE.findall(text))


def german_only_words(table) -> Set[str]:
    """German translations of an alignment table that are not also English table words."""
    english = {e.word for e in table.entries}
    return {t.text for e in table.entries for t in (e.translations or {}).get("de", ())
            if t.text not in english}


@dataclass
class MixedScriptResult:
    """Mixed-script ratio for one target language."""

    language: str
    """Target language."""
    generations: int
    """Generations checked."""
    mixed: int
    """Generations containing target-language tokens."""
    ratio: float
    """``100 * mixed / generations``."""
    method: str
    """How target-language tokens were detected."""
    examples: List[str]
    """Up to 5 mixed generations (decoded), for inspection."""


def mixed_script_ratio(
    generations: Sequence[Sequence[int]],
    language: str,
    detokenize=None,
    base_vocab_size: Optional[int] = None,
    german_words: Optional[Set[str]] = None,
) -> MixedScriptResult:
    """Share of ``generations`` (token ids, prompt excluded) containing ``language`` tokens.

    Args:
        generations: generated ids per prompt.
        language: ``en_clone``, ``zh``, ``ru``, ``ar`` or ``de``.
        detokenize: ids -> text (needed for real languages).
        base_vocab_size: V of an En-Clone tokenizer (needed for ``en_clone``).
        german_words: German-only words for ``de`` (optional).
    """
    language = "en_clone" if language == "en-clone" else language
    mixed, examples = 0, []
    if language == "en_clone":
        if base_vocab_size is None:
            raise ValueError("en_clone needs the base vocabulary size (an En-Clone tokenizer)")
        method = f"any generated id >= {base_vocab_size} (En-Clone)"
        is_mixed = lambda ids: any(int(t) >= base_vocab_size for t in ids)  # noqa: E731
    else:
        if detokenize is None:
            raise ValueError(f"{language}: detection needs a detokenize function")
        if language == "de":
            method = "German letters (äöüß)" + (" or German-only alignment-table words" if german_words else "")
            is_mixed = lambda ids: contains_german(detokenize(ids), german_words)  # noqa: E731
        else:
            contains_script("", language)  # validates the language
            method = f"Unicode script of {language}"
            is_mixed = lambda ids: contains_script(detokenize(ids), language)  # noqa: E731
    for g in generations:
        if is_mixed(list(g)):
            mixed += 1
            if len(examples) < 5 and detokenize is not None:
                examples.append(detokenize(list(g)))  # (decoded again: at most 5 times)
    n = len(generations)
    return MixedScriptResult(language, n, mixed, 100.0 * mixed / n if n else float("nan"), method, examples)


def read_prompts(path: str) -> List[str]:
    """Prompts from a text file (one per line) or JSONL (``text`` or ``prompt`` field)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    out = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if path.endswith(".jsonl"):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
                text = row.get("text", row.get("prompt")) if isinstance(row, dict) else None
                if not isinstance(text, str) or not text.strip():
                    raise ValueError(f"{path}:{lineno}: expected a non-empty 'text' or 'prompt' field")
                out.append(text)
            else:
                out.append(line)
    return out
