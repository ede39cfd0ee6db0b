"""An independent checker of codeswitched documents, at the text level (tests only).

It does not use the codeswitcher's token-level word rules: it detokenizes, re-runs NLTK on the
original text and checks that every substitution replaced exactly one NLTK word (as
``words_of`` counts it) by one of that word's dictionary translations in the table, and that
everything else is unchanged and unmasked.
"""

from __future__ import annotations

import sys
from typing import Dict, List, Optional, Sequence, Set, Tuple

from nltk.tokenize import NLTKWordTokenizer


def word_spans(text: str) -> Set[Tuple[int, int]]:
    """Character spans of the words NLTK finds (with ``words_of``'s period stripping)."""
    spans = set()
    tokens = NLTKWordTokenizer().tokenize(text)
    try:
        offsets = list(NLTKWordTokenizer().span_tokenize(text))
    except (ValueError, LookupError):  # NLTK cannot align some quote forms: none for this text
        return spans
    for tok, (a, b) in zip(tokens, offsets):
        if len(tok) > 1 and tok.endswith(".") and "." not in tok[:-1]:
            b -= 1
        spans.add((a, b))
    return spans


def check_document(
    original: Sequence[int],
    output: Sequence[int],
    mask: Sequence[int],
    detok,
    translations: Dict[str, Set[str]],
    failures: Optional[List[str]] = None,
) -> List[Tuple[str, str]]:
    """Check one input-only codeswitched document; returns the ``(word, translation)`` pairs.

    With a ``failures`` list, substitutions that are not whole NLTK words are appended to it (as
    ``"word in context"``) instead of raising (for measuring an old version).

    Raises:
        AssertionError: a substitution that is not a whole NLTK word of the original text, or
            not one of that word's translations, or a changed/masked token elsewhere.
    """
    original, output, mask = list(original), list(output), list(mask)
    assert len(output) == len(mask)
    text = detok(original)
    spans = word_spans(text)
    sys.setrecursionlimit(max(10000, 4 * len(output) + 100))
    found: List[Tuple[int, int, str, str]] = []

    def align(i: int, p: int) -> bool:
        while i < len(output) and mask[i] == 1:
            if p >= len(original) or output[i] != original[p]:
                return False
            i += 1
            p += 1
        if i == len(output):
            return p == len(original)
        run_end = i
        while run_end < len(output) and mask[run_end] == 0:
            run_end += 1
        for length in range(1, run_end - i + 1):
            tr = detok(output[i : i + length]).strip()
            for k in range(1, 9):
                if p + k > len(original):
                    break
                word = detok(original[p : p + k]).strip()
                if tr in translations.get(word, ()):
                    found.append((p, p + k, word, tr))
                    if align(i + length, p + k):
                        return True
                    found.pop()
        return False

    assert align(0, 0), f"output is not the original with table translations substituted: {detok(output)[:200]!r}"
    pairs = []
    for a, b, word, tr in found:
        start = len(detok(original[:a]))
        end = len(detok(original[:b]))
        while start < end and text[start].isspace():
            start += 1
        if (start, end) not in spans:
            msg = (
                f"substituted {text[start:end]!r} at {start} is not a whole NLTK word: "
                f"...{text[max(0, start - 20):end + 20]!r}..."
            )
            assert failures is not None, msg
            failures.append(msg)
            continue
        pairs.append((word, tr))
    return pairs


def table_translations(table) -> Dict[str, Set[str]]:
    """Source surface form (word and aliases) -> its translation texts (all languages)."""
    out: Dict[str, Set[str]] = {}
    for e in table:
        texts = {t.text.strip() for ts in e.translations.values() for t in ts}
        for w in [e.word] + list(e.aliases):
            out.setdefault(w, set()).update(texts)
    return out
