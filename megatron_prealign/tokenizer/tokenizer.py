"""Megatron's tokenizer types, loaded from local files, with word-start information.

``build_tokenizer(tokenizer_type, ...)`` takes Megatron-LM's ``--tokenizer-type`` names:

* ``GPT2BPETokenizer`` (``--vocab-file vocab.json --merge-file merges.txt``): GPT-2 byte-level
  BPE through the ``tokenizers`` library (GPT-2's pre-tokenization regex and merge ranks; ids
  identical to Megatron's ``_GPT2BPETokenizer``). EOD is ``<|endoftext|>``, which is encoded
  literally when it occurs inside text, as Megatron does.
* ``HuggingFaceTokenizer`` (``--tokenizer-model``): a ``tokenizer.json`` file or a directory
  holding one (and optionally ``tokenizer_config.json`` naming ``eos_token``/``pad_token``).
  Nothing is downloaded.
* ``SentencePieceTokenizer`` (``--tokenizer-model x.model``): Megatron's flavour: appends
  ``<CLS> <SEP> <EOD> <MASK>`` (and ``<PAD> <BOS> <EOS>`` when the model lacks them) to the
  vocabulary; EOD is ``<EOD>``; special-token strings in text are encoded as those tokens.
* ``GPTSentencePieceTokenizer`` (``--tokenizer-model x.model``): the model's own vocabulary;
  EOD is the model's EOS.
* ``NullTokenizer`` (``--vocab-size N``): text is space-separated ids; EOD is ``N``; vocabulary
  ``N + 1``; every token is a word.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from typing import Any, Dict, Iterable, List, Optional

from megatron_prealign.platform.files import file_sha256
from megatron_prealign.tokenizer.base import (
    PreAlignTokenizer,
    check_file,
    ids_list,
    starts_word_bytes,
    starts_word_text,
    unicode_to_bytes,
)

__all__ = [
    "TOKENIZER_TYPES",
    "build_tokenizer",
    "GPT2BPETokenizer",
    "HuggingFaceTokenizer",
    "SentencePieceTokenizer",
    "GPTSentencePieceTokenizer",
    "NullTokenizer",
]

#: End-of-document strings tried, in order, when a HuggingFace tokenizer names no eos_token.
HF_EOD_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<EOD>", "[SEP]")
#: Pad strings tried when a HuggingFace tokenizer names no pad_token (else pad = eod).
HF_PAD_CANDIDATES = ("<|pad|>", "<pad>", "[PAD]", "<PAD>")


def _byte_level_starts_word(token: str) -> bool:
    table = unicode_to_bytes()
    try:
        data = bytes(table[c] for c in token)
    except KeyError:  # not a byte-level string (an added token): judge by its text
        return starts_word_text(token)
    return starts_word_bytes(data)


def _describe_with_files(tok: PreAlignTokenizer, **files: str) -> Dict[str, Any]:
    """``describe()`` of a file-based tokenizer: type, the files, their SHA-256, sizes, specials
    (keys in this order: the dict is written into tables and checkpoints)."""
    out: Dict[str, Any] = {"type": tok.tokenizer_type, **files}
    out.update({f"{name}_sha256": file_sha256(path) for name, path in files.items()})
    out.update(vocab_size=tok.vocab_size, eod=tok.eod, pad=tok.pad)
    return out


class _TokenizersLibraryTokenizer(PreAlignTokenizer):
    """Encoding and decoding through a ``tokenizers.Tokenizer`` held in ``self._tok``."""

    _tok: Any

    def tokenize(self, text: str) -> List[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def tokenize_batch(self, texts: List[str]) -> List[List[int]]:
        """Tokenize many texts at once (multi-threaded inside ``tokenizers``)."""
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def detokenize(self, ids: Iterable[int]) -> str:
        return self._tok.decode(ids_list(ids), skip_special_tokens=False)


class GPT2BPETokenizer(_TokenizersLibraryTokenizer):
    """GPT-2 byte-level BPE from ``vocab.json`` + ``merges.txt`` (Megatron's GPT2BPETokenizer).

    Args:
        vocab_file (str): GPT-2 ``vocab.json`` (``encoder.json``): token string -> id.
        merge_file (str): GPT-2 ``merges.txt`` (``vocab.bpe``), one merge per line.
    """

    tokenizer_type = "GPT2BPETokenizer"

    def __init__(self, vocab_file: str, merge_file: str) -> None:
        check_file(vocab_file, "--vocab-file")
        check_file(merge_file, "--merge-file")
        super().__init__(vocab_file, merge_file)
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        self.vocab_file = os.path.abspath(vocab_file)
        self.merge_file = os.path.abspath(merge_file)
        try:
            with open(vocab_file, encoding="utf-8") as f:
                encoder = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"--vocab-file {vocab_file}: not a GPT-2 vocab.json ({e})") from None
        if "<|endoftext|>" not in encoder:
            raise ValueError(f"--vocab-file {vocab_file}: has no <|endoftext|> token")
        try:
            model = models.BPE.from_file(vocab_file, merge_file)
        except Exception as e:  # tokenizers raises a bare Exception on bad files
            raise ValueError(
                f"--merge-file {merge_file}: cannot load with --vocab-file {vocab_file} ({e})"
            ) from None
        self._tok = Tokenizer(model)
        self._tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        self._tok.decoder = decoders.ByteLevel()
        self._id_to_token = {int(i): t for t, i in encoder.items()}
        self._vocab_size = len(encoder)
        self._eod = int(encoder["<|endoftext|>"])
        self._pad = int(encoder.get("<|pad|>", self._eod))
        self._special_ids = sorted({self._eod, self._pad})

    def id_to_token(self, token_id: int) -> str:
        return self._id_to_token[int(token_id)]

    def _token_starts_word(self, token_id: int) -> bool:
        return _byte_level_starts_word(self._id_to_token[token_id])

    def describe(self) -> Dict[str, Any]:
        return _describe_with_files(self, vocab_file=self.vocab_file, merge_file=self.merge_file)


def _config_tokens(config: Dict[str, Any], key: str) -> List[str]:
    """The token ``tokenizer_config.json`` names under ``key`` (a string or ``{"content": ...}``),
    as a list of zero or one strings."""
    value = config.get(key)
    if isinstance(value, dict):
        value = value.get("content")
    return [value] if isinstance(value, str) and value else []


def _walk_components(node: Any) -> List[Dict[str, Any]]:
    """All component dicts of a tokenizer.json pre_tokenizer/decoder (Sequences flattened)."""
    if isinstance(node, dict):
        out = [node]
        for key in ("pretokenizers", "decoders"):
            for child in node.get(key) or []:
                out.extend(_walk_components(child))
        return out
    return []


class HuggingFaceTokenizer(_TokenizersLibraryTokenizer):
    """A local ``tokenizer.json`` (``tokenizers`` library), as Megatron's HuggingFaceTokenizer.

    Args:
        tokenizer_model (str): ``tokenizer.json`` or a directory holding it. A
            ``tokenizer_config.json`` beside it may name ``eos_token`` and ``pad_token``;
            otherwise EOD is the first of :data:`HF_EOD_CANDIDATES` in the vocabulary.
    """

    tokenizer_type = "HuggingFaceTokenizer"

    def __init__(self, tokenizer_model: str) -> None:
        if tokenizer_model is None:
            raise ValueError("--tokenizer-model is required for --tokenizer-type HuggingFaceTokenizer")
        path = tokenizer_model
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        check_file(path, "--tokenizer-model")
        super().__init__(tokenizer_model)
        from tokenizers import Tokenizer

        self.tokenizer_file = os.path.abspath(path)
        try:
            self._tok = Tokenizer.from_file(path)
        except Exception as e:
            raise ValueError(f"--tokenizer-model {path}: not a tokenizer.json ({e})") from None
        spec = json.loads(self._tok.to_str())
        components = [c for k in ("pre_tokenizer", "decoder") for c in _walk_components(spec.get(k))]
        self._byte_level = any(c.get("type") == "ByteLevel" for c in components)
        model = spec.get("model") or {}
        self._wordpiece_prefix = (
            (model.get("continuing_subword_prefix") or "##") if model.get("type") == "WordPiece" else None
        )
        metaspace = [c.get("replacement") for c in components if c.get("type") == "Metaspace"]
        self._space_marker = metaspace[0] if metaspace and metaspace[0] else "\u2581"

        self._vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        added = self._tok.get_added_tokens_decoder()
        self._special_ids = sorted(int(i) for i, t in added.items() if t.special)

        config: Dict[str, Any] = {}
        config_path = os.path.join(os.path.dirname(self.tokenizer_file), "tokenizer_config.json")
        if os.path.isfile(config_path):
            with open(config_path, encoding="utf-8") as f:
                config = json.load(f)
        candidates = _config_tokens(config, "eos_token") + list(HF_EOD_CANDIDATES)
        eod = self._first_id(candidates)
        if eod is None:
            raise ValueError(
                f"--tokenizer-model {path}: no end-of-document token (tried {candidates}); "
                "name it as eos_token in a tokenizer_config.json beside tokenizer.json"
            )
        self._eod = eod
        pad = self._first_id(_config_tokens(config, "pad_token") + list(HF_PAD_CANDIDATES))
        self._pad = self._eod if pad is None else pad
        self._bos = self._first_id(_config_tokens(config, "bos_token"))
        # The model's unknown token is a control token even when tokenizer.json does not list
        # it among the added special tokens (e.g. converted SentencePiece Unigram models): it
        # must never appear inside a table translation nor be cloned.
        unk = model.get("unk_id")
        if not isinstance(unk, int) and isinstance(model.get("unk_token"), str):
            unk = self._tok.token_to_id(model["unk_token"])
        unk_ids = {int(unk)} if isinstance(unk, int) and 0 <= unk < self._vocab_size else set()
        self._special_ids = sorted(set(self._special_ids) | {self._eod, self._pad} | unk_ids)

    def _first_id(self, tokens: List[str]) -> Optional[int]:
        """The id of the first of ``tokens`` in the vocabulary, or None."""
        return next((int(i) for i in map(self._tok.token_to_id, tokens) if i is not None), None)

    def id_to_token(self, token_id: int) -> str:
        token = self._tok.id_to_token(int(token_id))
        return "" if token is None else token

    def _token_starts_word(self, token_id: int) -> bool:
        token = self.id_to_token(token_id)
        if self._byte_level:
            return _byte_level_starts_word(token)
        if self._wordpiece_prefix is not None:
            return not token.startswith(self._wordpiece_prefix)
        return starts_word_text(token, self._space_marker)

    def describe(self) -> Dict[str, Any]:
        return _describe_with_files(self, tokenizer_model=self.tokenizer_file)


class GPTSentencePieceTokenizer(PreAlignTokenizer):
    """A SentencePiece ``.model`` with its own vocabulary; EOD = the model's EOS.

    Args:
        tokenizer_model (str): the ``.model`` file.
    """

    tokenizer_type = "GPTSentencePieceTokenizer"

    def __init__(self, tokenizer_model: str) -> None:
        check_file(tokenizer_model, "--tokenizer-model")
        super().__init__(tokenizer_model)
        import sentencepiece

        self.tokenizer_file = os.path.abspath(tokenizer_model)
        try:
            self._sp = sentencepiece.SentencePieceProcessor(model_file=tokenizer_model)
        except Exception as e:
            raise ValueError(f"--tokenizer-model {tokenizer_model}: not a SentencePiece model ({e})") from None
        self._pieces = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        self._sp_special = [
            i for i in range(len(self._pieces)) if self._sp.is_control(i) or self._sp.is_unknown(i)
        ]
        self._init_vocab()

    def _init_vocab(self) -> None:
        sp = self._sp
        self._vocab_size = len(self._pieces)
        if sp.eos_id() < 0:
            raise ValueError(f"--tokenizer-model {self.tokenizer_file}: the model has no EOS piece")
        self._eod = sp.eos_id()
        self._pad = sp.pad_id() if sp.pad_id() >= 0 else self._eod
        self._bos = sp.bos_id() if sp.bos_id() >= 0 else None
        self._special_ids = sorted(set(self._sp_special) | {self._eod, self._pad})

    def tokenize(self, text: str) -> List[int]:
        return self._sp.encode(text)

    def detokenize(self, ids: Iterable[int]) -> str:
        return self._sp.decode(ids_list(ids))

    def id_to_token(self, token_id: int) -> str:
        return self._pieces[int(token_id)]

    def _token_starts_word(self, token_id: int) -> bool:
        return starts_word_text(self._pieces[token_id])

    def describe(self) -> Dict[str, Any]:
        return _describe_with_files(self, tokenizer_model=self.tokenizer_file)


class SentencePieceTokenizer(GPTSentencePieceTokenizer):
    """Megatron's SentencePieceTokenizer: the model's pieces plus appended special tokens.

    ``<CLS> <SEP> <EOD> <MASK>``, then the model's pad/BOS/EOS pieces (``<PAD> <BOS> <EOS>``
    when the model has none) and ``<extra_id_i>`` are added unless present, in Megatron's
    order, so ids match Megatron-LM's preprocess_data. EOD is ``<EOD>``.

    Args:
        tokenizer_model (str): the ``.model`` file.
        vocab_extra_ids (int): number of ``<extra_id_i>`` tokens (``--vocab-extra-ids``).
    """

    tokenizer_type = "SentencePieceTokenizer"

    def __init__(self, tokenizer_model: str, vocab_extra_ids: int = 0) -> None:
        self._vocab_extra_ids = int(vocab_extra_ids)
        super().__init__(tokenizer_model)

    def _init_vocab(self) -> None:
        sp = self._sp
        index = {p: i for i, p in enumerate(self._pieces)}
        added: Dict[str, int] = {}

        def add(token: str) -> int:
            if token not in index:
                index[token] = len(self._pieces)
                self._pieces.append(token)
            added[token] = index[token]
            return index[token]

        def piece_or(pid: int, default: str) -> str:
            return sp.id_to_piece(pid) if 0 <= pid < sp.get_piece_size() else default

        for t in ("<CLS>", "<SEP>", "<EOD>", "<MASK>"):
            add(t)
        self._pad = add(piece_or(sp.pad_id(), "<PAD>"))
        self._bos = add(piece_or(sp.bos_id(), "<BOS>"))
        add(piece_or(sp.eos_id(), "<EOS>"))
        for i in range(self._vocab_extra_ids):
            add(f"<extra_id_{i}>")
        self._eod = index["<EOD>"]
        self._vocab_size = len(self._pieces)
        self._added = added
        self._added_inv = {i: t for t, i in added.items()}
        self._special_ids = sorted(set(self._sp_special) | set(added.values()))
        self._split_re = re.compile("(" + "|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)) + ")")
        self.unique_identifiers["vocab_extra_ids"] = str(self._vocab_extra_ids)

    def tokenize(self, text: str) -> List[int]:
        ids: List[int] = []
        for i, part in enumerate(self._split_re.split(text)):
            if i % 2:
                ids.append(self._added[part])
            elif part:
                ids.extend(self._sp.encode(part))
        return ids

    def detokenize(self, ids: Iterable[int]) -> str:
        out: List[str] = []
        # runs of model pieces are decoded together; an appended token reads as its string
        for appended, group in itertools.groupby(ids_list(ids), key=self._added_inv.__contains__):
            run = list(group)
            out.extend([self._added_inv[i] for i in run] if appended else [self._sp.decode(run)])
        return "".join(out)

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d["vocab_extra_ids"] = self._vocab_extra_ids
        return d


class NullTokenizer(PreAlignTokenizer):
    """Megatron's NullTokenizer: text is space-separated ids, EOD = ``vocab_size_without_eod``.

    Args:
        vocab_size (int): ``--vocab-size`` N; ids ``0..N-1`` are regular, ``N`` is EOD, so
            :attr:`vocab_size` is ``N + 1`` (as Megatron). Every regular token is a word.
    """

    tokenizer_type = "NullTokenizer"

    def __init__(self, vocab_size: int) -> None:
        if vocab_size is None or int(vocab_size) <= 0:
            raise ValueError("--vocab-size must be a positive integer for --tokenizer-type NullTokenizer")
        super().__init__(None, vocab_size=vocab_size)
        n = int(vocab_size)
        self._vocab_size = n + 1
        self._eod = n
        self._pad = n
        self._special_ids = [n]

    def tokenize(self, text: str) -> List[int]:
        return [int(x) for x in text.split()]

    def detokenize(self, ids: Iterable[int]) -> str:
        return " ".join(str(int(i)) for i in ids)

    def id_to_token(self, token_id: int) -> str:
        return str(int(token_id))

    def _token_starts_word(self, token_id: int) -> bool:
        return True

    def encode_word(self, word: str) -> List[int]:
        ids = self.tokenize(word)
        if not ids:
            raise ValueError("encode_word: empty word")
        return ids

    def describe(self) -> Dict[str, Any]:
        return {"type": self.tokenizer_type, "vocab_size": self.vocab_size, "eod": self.eod, "pad": self.pad}


TOKENIZER_TYPES = (
    "GPT2BPETokenizer",
    "HuggingFaceTokenizer",
    "SentencePieceTokenizer",
    "GPTSentencePieceTokenizer",
    "NullTokenizer",
)


def build_tokenizer(
    tokenizer_type: str,
    *,
    vocab_file: Optional[str] = None,
    merge_file: Optional[str] = None,
    tokenizer_model: Optional[str] = None,
    vocab_size: Optional[int] = None,
    vocab_extra_ids: int = 0,
) -> PreAlignTokenizer:
    """Build a tokenizer from local files with Megatron-LM's type names.

    Args:
        tokenizer_type (str): one of :data:`TOKENIZER_TYPES`.
        vocab_file (Optional[str]): ``--vocab-file`` (GPT2BPETokenizer).
        merge_file (Optional[str]): ``--merge-file`` (GPT2BPETokenizer).
        tokenizer_model (Optional[str]): ``--tokenizer-model`` (HuggingFace / SentencePiece).
        vocab_size (Optional[int]): ``--vocab-size`` (NullTokenizer).
        vocab_extra_ids (int): ``--vocab-extra-ids`` (SentencePieceTokenizer).

    Returns:
        PreAlignTokenizer: the tokenizer.

    Raises:
        FileNotFoundError / ValueError: one line naming the flag and path.
    """
    # each constructor checks its own flags and files first (one-line errors naming the flag)
    if tokenizer_type == "GPT2BPETokenizer":
        return GPT2BPETokenizer(vocab_file, merge_file)
    if tokenizer_type == "HuggingFaceTokenizer":
        return HuggingFaceTokenizer(tokenizer_model)
    if tokenizer_type == "SentencePieceTokenizer":
        return SentencePieceTokenizer(tokenizer_model, vocab_extra_ids=vocab_extra_ids)
    if tokenizer_type == "GPTSentencePieceTokenizer":
        return GPTSentencePieceTokenizer(tokenizer_model)
    if tokenizer_type == "NullTokenizer":
        return NullTokenizer(vocab_size)  # type: ignore[arg-type]
    raise ValueError(f"--tokenizer-type {tokenizer_type!r}: not one of {', '.join(TOKENIZER_TYPES)}")
