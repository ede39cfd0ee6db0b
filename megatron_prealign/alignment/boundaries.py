"""Token-level word boundaries that agree with the table's word tokenizer (NLTK).

The alignment table counts words with NLTK's ``NLTKWordTokenizer`` (see
:mod:`megatron_prealign.alignment.words`); the codeswitcher works on token ids. For a
substitution to replace exactly a word as NLTK finds it in that text, the token-level pass
needs two per-token facts, computed here once per tokenizer from each token's surface text:

Opener (``opener[t]``): a bare (not space-prefixed) word may begin right after token ``t``.
    True when ``t``'s text ends in whitespace (``\\n``, ``\\t``), or in a character NLTK always
    splits off before a word: brackets ``([{<``, ``"``, curly/guillemet opening quotes,
    back-ticks, ``;@#$%&*?!``, ``,`` and ``:`` (split before a non-digit), en/em dashes, ``--``,
    ``..``; or ``t`` is `` '`` (a quote after a space: NLTK splits a leading ``'`` off a word).
    Not an opener: ``-`` (``well-known`` is one NLTK word), ``.`` (``e.g.``, ``U.S.``), ``/``,
    ``'`` after a letter (``O'Brien``), letters and digits. Special tokens (EOD) are openers:
    a document start is a word start.

Follow class (``follow[t]``): whether token ``t`` directly after a matched word ends that word.
    ``FOLLOW_YES``: ``t`` starts with whitespace or with a character NLTK always splits off
    after a word (closing brackets and quotes, ``"``, ``;@#$%&*?!``, dashes, ``..``, ``--``), or is
    a period/comma/colon/closing quote whose own text continues with such a character
    (``."``, ``.)``, ``.\\n``); special tokens. ``FOLLOW_IF_SPACE``: ``.`` alone (NLTK keeps
    ``e.g.``, ``U.S.``, ``J.P.`` whole; a sentence-final ``word.`` is ``word`` after
    :func:`~megatron_prealign.alignment.words.words_of` strips the period), a closing ``'``
    alone and the clitics NLTK makes words of their own (``'s 'm 'd 'll 're 've``): a boundary
    iff the next token starts with whitespace or a split character, or the document ends.
    ``FOLLOW_IF_NOT_DIGIT``: ``,`` or ``:`` alone (NLTK keeps ``a,1`` / ``a:1`` whole): a
    boundary unless the next token starts with a digit. ``FOLLOW_NO``: everything else, in
    particular ``'t`` / ``n't`` (``can't`` is ``ca`` + ``n't``: ``can`` is not a word there),
    ``-``, ``/``, letters and digits.

Leading class (``lead[t]``): what token ``t`` starts with, for the two-token rules above:
``LEAD_SPACE`` (whitespace; special tokens), ``LEAD_SPLIT`` (a split character, ``,``/``:``),
``LEAD_DIGIT``, ``LEAD_OTHER``.

Token-level rules are conservative where NLTK depends on more context (they never accept a
match NLTK would not make a word; they may skip one, e.g. ``can`` in ``cannot`` when a
tokenizer splits it): ``tests/test_codeswitch_words.py`` checks every substitution against NLTK
on real-ish text with a real byte-level BPE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List

import numpy as np

__all__ = [
    "FOLLOW_NO",
    "FOLLOW_YES",
    "FOLLOW_IF_SPACE",
    "FOLLOW_IF_NOT_DIGIT",
    "LEAD_SPACE",
    "LEAD_SPLIT",
    "LEAD_DIGIT",
    "LEAD_OTHER",
    "WordBoundaries",
    "token_surfaces",
    "word_boundaries",
    "boundaries_from_surfaces",
    "CLITIC_WORDS",
]

FOLLOW_NO, FOLLOW_YES, FOLLOW_IF_SPACE, FOLLOW_IF_NOT_DIGIT = 0, 1, 2, 3
LEAD_SPACE, LEAD_SPLIT, LEAD_DIGIT, LEAD_OTHER = 0, 1, 2, 3

# Characters NLTK's word tokenizer always separates from an adjacent word.
_SPLIT_CHARS = frozenset('"()[]{}<>;@#$%&*?!«»“”‘’„`') | frozenset(chr(c) for c in range(0x2012, 0x2016))
_CLITICS = frozenset({"'s", "'S", "'m", "'M", "'d", "'D", "'ll", "'LL", "'re", "'RE", "'ve", "'VE"})
#: Words NLTK never splits off after a leading ``'`` (``'s``, ``'t``...): no bare-form entries.
CLITIC_WORDS = frozenset({"re", "ve", "ll", "m", "t", "s", "d", "n"})


@dataclass
class WordBoundaries:
    """Per-token boundary facts of one tokenizer (see the module docstring)."""

    opener: np.ndarray
    """uint8 per id: 1 when a bare word may begin right after this token."""

    follow: np.ndarray
    """uint8 per id: ``FOLLOW_*`` class of this token directly after a matched word."""

    lead: np.ndarray
    """uint8 per id: ``LEAD_*`` class of the token's first character."""

    def __post_init__(self) -> None:
        n = self.opener.size
        if self.follow.size != n or self.lead.size != n:
            raise ValueError("word boundaries: opener, follow and lead must have one entry per token id")
        self.opener = np.ascontiguousarray(self.opener, dtype=np.uint8)
        self.follow = np.ascontiguousarray(self.follow, dtype=np.uint8)
        self.lead = np.ascontiguousarray(self.lead, dtype=np.uint8)

    @property
    def vocab_size(self) -> int:
        """Number of token ids covered."""
        return int(self.opener.size)

    @classmethod
    def permissive(cls, vocab_size: int) -> "WordBoundaries":
        """Every token ends a word and none opens one: the id-level segmentation alone (for
        synthetic vocabularies without surface text)."""
        return cls(
            np.zeros(vocab_size, np.uint8), np.full(vocab_size, FOLLOW_YES, np.uint8),
            np.full(vocab_size, LEAD_SPACE, np.uint8),
        )


