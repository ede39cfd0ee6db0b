"""Megatron-LM's tokenizer flags for every tool, and the tokenizer they describe.

Usage in a tool::

    parser = argparse.ArgumentParser()
    add_tokenizer_args(parser)
    args = parser.parse_args()
    tokenizer = build_tokenizer_from_args(args)   # exits with a one-line error on bad files

The flags are generated from :class:`TokenizerArgs` (Megatron-LM spelling): ``--tokenizer-type``,
``--vocab-file``, ``--merge-file``, ``--tokenizer-model``, ``--vocab-size`` (NullTokenizer),
``--vocab-extra-ids``, and PreAlign's ``--en-clone`` (wrap the tokenizer in
:class:`EnCloneTokenizer`, vocabulary 2V).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from megatron_prealign.cli.flags import add_flags
from megatron_prealign.tokenizer.base import PreAlignTokenizer
from megatron_prealign.tokenizer.tokenizer import TOKENIZER_TYPES, build_tokenizer

__all__ = ["TokenizerArgs", "add_tokenizer_args", "build_tokenizer_from_args"]


@dataclass
class TokenizerArgs:
    """The arguments of :func:`~megatron_prealign.tokenizer.build_tokenizer`, as flags."""

    tokenizer_type: Optional[str] = field(default=None, metadata={"flag": "--tokenizer-type",
                                                                  "choices": TOKENIZER_TYPES})
    """Megatron tokenizer type, loaded from local files."""
    vocab_file: Optional[str] = field(default=None, metadata={"flag": "--vocab-file"})
    """GPT-2 vocab.json (GPT2BPETokenizer)."""
    merge_file: Optional[str] = field(default=None, metadata={"flag": "--merge-file"})
    """GPT-2 merges.txt (GPT2BPETokenizer)."""
    tokenizer_model: Optional[str] = field(default=None, metadata={"flag": "--tokenizer-model"})
    """tokenizer.json or its directory (HuggingFaceTokenizer); .model file (SentencePiece)."""
    vocab_size: Optional[int] = field(default=None, metadata={"flag": "--vocab-size"})
    """NullTokenizer: number of regular ids (EOD = this value, vocabulary = value + 1)."""
    vocab_extra_ids: int = field(default=0, metadata={"flag": "--vocab-extra-ids"})
    """SentencePieceTokenizer: number of <extra_id_i> tokens appended."""
    en_clone: bool = field(default=False, metadata={"flag": "--en-clone"})
    """Wrap the tokenizer in the En-Clone tokenizer (vocabulary 2V; clone id = id + V)."""


def add_tokenizer_args(
    parser: argparse.ArgumentParser, required: bool = True, en_clone_flag: bool = True
) -> argparse.ArgumentParser:
    """Add the tokenizer flags as an argument group named ``tokenizer``.

    Args:
        parser (argparse.ArgumentParser): the tool's parser.
        required (bool): whether ``--tokenizer-type`` is required.
        en_clone_flag (bool): add ``--en-clone``.

    Returns:
        argparse.ArgumentParser: ``parser`` (for chaining).
    """
    group = parser.add_argument_group("tokenizer")
    names = [f.name for f in dataclasses.fields(TokenizerArgs) if en_clone_flag or f.name != "en_clone"]
    add_flags(group, TokenizerArgs, only=names, tokenizer_type={"required": required})
    return parser


def build_tokenizer_from_args(
    args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None
) -> PreAlignTokenizer:
    """Build the tokenizer the flags describe.

    Args:
        args (argparse.Namespace): parsed flags from :func:`add_tokenizer_args`.
        parser (Optional[argparse.ArgumentParser]): when given, a bad flag or missing file
            exits through ``parser.error`` (usage + one line); otherwise the error is raised.

    Returns:
        PreAlignTokenizer: the tokenizer (an ``EnCloneTokenizer`` with ``--en-clone``).
    """
    try:
        tok = build_tokenizer(
            args.tokenizer_type,
            vocab_file=getattr(args, "vocab_file", None),
            merge_file=getattr(args, "merge_file", None),
            tokenizer_model=getattr(args, "tokenizer_model", None),
            vocab_size=getattr(args, "vocab_size", None),
            vocab_extra_ids=getattr(args, "vocab_extra_ids", 0) or 0,
        )
    except (OSError, ValueError) as exc:
        if parser is not None:
            parser.error(str(exc))
        raise
    if getattr(args, "en_clone", False):
        from megatron_prealign.tokenizer.en_clone import EnCloneTokenizer

        tok = EnCloneTokenizer(tok)
    return tok
