"""Command-line flags of ``pretrain_prealign.py`` (Megatron-LM's names where they exist).

The flags are generated from the config dataclasses (:mod:`megatron_prealign.training.config`,
``GPTModelConfig``, ``PreAlignLossConfig``, and :class:`MegatronFlags` for the flags that only
select or derive config values): each field's metadata names its flag, its docstring is the
help. :func:`parse_args` reads them, :func:`validate_args` applies Megatron-LM's rules between
flags (required, mutually exclusive, world-size arithmetic) and builds the configs, whose
``__post_init__`` checks the values; :func:`config_from_args` returns the typed
:class:`~megatron_prealign.training.config.PretrainConfig`. Library code never sees the
``argparse.Namespace``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from megatron_prealign.cli.flags import add_flags, from_args
from megatron_prealign.cli.tokenizer import add_tokenizer_args
from megatron_prealign.model.gpt import GPTModelConfig
from megatron_prealign.training.config import (
    SPLIT_FLAGS,
    CheckpointConfig,
    DataConfig,
    LoggingConfig,
    OptimConfig,
    ParallelConfig,
    PreAlignConfig,
    PretrainConfig,
    TrainingConfig,
)

DEFAULT_SPLIT = "969,30,1"
"""Megatron-LM's default ``--split`` (used with ``--data-path``)."""


@dataclass
class MegatronFlags:
    """Megatron-LM flags that are no config field: they select or derive config values."""

    group_query_attention: bool = field(default=False, metadata={"flag": "--group-query-attention"})
    """Grouped-query attention with --num-query-groups key/value groups."""
    make_vocab_size_divisible_by: int = field(default=128, metadata={"flag": "--make-vocab-size-divisible-by"})
    """Pad the vocabulary to a multiple of this times the TP size (Megatron)."""
    recompute_activations: bool = field(default=False, metadata={"flag": "--recompute-activations"})
    """Selective recompute (core attention), the same as --recompute-granularity selective."""
    lr_warmup_fraction: Optional[float] = field(default=None, metadata={"flag": "--lr-warmup-fraction"})
    """Warm-up as a fraction of the decay iterations (instead of --lr-warmup-iters)."""
    lr_warmup_samples: int = field(default=0, metadata={"flag": "--lr-warmup-samples"})
    """Warm-up in samples, with --train-samples."""
    lr_decay_samples: Optional[int] = field(default=None, metadata={"flag": "--lr-decay-samples"})
    """Decay span in samples, with --train-samples (default: all)."""
    data_path: Optional[List[str]] = field(default=None, metadata={"flag": "--data-path"})
    """Megatron blend: "PREFIX" or "W1 PREFIX1 W2 PREFIX2 ...", cut into train/valid/test by
    --split (or give --train-data-path etc. instead)."""
    train_data_path: Optional[List[str]] = field(default=None, metadata={"flag": "--train-data-path"})
    """Training blend (same syntax as --data-path), used whole; replaces --data-path/--split."""
    valid_data_path: Optional[List[str]] = field(default=None, metadata={"flag": "--valid-data-path"})
    """Validation blend, used whole (needs --train-data-path)."""
    test_data_path: Optional[List[str]] = field(default=None, metadata={"flag": "--test-data-path"})
    """Test blend, used whole (needs --train-data-path; this loop never reads it)."""
    use_checkpoint_args: bool = field(default=False, metadata={"flag": "--use-checkpoint-args"})
    """Take the model shape (and tokenizer) flags from the --load checkpoint."""
    ckpt_format: str = field(default="torch_dist", metadata={"flag": "--ckpt-format", "choices": ("torch_dist",)})
    """Checkpoint format (torch_dist only)."""
    log_batch_size_to_tensorboard: bool = field(default=False, metadata={"flag": "--log-batch-size-to-tensorboard"})
    """Accepted for Megatron-LM; the batch-size series is always written."""

    def __post_init__(self) -> None:
        if self.lr_warmup_fraction is not None and not 0.0 <= self.lr_warmup_fraction <= 1.0:
            raise ValueError(f"--lr-warmup-fraction {self.lr_warmup_fraction} must be in [0, 1]")


FLAG_GROUPS: Tuple[Tuple[str, type], ...] = (
    ("model", GPTModelConfig),
    ("parallelism", ParallelConfig),
    ("training", TrainingConfig),
    ("optimizer", OptimConfig),
    ("data", DataConfig),
    ("checkpointing", CheckpointConfig),
    ("logging", LoggingConfig),
    ("Megatron-LM", MegatronFlags),
    ("PreAlign", PreAlignConfig),
)
"""The parser's argument groups and the dataclass each is generated from (tokenizer and no-op
flags aside)."""

