"""Flags every evaluation tool shares (``--load``, ``--iteration``, model and tokenizer flags),
and loading the checkpoint they name through :mod:`megatron_prealign.eval.loading`."""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, Optional, Tuple

import torch

from megatron_prealign.cli.flags import add_flags, dest, flag_fields
from megatron_prealign.cli.tokenizer import add_tokenizer_args, build_tokenizer_from_args
from megatron_prealign.eval.loading import EvalLoadError, load_checkpoint_for_eval
from megatron_prealign.model.gpt import GPTModelConfig

__all__ = ["MODEL_FIELDS", "add_checkpoint_args", "model_flags", "load_from_args", "load_alignment_table",
           "check_alignment_table", "eval_parser"]

MODEL_FIELDS = ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size", "max_sequence_length",
                "position_embedding_type", "normalization", "untie_embeddings_and_output_weights")
"""``GPTModelConfig`` fields an evaluation tool takes as flags (for a Megatron-LM checkpoint that
saved no args); unset flags are ``None``: "from the checkpoint"."""


def add_checkpoint_args(parser: Any) -> Any:
    """Flags every evaluation tool shares: ``--load``, ``--iteration`` and optional tokenizer flags."""
    group = parser.add_argument_group("checkpoint")
    group.add_argument("--load", required=True, help="Megatron-LM checkpoint directory (as --save wrote it) or one iter_* folder.")
    group.add_argument("--iteration", type=int, default=None, help="Iteration to load (default: latest).")
    group.add_argument("--tensor-model-parallel-size", type=int, default=1,
                       help="TP size to evaluate with (launch with torchrun --nproc-per-node TP); PP is always 1.")
    model = parser.add_argument_group(
        "model (only for a Megatron-LM checkpoint that saved no args; Megatron-LM's flag names)")
    add_flags(model, GPTModelConfig, only=MODEL_FIELDS, **{name: {"default": None} for name in MODEL_FIELDS})
    model.add_argument("--use-checkpoint-args", action="store_true",
                       help="Accepted for Megatron-LM compatibility: a checkpoint's saved model args are always used.")
    add_tokenizer_args(parser, required=False)
    return parser


def model_flags(args: Any) -> Dict[str, Any]:
    """``GPTModelConfig`` fields given as model flags (absent flags are left out)."""
    given = {f.name: getattr(args, dest(f), None) for _, f, _ in flag_fields(GPTModelConfig, MODEL_FIELDS)}
    return {name: value for name, value in given.items() if value is not None}


def load_from_args(args: Any, for_training: bool = False) -> Tuple[torch.nn.Module, Any, Dict[str, Any], Any]:
    """Load the checkpoint (and tokenizer) the flags name.

    Args:
        args: flags from :func:`add_checkpoint_args` (plus ``hidden_dropout`` /
            ``attention_dropout`` when the tool fine-tunes; ``None`` keeps the checkpoint's).
        for_training: fine-tuning: keep dropout and return the model in train mode (see
            :func:`load_checkpoint_for_eval`).

    Raises:
        EvalLoadError, OSError, ValueError: one line naming the flag or file (a tool's
            :func:`~megatron_prealign.cli.tool.tool_main` prints it).
    """
    tp = int(getattr(args, "tensor_model_parallel_size", 1) or 1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if tp > 1 or world > 1:
        from megatron_prealign.platform import initialize

        if world != tp:
            raise EvalLoadError(f"--tensor-model-parallel-size {tp}: launch exactly {tp} processes (WORLD_SIZE is {world})")
        initialize(tensor_model_parallel_size=tp)
    tokenizer = build_tokenizer_from_args(args) if getattr(args, "tokenizer_type", None) else None
    return load_checkpoint_for_eval(args.load, args.iteration, tokenizer, for_training=for_training,
                                    hidden_dropout=getattr(args, "hidden_dropout", None),
                                    attention_dropout=getattr(args, "attention_dropout", None),
                                    model_config=model_flags(args))


def load_alignment_table(path: Optional[str]) -> Any:
    """The ``--alignment-table`` a tool names (``None`` when not given), read before the
    (slower) checkpoint so a bad table fails first.

    Raises:
        ValueError: an unreadable or malformed table (one line naming the flag).
    """
    if not path:
        return None
    from megatron_prealign.alignment import AlignmentTable

    try:
        return AlignmentTable.load(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--alignment-table: {exc}") from None


def check_alignment_table(table: Any, tokenizer: Any) -> None:
    """Fail with one line when ``table`` was built for another tokenizer than the checkpoint's,
    or holds ids beyond its vocabulary."""
    from megatron_prealign.alignment import check_table_tokenizer

    try:
        check_table_tokenizer(table, tokenizer, "--alignment-table")
        table.validate(tokenizer.vocab_size)
    except ValueError as exc:
        raise ValueError(str(exc) if str(exc).startswith("--alignment-table") else f"--alignment-table: {exc}") from None


def eval_parser(doc: str) -> argparse.ArgumentParser:
    """An evaluation tool's parser: its docstring's first line as description (the rest shown
    verbatim with ``--help``) and the shared checkpoint, model and tokenizer flags."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_checkpoint_args(parser)
