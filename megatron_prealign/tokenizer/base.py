"""The tokenizer interface every part of megatron-prealign relies on, and the word-start rule.

A *word* (for the codeswitcher and the pre-alignment word sampler) is a maximal run of tokens
that begins at a word-start token and extends up to, not including, the next word-start token.
``PreAlignTokenizer.word_start_mask()`` flags the word-start tokens. The rule (the same for every
tokenizer type):

1. special tokens (EOD, pad, BOS/EOS, added control tokens) start a word;
2. a token whose text begins with the tokenizer's space marker starts a word: GPT-2 byte-level
   ``Ġ`` (a space byte), any other whitespace byte (``Ċ`` newline, tab), SentencePiece ``▁``;
3. a token whose first *character* is neither a letter, a combining mark nor a digit (Unicode
   categories L*, M*, N*) starts a word: punctuation, symbols, quotes, apostrophes, newlines.
   So ``"bank,"`` = ``[Ġbank][,]`` and ``"bank's"`` = ``[Ġbank]['s]`` both contain the word
   ``bank``, matching how NLTK's word tokenizer (which builds the alignment table) splits them;
4. everything else continues the current word: word-internal letters and digits, UTF-8
   continuation bytes, a byte-level token whose first character is incomplete (it starts
   with a UTF-8 lead byte but the token does not hold the whole character), and a hyphen
   token (``-``, or ``-`` followed only by letters/digits such as ``-based``): NLTK keeps
   ``well-known`` / ``COVID-19`` as one word, and so does the codeswitcher, instead of
   replacing ``well`` inside ``well-known``.

Why rule 3/4 are conservative: a token wrongly flagged as a word start can make the codeswitcher
substitute a *prefix* of a longer word ("na" inside "naïve"), which corrupts text; a token wrongly
left unflagged only makes the enclosing word longer, so it fails to match the table and is left
alone. Hence a token is flagged only when its first character is known to be a non-letter.
Known consequences: ``"U.S."`` = ``[ĠU][.][S][.]`` yields the words ``U``, ``.S``, ``.``
(NLTK: ``U.S.``); a word right after a newline or an opening quote (``[Ċ][The]``) has no space
marker, so it is not in its word-initial form and is never matched. SentencePiece models that merge punctuation
into pieces (``▁bank,``) keep it inside the word (no pre-tokenizer splits it).
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections import OrderedDict
from functools import lru_cache
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

__all__ = [
    "PreAlignTokenizer",
    "bytes_to_unicode",
    "starts_word_bytes",
    "starts_word_text",
]


@lru_cache(maxsize=1)
def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE vocabularies.

    Returns:
        Dict[int, str]: byte value (0-255) -> the character standing for it in vocab.json.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    # the other bytes (controls, space, ...) stand for the characters from U+0100 on, in byte order
    others = [b for b in range(256) if b not in printable]
    chars = printable + [256 + n for n in range(len(others))]
    return {b: chr(c) for b, c in zip(printable + others, chars)}


@lru_cache(maxsize=1)
def unicode_to_bytes() -> Dict[str, int]:
    """Inverse of :func:`bytes_to_unicode`."""
    return {c: b for b, c in bytes_to_unicode().items()}


def _char_starts_word(ch: str) -> bool:
    """Rule 2/3 for one decoded character: whitespace or a non letter/mark/digit starts a word."""
    if ch.isspace():
        return True
    return unicodedata.category(ch)[0] not in ("L", "M", "N")


def _is_hyphen_continuation(text: str) -> bool:
    """Rule 4: ``-`` alone or followed only by letters/digits continues a word."""
    return text[:1] == "-" and all(not _char_starts_word(c) for c in text[1:])


def starts_word_bytes(data: bytes) -> bool:
    """Whether a token whose surface is the byte string ``data`` starts a word.

    Args:
        data (bytes): the bytes the token stands for (byte-level BPE, SentencePiece byte
            fallback).

    Returns:
        bool: True for a leading whitespace/punctuation/symbol character, False for a letter,
        mark or digit, a UTF-8 continuation byte or an incomplete leading character.
    """
    if not data:
        return True
    b0 = data[0]
    if b0 == 0x2D:  # hyphen
        try:
            return not _is_hyphen_continuation(data.decode("utf-8"))
        except UnicodeDecodeError:
            return True
    if b0 < 0x80:
        return _char_starts_word(chr(b0))
    if b0 < 0xC0:  # continuation byte: the middle of a character
        return False
    length = 2 if b0 < 0xE0 else 3 if b0 < 0xF0 else 4
    if len(data) < length:
        return False  # incomplete character: cannot tell, keep it in the current word
    try:
        ch = data[:length].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _char_starts_word(ch)


def starts_word_text(piece: str, space_marker: str = "\u2581") -> bool:
    """Whether a text-surface token (SentencePiece / WordPiece / metaspace) starts a word.

    Args:
        piece (str): the token's vocabulary string.
        space_marker (str): the character standing for a preceding space (``▁``).

    Returns:
        bool: see the module docstring.
    """
    if not piece or piece.startswith(space_marker):
        return True
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:  # SentencePiece byte-fallback piece
            return starts_word_bytes(bytes([int(piece[3:5], 16)]))
        except ValueError:
            pass
    if _is_hyphen_continuation(piece):
        return False
    return _char_starts_word(piece[0])


class PreAlignTokenizer:
    """Base class of the tokenizers: Megatron's legacy tokenizer surface plus word information.

    Duck-types megatron-core's tokenizer for ``GPTDatasetConfig.tokenizer`` (``vocab_size``,
    ``eod``, ``pad``, ``unique_identifiers`` for the dataset cache hash) without inheriting
    ``MegatronLegacyTokenizer`` (which logs a deprecation warning per instance) or importing
    megatron-core (4 s) — the tokenizers are also used by light CLI tools.

    Subclasses set ``_vocab_size``, ``_eod``, ``_pad``, ``_special_ids`` and implement
    :meth:`tokenize`, :meth:`detokenize`, :meth:`id_to_token`, :meth:`_token_starts_word` and
    :meth:`describe`.
    """

    #: Megatron ``--tokenizer-type`` name of the class.
    tokenizer_type: str = "PreAlignTokenizer"

    def __init__(self, *paths: Optional[str], **options: Any) -> None:
        self.unique_identifiers: "OrderedDict[str, Any]" = OrderedDict(
            [("class", type(self).__name__), ("tokenizer_path", [p for p in paths if p is not None])]
        )
        self.unique_identifiers.update((key, str(value)) for key, value in options.items())
        self.unique_description = json.dumps(self.unique_identifiers, indent=4)
        self._word_start_mask: Optional[np.ndarray] = None
        self._vocab_size: int = 0
        self._eod: int = 0
        self._pad: int = 0
        self._bos: Optional[int] = None
        self._special_ids: List[int] = []

    # ------------------------------------------------------------------ Megatron surface
    @property
    def vocab_size(self) -> int:
        """Number of token ids (the model's unpadded vocabulary)."""
        return self._vocab_size

    @property
    def eod(self) -> int:
        """End-of-document id (appended by preprocess_data's ``--append-eod``)."""
        return self._eod

    @property
    def eos(self) -> int:
        """Alias of :attr:`eod` (megatron-core's dataset checks ``eos`` too)."""
        return self._eod

    @property
    def pad(self) -> int:
        """Padding id: the tokenizer's pad token, or :attr:`eod` when it has none."""
        return self._pad

    @property
    def bos(self) -> Optional[int]:
        """Beginning-of-sequence id, or None."""
        return self._bos

    @property
    def special_ids(self) -> List[int]:
        """Ids of special/control tokens (EOD, pad, ...): never cloned, always word starts."""
        return list(self._special_ids)

    @property
    def vocab(self) -> Dict[str, int]:
        """Token string -> id."""
        return {self.id_to_token(i): i for i in range(self.vocab_size)}

    @property
    def inv_vocab(self) -> Dict[int, str]:
        """Id -> token string."""
        return {i: self.id_to_token(i) for i in range(self.vocab_size)}

    def tokenize(self, text: str) -> List[int]:
        """Text -> token ids (no BOS/EOD added)."""
        raise NotImplementedError

    def detokenize(self, ids: Iterable[int]) -> str:
        """Token ids -> text."""
        raise NotImplementedError

    def id_to_token(self, token_id: int) -> str:
        """The vocabulary string of one id."""
        raise NotImplementedError

    # ------------------------------------------------------------------ word information
    def _token_starts_word(self, token_id: int) -> bool:
        raise NotImplementedError

    def word_start_mask(self) -> np.ndarray:
        """Boolean array of shape ``(vocab_size,)``: True for tokens that open a word.

        See the module docstring for the rule. Computed once and cached (read-only).
        """
        if self._word_start_mask is None:
            flags = map(self._token_starts_word, range(self.vocab_size))
            mask = np.fromiter(flags, dtype=bool, count=self.vocab_size)
            mask[[i for i in self._special_ids if 0 <= i < self.vocab_size]] = True
            mask.setflags(write=False)
            self._word_start_mask = mask
        return self._word_start_mask

    #: Context word used by :meth:`encode_word` to obtain a word's in-text (word-initial) ids.
    _ENCODE_WORD_CONTEXT = "a"

    def encode_word(self, word: str) -> List[int]:
        """Token ids of ``word`` in its word-initial form, i.e. as it appears after a space.

        Computed in context: the ids of ``"a " + word`` minus the ids of ``"a"``, so tokenizers
        that normalise a leading space (SentencePiece's dummy prefix, Llama-style ``Prepend("▁")``
        normalizers) give exactly the ids the word has inside running text. Falls back to the
        ids of ``" " + word`` when the context does not split cleanly.

        Args:
            word (str): a word or short phrase (surrounding whitespace is stripped).

        Returns:
            List[int]: the ids; for space-marking tokenizers the first is a word-start token.

        Raises:
            ValueError: the word is empty after stripping.
        """
        word = word.strip()
        if not word:
            raise ValueError("encode_word: empty word")
        prefix = self.tokenize(self._ENCODE_WORD_CONTEXT)
        both = self.tokenize(self._ENCODE_WORD_CONTEXT + " " + word)
        if len(both) > len(prefix) and both[: len(prefix)] == prefix:
            return both[len(prefix):]
        return self.tokenize(" " + word)

    def describe(self) -> Dict[str, Any]:
        """JSON-serialisable identity: type, files (absolute paths + SHA-256), sizes, specials.

        Recorded in alignment tables and checkpoints; :func:`same_tokenizer` compares two.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, eod={self.eod})"


def same_tokenizer(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    """Whether two ``describe()`` dicts denote the same tokenizer (type, sizes, file hashes).

    Paths are ignored (files move between machines); hashes are compared when both have them.
    A wrapped tokenizer's ``base`` description (En-Clone) is compared the same way, so two
    En-Clone tokenizers over different base files of equal size are different.
    """
    if any(a.get(k) != b.get(k) for k in ("type", "vocab_size", "eod")):
        return False
    if not all(b.get(k, v) == v for k, v in a.items() if k.endswith("sha256")):
        return False
    base_a, base_b = a.get("base"), b.get("base")
    if isinstance(base_a, dict) and isinstance(base_b, dict):
        return same_tokenizer(base_a, base_b)
    return True


def check_file(path: Optional[str], flag: str) -> str:
    """Return ``path`` when it names an existing file, else raise a one-line error naming ``flag``.

    Raises:
        FileNotFoundError: ``"--vocab-file: no such file: /x/vocab.json"``.
    """
    if path is None:
        raise ValueError(f"{flag} is required for this --tokenizer-type")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{flag}: no such file: {path}")
    return path


def ids_list(ids: Sequence[int]) -> List[int]:
    """Plain Python ints from any integer sequence / array."""
    return [int(i) for i in ids]