NOOP_FLAGS: Dict[str, str] = {
    "--use-mcore-models": "Megatron-Core models are the only implementation here",
    "--no-masked-softmax-fusion": "the layer spec chooses the softmax kernels",
    "--no-bias-gelu-fusion": "the layer spec chooses the fused kernels",
    "--no-bias-swiglu-fusion": "the layer spec chooses the fused kernels",
    "--no-bias-dropout-fusion": "the layer spec chooses the fused kernels",
    "--no-rope-fusion": "the layer spec chooses the fused kernels",
    "--no-gradient-accumulation-fusion": "gradient-accumulation fusion is not used",
    "--no-persist-layer-norm": "the persistent layer-norm kernel is not used",
    "--no-async-tensor-model-parallel-allreduce": "Megatron-Core decides the TP all-reduce overlap",
    "--use-flash-attn": "TransformerEngine picks flash attention by itself with --transformer-impl transformer_engine",
    "--attention-softmax-in-fp32": "attention softmax runs in fp32 whenever inputs are half precision",
    "--accumulate-allreduce-grads-in-fp32": "gradients are always reduced in fp32 here",
    "--no-load-optim-scheduler": "use --no-load-optim",
    "--log-params-norm": "parameter norms are not logged",
    "--log-num-zeros-in-grad": "zeros in gradients are not counted",
    "--log-throughput": "tokens per second are always logged",
    "--log-timers-to-tensorboard": "per-phase timers are not kept",
    "--log-memory-to-tensorboard": "memory is not logged",
    "--log-validation-ppl-to-tensorboard": "validation perplexity is always written",
}
"""Flags Megatron-LM accepts that change nothing here: accepted with a one-line notice (flag -> why).
Value-taking ones are in :data:`NOOP_VALUE_FLAGS`."""

NOOP_VALUE_FLAGS: Dict[str, str] = {
    "--distributed-backend": "the backend follows the device (NCCL on CUDA, gloo on CPU)",
    "--timing-log-level": "per-phase timers are not kept",
    "--tensorboard-log-interval": "TensorBoard points are written every --log-interval",
    "--tensorboard-queue-size": "the queue size is fixed",
    "--data-impl": "only mmap .bin/.idx datasets exist",
    "--wandb-entity": "the W&B default entity is used",
    "--attention-backend": "the layer spec chooses the attention kernel",
}

__all__ = [
    "FLAG_GROUPS",
    "MegatronFlags",
    "NOOP_FLAGS",
    "NOOP_VALUE_FLAGS",
    "noop_notices",
    "checkpoint_args",
    "build_parser",
    "parse_args",
    "validate_args",
    "config_from_args",
    "parse_blend",
    "padded_vocab_size",
]


def _add_noop_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("accepted for Megatron-LM compatibility (no effect here)")
    for flag, why in NOOP_FLAGS.items():
        g.add_argument(flag, dest=_noop_dest(flag), action="store_true", help=f"no effect: {why}")
    for flag, why in NOOP_VALUE_FLAGS.items():
        g.add_argument(flag, dest=_noop_dest(flag), default=None, help=f"no effect: {why}")


def _noop_dest(flag: str) -> str:
    return "noop_" + flag.lstrip("-").replace("-", "_")


