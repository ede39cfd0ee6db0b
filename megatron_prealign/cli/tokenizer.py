"""Megatron-LM's tokenizer flags for every tool, and the tokenizer they describe.

Usage in a tool::

    parser = argparse.ArgumentParser()
    add_tokenizer_args(parser)
    args = parser.parse_args()
    tokenizer = build_tokenizer_from_args(args)   # exits with a one-line error on bad files

Flags (Megatron-LM spelling): ``--tokenizer-type``, ``--vocab-file``, ``--merge-file``,
``--tokenizer-model``, ``--vocab-size`` (NullTokenizer), ``--vocab-extra-ids``, and PreAlign's
``--en-clone`` (wrap the tokenizer in :class:`EnCloneTokenizer`, vocabulary 2V).
"""

from __future__ import annotations

import argparse
from typing import Optional

from megatron_prealign.tokenizer.base import PreAlignTokenizer
from megatron_prealign.tokenizer.tokenizer import TOKENIZER_TYPES, build_tokenizer

__all__ = ["add_tokenizer_args", "build_tokenizer_from_args"]


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
    group.add_argument(
        "--tokenizer-type", type=str, required=required, choices=TOKENIZER_TYPES,
        help="Megatron tokenizer type, loaded from local files.",
    )
    group.add_argument("--vocab-file", type=str, default=None, help="GPT-2 vocab.json (GPT2BPETokenizer).")
    group.add_argument("--merge-file", type=str, default=None, help="GPT-2 merges.txt (GPT2BPETokenizer).")
    group.add_argument(
        "--tokenizer-model", type=str, default=None,
        help="tokenizer.json or its directory (HuggingFaceTokenizer); .model file (SentencePiece).",
    )
    group.add_argument(
        "--vocab-size", type=int, default=None,
        help="NullTokenizer: number of regular ids (EOD = this value, vocabulary = value + 1).",
    )
    group.add_argument(
        "--vocab-extra-ids", type=int, default=0,
        help="SentencePieceTokenizer: number of <extra_id_i> tokens appended.",
    )
    if en_clone_flag:
        group.add_argument(
            "--en-clone", action="store_true",
            help="Wrap the tokenizer in the En-Clone tokenizer (vocabulary 2V; clone id = id + V).",
        )
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
    except (OSError, ValueError) as e:
        if parser is not None:
            parser.error(str(e))
        raise
    if getattr(args, "en_clone", False):
        from megatron_prealign.tokenizer.en_clone import EnCloneTokenizer

        tok = EnCloneTokenizer(tok)
    return tok