def _opener(s: str) -> bool:
    if not s:
        return False
    last = s[-1]
    if last.isspace() or last in _SPLIT_CHARS or last in ",:":
        return True
    if s.endswith(("..", "--")):
        return True
    return s.strip() == "'" and s[0].isspace()


def _follow(s: str) -> int:
    if not s:
        return FOLLOW_NO
    c = s[0]
    if c.isspace() or c in _SPLIT_CHARS or s.startswith(("..", "--")):
        return FOLLOW_YES
    if c not in ".,:'":
        return FOLLOW_NO
    rest = s[1:]
    if c == "'" and s in _CLITICS:
        return FOLLOW_IF_SPACE
    if c == "'" and rest[:1].isalnum():
        return FOLLOW_NO  # 't, 'n, 'Brien ... (a clitic merged with what follows, 's\n, too)
    if not rest:
        return FOLLOW_IF_NOT_DIGIT if c in ",:" else FOLLOW_IF_SPACE
    r = rest[0]
    if r.isspace() or r in _SPLIT_CHARS or (c in ",:" and not r.isdigit() and r not in ".,:'"):
        return FOLLOW_YES
    return FOLLOW_NO


def _lead(s: str) -> int:
    if not s or s[0].isspace():
        return LEAD_SPACE
    c = s[0]
    if c in _SPLIT_CHARS or c in ",:" or s.startswith(("..", "--")):
        return LEAD_SPLIT
    if c.isdigit():
        return LEAD_DIGIT
    return LEAD_OTHER


def boundaries_from_surfaces(surfaces: List[str], special_ids: Any = ()) -> WordBoundaries:
    """Boundary facts from each token's surface text (index = token id).

    Args:
        surfaces (List[str]): the text each token id stands for, a leading space included
            (``" the"`` for GPT-2's ``Ġthe``, SentencePiece's ``▁the``).
        special_ids: ids of special tokens (EOD, pad): openers, ``FOLLOW_YES``, ``LEAD_SPACE``.

    Returns:
        WordBoundaries: the per-id arrays.
    """
    n = len(surfaces)
    opener = np.fromiter((_opener(s) for s in surfaces), dtype=np.uint8, count=n)
    follow = np.fromiter((_follow(s) for s in surfaces), dtype=np.uint8, count=n)
    lead = np.fromiter((_lead(s) for s in surfaces), dtype=np.uint8, count=n)
    for s in special_ids:
        s = int(s)
        if 0 <= s < n:
            opener[s], follow[s], lead[s] = 1, FOLLOW_YES, LEAD_SPACE
    return WordBoundaries(opener, follow, lead)


def token_surfaces(tokenizer: Any) -> List[str]:
    """The surface text of every token id of a ``PreAlignTokenizer`` (leading space included).

    Byte-level BPE tokens (GPT-2 and HuggingFace ``ByteLevel``) are mapped back to bytes and
    decoded (an incomplete UTF-8 character decodes to U+FFFD, which is neither a split
    character nor whitespace); SentencePiece/metaspace pieces have ``▁`` replaced by a space and
    ``<0xNN>`` byte pieces decoded. An En-Clone tokenizer's clone ids have their base's text.
    """
    from megatron_prealign.tokenizer.base import unicode_to_bytes

    base = getattr(tokenizer, "base", None)
    if base is not None and hasattr(tokenizer, "clone_ids"):
        inner = token_surfaces(base)
        return inner + inner[: tokenizer.vocab_size - len(inner)]
    table = unicode_to_bytes()
    byte_level = type(tokenizer).__name__ == "GPT2BPETokenizer" or bool(getattr(tokenizer, "_byte_level", False))
    out: List[str] = []
    for i in range(tokenizer.vocab_size):
        try:
            piece = tokenizer.id_to_token(i) or ""
        except Exception:  # noqa: BLE001 - an unused id: no text, never a boundary
            piece = ""
        if byte_level:
            try:
                out.append(bytes(table[c] for c in piece).decode("utf-8", errors="replace"))
                continue
            except KeyError:
                pass  # an added token (<|endoftext|>): its text as written
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            try:
                out.append(bytes([int(piece[3:5], 16)]).decode("utf-8", errors="replace"))
                continue
            except ValueError:
                pass
        out.append(piece.replace("\u2581", " "))
    return out


def word_boundaries(tokenizer: Any) -> WordBoundaries:
    """:func:`boundaries_from_surfaces` for a ``PreAlignTokenizer`` (its special ids included).

    The ``NullTokenizer`` (ids written as numbers, every token a word) has no surface text:
    :meth:`WordBoundaries.permissive`.
    """
    if type(tokenizer).__name__ == "NullTokenizer":
        return WordBoundaries.permissive(tokenizer.vocab_size)
    return boundaries_from_surfaces(token_surfaces(tokenizer), getattr(tokenizer, "special_ids", ()))