def noop_notices(args: argparse.Namespace) -> List[str]:
    """One line per no-op flag given on the command line."""
    return [f"notice: {flag} is accepted for Megatron-LM compatibility and has no effect ({why})"
            for flag, why in {**NOOP_FLAGS, **NOOP_VALUE_FLAGS}.items()
            if getattr(args, _noop_dest(flag), None) not in (None, False)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_blend(values: Sequence[str], flag: str = "--data-path") -> Tuple[List[str], Optional[List[float]]]:
    """Megatron's blend syntax: prefixes alone (``A B C``: blended by size) or alternating
    ``weight prefix`` pairs, decided as ``get_blend_from_list`` does (an odd count, or no item in
    a weight position that is a number, means prefixes alone).

    Raises:
        ValueError: some but not all weight positions are numbers, or a weight is not positive.
    """
    values = list(values)
    if len(values) % 2 or not any(_is_number(w) for w in values[0::2]):
        return values, None
    weights, prefixes = [], []
    for w, p in zip(values[0::2], values[1::2]):
        if not _is_number(w):
            raise ValueError(f"{flag}: {w!r} is not a weight: give 'weight prefix' pairs or prefixes alone")
        weight = float(w)
        if weight <= 0:
            raise ValueError(f"{flag}: weight {w} of {p} must be positive")
        weights.append(weight)
        prefixes.append(p)
    return prefixes, weights


def padded_vocab_size(vocab_size: int, divisible_by: int, tp: int) -> int:
    """Megatron's padding: round up to a multiple of ``divisible_by * tp``."""
    multiple = max(1, divisible_by) * tp
    return ((vocab_size + multiple - 1) // multiple) * multiple


def parse_args(
    argv: Optional[Sequence[str]] = None, parser: Optional[argparse.ArgumentParser] = None
) -> argparse.Namespace:
    """Parse and validate ``argv`` (``sys.argv[1:]`` when ``None``); errors exit with status 2.

    Args:
        argv: the flags.
        parser: the parser to use (default :func:`build_parser`), for callers that report
            later errors through it.
    """
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    try:
        if args.use_checkpoint_args:
            apply_checkpoint_args(args)
        validate_args(args, world_size=None)
    except ValueError as exc:
        parser.error(str(exc))
    return args


CHECKPOINT_MODEL_ARGS = (
    "num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "group_query_attention",
    "num_query_groups", "seq_length", "max_position_embeddings", "position_embedding_type", "normalization",
    "swiglu", "untie_embeddings_and_output_weights", "make_vocab_size_divisible_by",
)
"""Flags ``--use-checkpoint-args`` takes from the checkpoint, overriding the command line
(the model shape, as Megatron-LM's ``load_args_from_checkpoint``)."""

CHECKPOINT_TOKENIZER_ARGS = ("tokenizer_type", "vocab_file", "merge_file", "tokenizer_model", "vocab_size")
"""Tokenizer flags ``--use-checkpoint-args`` fills in when the command line leaves them unset."""


def checkpoint_args(load_dir: str) -> Dict[str, Any]:
    """The flags a checkpoint under ``load_dir`` was written with: ours (``prealign_meta.json``
    ``args``) or Megatron-LM's (``args`` in ``iter_*/common.pt`` of a torch_dist checkpoint).

    Raises:
        ValueError: no checkpoint, or one that records no flags.
    """
    from megatron_prealign.checkpoint import layout

    try:
        path, it = layout.resolve_checkpoint(load_dir)
    except layout.CheckpointNotFoundError:
        raise ValueError(f"--use-checkpoint-args: no checkpoint under --load {load_dir}") from None
    try:
        saved = layout.read_meta(path).get("args")
    except layout.CheckpointError:  # e.g. common.pt args of a model this project does not build
        saved = None
    common = os.path.join(path, "common.pt")
    if saved is None and os.path.isfile(common):
        saved = layout.common_args(layout.load_pt(common))
    if not saved:
        raise ValueError(f"--use-checkpoint-args: the checkpoint in {load_dir} (iteration {it}) records no arguments")
    return dict(saved)


def apply_checkpoint_args(args: argparse.Namespace) -> None:
    """``--use-checkpoint-args``: model shape from the ``--load`` checkpoint, tokenizer where unset."""
    if not args.load:
        raise ValueError("--use-checkpoint-args needs --load")
    saved = checkpoint_args(args.load)
    for key in CHECKPOINT_MODEL_ARGS:
        if key in saved and saved[key] is not None:
            setattr(args, key, saved[key])
    for key in CHECKPOINT_TOKENIZER_ARGS:
        if getattr(args, key, None) is None and saved.get(key) is not None:
            setattr(args, key, saved[key])


def resolve_train_iters(train_samples: int, global_batch_size: int, rampup: Optional[Sequence[int]]) -> int:
    """Iterations that consume ``train_samples`` (Megatron-LM's ``update_train_iters``): during a
    ramp-up each iteration takes the current batch, afterwards the full global batch."""
    if not rampup:
        return train_samples // global_batch_size
    start, incr, ramp_samples = rampup
    steps = max(1, (global_batch_size - start) // incr)
    per_step = ramp_samples / steps
    iters, consumed = 0, 0
    while consumed <= ramp_samples and consumed <= train_samples:
        consumed += start + int(consumed / per_step) * incr
        iters += 1
    return iters + (train_samples - consumed) // global_batch_size  # floor division as Megatron-LM


def build_parser() -> argparse.ArgumentParser:
    """The full parser: the config dataclasses' flags, the no-op ones and the tokenizer's."""
    parser = argparse.ArgumentParser(
        prog="pretrain_prealign.py",
        description="PreAlign pretraining on Megatron-Core (see the module docstring for commands)",
        allow_abbrev=False,
    )
    for title, cls in FLAG_GROUPS:
        add_flags(parser.add_argument_group(title), cls)
    _add_noop_args(parser)
    add_tokenizer_args(parser, required=False)  # inferred from --vocab-file/--merge-file as Megatron-LM examples expect
    return parser


def validate_args(args: argparse.Namespace, world_size: Optional[int]) -> None:
    """Apply Megatron-LM's rules between flags, fill in derived values, then build the configs
    (their ``__post_init__`` checks every value): a one-line ``ValueError`` naming the flag.

    Args:
        args: parsed flags (completed in place: tokenizer type, FFN width, split, batch sizes).
        world_size: number of processes, when known (checks the parallel layout).
    """
    for flag in ("num_layers", "hidden_size", "num_attention_heads", "seq_length"):
        if getattr(args, flag) is None:
            raise ValueError(f"--{flag.replace('_', '-')} is required (or --use-checkpoint-args with --load)")
    if args.tokenizer_type is None:
        if args.vocab_file and args.merge_file:
            args.tokenizer_type = "GPT2BPETokenizer"  # what Megatron-LM's GPT examples mean by vocab + merges
        else:
            raise ValueError("--tokenizer-type is required (or --vocab-file with --merge-file for GPT-2 BPE)")
    if args.ffn_hidden_size is None and args.swiglu:
        args.ffn_hidden_size = int((4 * args.hidden_size * 2 / 3) / 64) * 64  # Megatron-LM's swiglu width
    if args.recompute_activations:
        if args.recompute_granularity == "full":
            raise ValueError("--recompute-activations is selective recompute; it contradicts --recompute-granularity full")
        args.recompute_granularity = "selective"
    if args.train_iters is None and args.train_samples is None:
        raise ValueError("give --train-iters or --train-samples")
    if args.train_iters is not None and args.train_samples is not None:
        raise ValueError("--train-iters and --train-samples are mutually exclusive")
    if args.train_iters is not None and (args.lr_decay_samples is not None or args.lr_warmup_samples):
        raise ValueError("--lr-decay-samples/--lr-warmup-samples need --train-samples (use --lr-decay-iters/"
                         "--lr-warmup-iters with --train-iters)")
    if args.lr_warmup_fraction is not None and (args.lr_warmup_iters or args.lr_warmup_samples):
        raise ValueError("--lr-warmup-fraction and --lr-warmup-iters/--lr-warmup-samples are mutually exclusive")
    if args.rampup_batch_size is not None and args.global_batch_size is None:
        raise ValueError("--rampup-batch-size needs --global-batch-size")
    if args.use_checkpoint_args and not args.load:
        raise ValueError("--use-checkpoint-args needs --load")
    if args.max_position_embeddings is None:
        args.max_position_embeddings = args.seq_length
    if world_size is not None:
        _apply_world_size(args, world_size)
    _validate_data_args(args)
    config_from_args(args, vocab_size=0)  # the tokenizer is not built yet; its size checks nothing


def _apply_world_size(args: argparse.Namespace, world_size: int) -> None:
    """Megatron-LM's batch arithmetic over the data-parallel size."""
    from_args(ParallelConfig, args)  # sizes >= 1
    tp, pp = args.tensor_model_parallel_size, args.pipeline_model_parallel_size
    if world_size % (tp * pp):
        raise ValueError(f"world size {world_size} is not divisible by TP x PP = {tp * pp}")
    dp = world_size // (tp * pp)
    per_round = args.micro_batch_size * dp
    if args.global_batch_size is None:
        args.global_batch_size = per_round
    if args.global_batch_size % per_round:
        raise ValueError(f"--global-batch-size {args.global_batch_size} is not divisible by "
                         f"--micro-batch-size x data-parallel size = {per_round}")
    if args.rampup_batch_size is not None:
        start, incr, _ = args.rampup_batch_size
        if start % per_round or incr % per_round:
            raise ValueError(f"--rampup-batch-size: START {start} and INCR {incr} must be multiples of "
                             f"--micro-batch-size x data-parallel size = {per_round}")
    if args.train_samples is not None:
        args.train_iters = resolve_train_iters(args.train_samples, args.global_batch_size, args.rampup_batch_size)
        if args.train_iters < 1:
            raise ValueError(f"--train-samples {args.train_samples} is less than one global batch")


def _per_split_paths(args: argparse.Namespace) -> List[Optional[Sequence[str]]]:
    """``--train-data-path``, ``--valid-data-path``, ``--test-data-path`` (``None`` when absent)."""
    return [args.train_data_path, args.valid_data_path, args.test_data_path]


def _validate_data_args(args: argparse.Namespace) -> None:
    """Megatron-LM's data-source rules: ``--data-path`` (+ ``--split``) or per-split paths."""
    per_split = _per_split_paths(args)
    if args.data_path is not None and any(p is not None for p in per_split):
        given = next(f for f, p in zip(SPLIT_FLAGS, per_split) if p is not None)
        raise ValueError(f"--data-path and {given} are mutually exclusive (use --data-path with --split, "
                         "or --train-data-path/--valid-data-path/--test-data-path)")
    if args.data_path is not None:
        if args.split is None:
            args.split = DEFAULT_SPLIT
        return
    if args.train_data_path is None:
        for flag, paths in zip(SPLIT_FLAGS[1:], per_split[1:]):
            if paths is not None:
                raise ValueError(f"{flag} needs --train-data-path (the training data)")
        raise ValueError("no training data: give --data-path or --train-data-path")
    if args.split is not None:
        raise ValueError(f"--split {args.split} applies to --data-path only; with --train-data-path each "
                         "split's datasets are used whole")
    for flag, paths in zip(SPLIT_FLAGS, per_split):
        if paths is not None:
            parse_blend(paths, flag)
    if args.eval_interval and args.eval_iters > 0 and args.valid_data_path is None:
        raise ValueError(f"--eval-iters {args.eval_iters} needs validation data: add --valid-data-path "
                         "(or --eval-iters 0 to train without validation)")


def _schedule_iters(args: argparse.Namespace) -> Tuple[int, Optional[int]]:
    """``(lr_warmup_iters, lr_decay_iters)`` from the iteration, sample or fraction flags."""
    gbs, rampup = args.global_batch_size, args.rampup_batch_size
    if args.train_samples is not None:
        if gbs is None:  # before the world size is known: nothing to convert yet
            return 0, None
        # The schedule steps once per iteration: sample counts become the iterations that consume
        # them (ramp-up included), so decay and warm-up end where Megatron-LM's sample-based ones do.
        decay_samples = args.lr_decay_samples or args.train_samples
        warmup_samples = (args.lr_warmup_fraction * decay_samples if args.lr_warmup_fraction is not None
                          else args.lr_warmup_samples)
        # Without --lr-decay-samples the decay spans the LM stage (None: its own length, after a
        # separate alignment stage), as with --train-iters.
        decay = resolve_train_iters(args.lr_decay_samples, gbs, rampup) if args.lr_decay_samples else None
        return (resolve_train_iters(int(warmup_samples), gbs, rampup) if warmup_samples else 0), decay
    decay = args.lr_decay_iters
    if args.lr_warmup_fraction is not None:
        return round(args.lr_warmup_fraction * (decay or args.train_iters)), decay
    return args.lr_warmup_iters, decay


def config_from_args(args: argparse.Namespace, vocab_size: int, clone_base_vocab_size: Optional[int] = None
                     ) -> PretrainConfig:
    """Build the typed configuration from validated flags (one generic conversion per field,
    plus the values the flags imply rather than state).

    Args:
        args: flags after :func:`validate_args` with the world size known.
        vocab_size: the tokenizer's vocabulary size (padded here as Megatron does).
        clone_base_vocab_size: ``V`` of an En-Clone tokenizer (``--clone-perfect-init``).
    """
    from_args(MegatronFlags, args)  # checks the values of the flags without a config field
    tp = args.tensor_model_parallel_size
    warmup_iters, decay_iters = _schedule_iters(args)
    whole = args.data_path is not None
    return from_args(
        PretrainConfig, args,
        model={"vocab_size": padded_vocab_size(vocab_size, args.make_vocab_size_divisible_by, tp),
               "num_query_groups": args.num_query_groups if args.group_query_attention else None,
               "recompute_num_layers": args.recompute_num_layers if args.recompute_granularity == "full" else None},
        data={"blend": parse_blend(args.data_path) if whole else None,
              "blend_per_split": None if whole else [
                  parse_blend(p, flag) if p is not None else None for flag, p in zip(SPLIT_FLAGS, _per_split_paths(args))],
              "split": args.split if whole else None},
        optim={"fp16": args.fp16, "lr_warmup_iters": warmup_iters, "lr_decay_iters": decay_iters},
        prealign={"clone_base_vocab_size": clone_base_vocab_size},
        logging={"wandb_save_dir": args.wandb_save_dir or (os.path.join(args.save, "wandb") if args.save else None)},
    )
