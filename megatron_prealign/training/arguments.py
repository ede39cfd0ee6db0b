"""Command-line flags of ``pretrain_prealign.py`` (Megatron-LM's names where they exist).

This is the CLI edge: :func:`parse_args` reads the flags, :func:`validate_args` rejects bad
combinations with one-line errors naming the flag, and :func:`config_from_args` converts them to
a typed :class:`~megatron_prealign.training.config.PretrainConfig`. Library code never sees the
``argparse.Namespace``.
"""

from __future__ import annotations

import argparse
from typing import List, Optional, Sequence, Tuple

from megatron_prealign.model.gpt import GPTModelConfig
from megatron_prealign.training.config import (
    LEVEL_REDUCTIONS,
    PREALIGN_MODES,
    PREALIGN_SCHEDULES,
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

__all__ = [
    "build_parser",
    "parse_args",
    "validate_args",
    "config_from_args",
    "parse_blend",
    "parse_levels",
    "padded_vocab_size",
]


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--num-layers", type=int, required=True)
    g.add_argument("--hidden-size", type=int, required=True)
    g.add_argument("--num-attention-heads", type=int, required=True)
    g.add_argument("--ffn-hidden-size", type=int, default=None, help="default 4 x hidden size")
    g.add_argument("--seq-length", type=int, required=True)
    g.add_argument("--max-position-embeddings", type=int, default=None, help="default --seq-length")
    g.add_argument("--position-embedding-type", choices=["learned_absolute", "rope"], default="learned_absolute")
    g.add_argument("--normalization", choices=["LayerNorm", "RMSNorm"], default="LayerNorm")
    g.add_argument("--untie-embeddings-and-output-weights", action="store_true")
    g.add_argument("--hidden-dropout", type=float, default=0.1)
    g.add_argument("--attention-dropout", type=float, default=0.1)
    g.add_argument("--init-method-std", type=float, default=0.02)
    g.add_argument("--make-vocab-size-divisible-by", type=int, default=128,
                   help="pad the vocabulary to a multiple of this times the TP size (Megatron)")
    g.add_argument("--bf16", action="store_true", help="bfloat16 parameters and compute (GPU)")
    g.add_argument("--transformer-impl", choices=["auto", "local", "transformer_engine"], default="transformer_engine",
                   help="Megatron-LM's default transformer_engine; the local spec when TE/CUDA is missing")


def _add_parallel_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("parallelism")
    g.add_argument("--tensor-model-parallel-size", type=int, default=1)
    g.add_argument("--pipeline-model-parallel-size", type=int, default=1)
    g.add_argument("--sequence-parallel", action="store_true")


def _add_training_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--micro-batch-size", type=int, required=True)
    g.add_argument("--global-batch-size", type=int, default=None,
                   help="default micro batch size x data-parallel size")
    g.add_argument("--train-iters", type=int, required=True,
                   help="optimizer steps of the whole job, alignment stages included")
    g.add_argument("--seed", type=int, default=1234)
    g.add_argument("--log-interval", type=int, default=100)
    g.add_argument("--eval-interval", type=int, default=1000)
    g.add_argument("--eval-iters", type=int, default=100)
    g.add_argument("--exit-interval", type=int, default=None)


def _add_optimizer_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("optimizer")
    g.add_argument("--lr", type=float, required=True)
    g.add_argument("--min-lr", type=float, default=0.0)
    g.add_argument("--lr-decay-style", choices=["constant", "linear", "cosine", "inverse-square-root", "WSD"],
                   default="cosine")
    g.add_argument("--lr-warmup-iters", type=int, default=0)
    g.add_argument("--lr-decay-iters", type=int, default=None, help="default --train-iters")
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--adam-beta1", type=float, default=0.9)
    g.add_argument("--adam-beta2", type=float, default=0.999)
    g.add_argument("--adam-eps", type=float, default=1e-8)
    g.add_argument("--clip-grad", type=float, default=1.0)


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--data-path", nargs="+", default=None,
                   help='Megatron blend: "PREFIX" or "W1 PREFIX1 W2 PREFIX2 ...", cut into train/valid/test '
                   "by --split (or give --train-data-path etc. instead)")
    g.add_argument("--split", default=None,
                   help=f"train,valid,test proportions of every --data-path dataset (default {DEFAULT_SPLIT})")
    g.add_argument("--train-data-path", nargs="+", default=None,
                   help="training blend (same syntax as --data-path), used whole; replaces --data-path/--split")
    g.add_argument("--valid-data-path", nargs="+", default=None,
                   help="validation blend, used whole (needs --train-data-path)")
    g.add_argument("--test-data-path", nargs="+", default=None,
                   help="test blend, used whole (needs --train-data-path; this loop never reads it)")
    g.add_argument("--data-cache-path", default=None)
    g.add_argument("--no-mmap-bin-files", dest="mmap_bin_files", action="store_false")
    g.add_argument("--eod-mask-loss", action="store_true")
    g.add_argument("--num-workers", type=int, default=2, help="DataLoader workers per rank (0 = main process)")


def _add_checkpoint_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("checkpointing")
    g.add_argument("--save", default=None)
    g.add_argument("--load", default=None)
    g.add_argument("--save-interval", type=int, default=None)
    g.add_argument("--no-load-optim", dest="load_optim", action="store_false")
    g.add_argument("--no-load-rng", dest="load_rng", action="store_false")
    g.add_argument("--ckpt-format", choices=["torch_dist"], default="torch_dist")


def _add_logging_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("logging")
    g.add_argument("--tensorboard-dir", default=None)


def _add_prealign_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("PreAlign")
    g.add_argument("--prealign-table", default=None, help="alignment table (JSONL)")
    g.add_argument("--prealign-mode", choices=list(PREALIGN_MODES), default="init",
                   help="init = PreAlign (alignment stage first); on-the-fly = contrastive loss "
                   "throughout; post = alignment stage after pretraining (with LM loss); "
                   "none = joint training")
    g.add_argument("--prealign-iters", type=int, default=0,
                   help="iterations of the alignment stage (first for init, last for post)")
    g.add_argument("--prealign-temperature", type=float, default=0.1)
    g.add_argument("--prealign-levels", default="all",
                   help='"all" or comma-separated levels: 0 = input embedding, 1..L = layers, '
                   "L+1 = output embedding")
    g.add_argument("--prealign-lm-weight", type=float, default=1.0,
                   help="auxiliary LM loss weight in the alignment stage (0 = none)")
    g.add_argument("--prealign-weight", "--prealign-align-weight", dest="prealign_align_weight",
                   type=float, default=1.0,
                   help="alignment loss weight whenever it is active (default 1, paper Eq. 4; the "
                   "authors' code uses 0.1 with --prealign-level-reduction mean; "
                   "see docs/prealign-weighting.md)")
    g.add_argument("--prealign-level-reduction", choices=list(LEVEL_REDUCTIONS), default="sum",
                   help="combine the per-level losses by sum (default, paper Eq. 3) or mean (the "
                   "authors' released code)")
    g.add_argument("--prealign-schedule", choices=list(PREALIGN_SCHEDULES), default="separate",
                   help="separate (default, the paper's stage boundary): the init/post alignment "
                   "stage has its own LR schedule (--prealign-lr*), and at the boundary the Adam "
                   "state is reset and the LM stage runs its own --lr-warmup-iters and decay over "
                   "--lr-decay-iters (default its own length); shared: one schedule and one Adam "
                   "state over the whole job. --train-iters counts all optimizer steps, the "
                   "alignment stage included")
    g.add_argument("--prealign-lr", type=float, default=None,
                   help="peak LR of the alignment stage (separate schedule; default --lr)")
    g.add_argument("--prealign-min-lr", type=float, default=None,
                   help="final LR of the alignment stage (separate schedule; default --min-lr)")
    g.add_argument("--prealign-lr-warmup-iters", type=int, default=None,
                   help="warm-up of the alignment stage (separate schedule; default "
                   "--lr-warmup-iters capped at half of --prealign-iters)")
    g.add_argument("--prealign-lr-decay-style", default=None,
                   choices=["constant", "linear", "cosine", "inverse-square-root", "WSD"],
                   help="decay of the alignment stage over --prealign-iters (separate schedule; "
                   "default --lr-decay-style)")
    g.add_argument("--prealign-words-per-batch", type=int, default=256)
    g.add_argument("--clone-perfect-init", action="store_true",
                   help="En-Clone upper bound: embedding rows id+V start equal to rows id")


def build_parser() -> argparse.ArgumentParser:
    """The full parser: Megatron-LM's flags, the tokenizer's, then PreAlign's."""
    from megatron_prealign.tokenizer import add_tokenizer_args

    parser = argparse.ArgumentParser(
        prog="pretrain_prealign.py",
        description="PreAlign pretraining on Megatron-Core (see the module docstring for commands)",
        allow_abbrev=False,
    )
    _add_model_args(parser)
    _add_parallel_args(parser)
    _add_training_args(parser)
    _add_optimizer_args(parser)
    _add_data_args(parser)
    _add_checkpoint_args(parser)
    _add_logging_args(parser)
    add_tokenizer_args(parser)
    _add_prealign_args(parser)
    return parser


def parse_blend(values: Sequence[str], flag: str = "--data-path") -> Tuple[List[str], Optional[List[float]]]:
    """Megatron's blend syntax: one prefix, or alternating ``weight prefix`` pairs.

    Raises:
        ValueError: odd number of items or a weight that is not a positive number.
    """
    values = list(values)
    if len(values) == 1:
        return [values[0]], None
    if len(values) % 2:
        raise ValueError(f"{flag}: expected one prefix or 'weight prefix' pairs, got {len(values)} items")
    weights, prefixes = [], []
    for w, p in zip(values[0::2], values[1::2]):
        try:
            weight = float(w)
        except ValueError:
            raise ValueError(f"{flag}: {w!r} is not a weight (expected 'weight prefix' pairs)") from None
        if weight <= 0:
            raise ValueError(f"{flag}: weight {w} of {p} must be positive")
        weights.append(weight)
        prefixes.append(p)
    return prefixes, weights


def parse_levels(text: str) -> Optional[List[int]]:
    """``"all"`` -> ``None``; ``"0,3,6"`` -> ``[0, 3, 6]``."""
    if text.strip().lower() == "all":
        return None
    try:
        levels = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--prealign-levels: expected 'all' or comma-separated integers, got {text!r}") from None
    if not levels or levels[0] < 0:
        raise ValueError(f"--prealign-levels: levels must be non-negative integers, got {text!r}")
    return levels


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
        validate_args(args, world_size=None)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def validate_args(args: argparse.Namespace, world_size: Optional[int]) -> None:
    """Reject inconsistent flags with a one-line ``ValueError`` naming the flag.

    Args:
        args: parsed flags.
        world_size: number of processes, when known (checks the parallel layout).
    """
    if args.max_position_embeddings is None:
        args.max_position_embeddings = args.seq_length
    if args.seq_length > args.max_position_embeddings:
        raise ValueError(f"--seq-length {args.seq_length} exceeds --max-position-embeddings "
                         f"{args.max_position_embeddings}")
    tp, pp = args.tensor_model_parallel_size, args.pipeline_model_parallel_size
    if tp < 1 or pp < 1:
        raise ValueError("--tensor-model-parallel-size and --pipeline-model-parallel-size must be >= 1")
    if args.num_attention_heads % tp:
        raise ValueError(f"--num-attention-heads {args.num_attention_heads} is not divisible by "
                         f"--tensor-model-parallel-size {tp}")
    if args.num_layers % pp:
        raise ValueError(f"--num-layers {args.num_layers} is not divisible by --pipeline-model-parallel-size {pp}")
    if args.sequence_parallel and tp == 1:
        raise ValueError("--sequence-parallel needs --tensor-model-parallel-size > 1")
    if args.sequence_parallel and args.seq_length % tp:
        raise ValueError(f"--sequence-parallel: --seq-length {args.seq_length} is not divisible by TP {tp}")
    if args.train_iters < 1:
        raise ValueError("--train-iters must be >= 1")
    if args.micro_batch_size < 1:
        raise ValueError("--micro-batch-size must be >= 1")
    if world_size is not None:
        if world_size % (tp * pp):
            raise ValueError(f"world size {world_size} is not divisible by TP x PP = {tp * pp}")
        dp = world_size // (tp * pp)
        if args.global_batch_size is None:
            args.global_batch_size = args.micro_batch_size * dp
        if args.global_batch_size % (args.micro_batch_size * dp):
            raise ValueError(f"--global-batch-size {args.global_batch_size} is not divisible by "
                             f"--micro-batch-size x data-parallel size = {args.micro_batch_size * dp}")
    if args.lr_decay_style not in ("constant",) and args.min_lr > args.lr:
        raise ValueError(f"--min-lr {args.min_lr} exceeds --lr {args.lr}")
    if args.clip_grad < 0:
        raise ValueError("--clip-grad must be >= 0")
    if args.save_interval is not None and args.save_interval < 1:
        raise ValueError("--save-interval must be >= 1")
    if args.save_interval is not None and not args.save:
        raise ValueError("--save-interval needs --save")
    if args.num_workers < 0:
        raise ValueError("--num-workers must be >= 0")
    if args.log_interval < 1:
        raise ValueError("--log-interval must be >= 1")
    _validate_data_args(args)
    parse_levels(args.prealign_levels)
    mode = args.prealign_mode
    if mode != "none" and not args.prealign_table:
        raise ValueError(f"--prealign-mode {mode} needs --prealign-table (use --prealign-mode none for joint training)")
    if mode in ("init", "post"):
        if args.prealign_iters < 1:
            raise ValueError(f"--prealign-mode {mode} needs --prealign-iters >= 1")
        if args.prealign_iters > args.train_iters:
            raise ValueError(f"--prealign-iters {args.prealign_iters} exceeds --train-iters {args.train_iters} "
                             "(--train-iters counts the whole job, alignment stage included)")
    if mode in ("none", "on-the-fly") and args.prealign_iters:
        raise ValueError(f"--prealign-iters has no effect with --prealign-mode {mode}; leave it at 0")
    if args.prealign_temperature <= 0:
        raise ValueError("--prealign-temperature must be > 0")
    if args.prealign_lm_weight < 0 or args.prealign_align_weight < 0:
        raise ValueError("--prealign-lm-weight and --prealign-weight must be >= 0")
    if args.prealign_lr is not None and args.prealign_lr <= 0:
        raise ValueError(f"--prealign-lr {args.prealign_lr} must be > 0")
    prealign_lr = args.prealign_lr if args.prealign_lr is not None else args.lr
    if args.prealign_min_lr is not None and not 0 <= args.prealign_min_lr <= prealign_lr:
        raise ValueError(f"--prealign-min-lr {args.prealign_min_lr} must be within 0..{prealign_lr} (--prealign-lr)")
    if args.prealign_lr_warmup_iters is not None and mode in ("init", "post") and \
            not 0 <= args.prealign_lr_warmup_iters < args.prealign_iters:
        raise ValueError(f"--prealign-lr-warmup-iters {args.prealign_lr_warmup_iters} must be within "
                         f"0..{args.prealign_iters - 1} (--prealign-iters {args.prealign_iters})")
    if args.prealign_words_per_batch < 2:
        raise ValueError(f"--prealign-words-per-batch {args.prealign_words_per_batch}: a contrastive batch "
                         "needs at least 2 words (one positive pair and a negative)")


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
        parse_blend(args.data_path)
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


def config_from_args(args: argparse.Namespace, vocab_size: int, clone_base_vocab_size: Optional[int] = None
                     ) -> PretrainConfig:
    """Convert validated flags into the typed configuration the library takes.

    Args:
        args: flags after :func:`validate_args` with the world size known.
        vocab_size: the tokenizer's vocabulary size (padded here as Megatron does).
        clone_base_vocab_size: ``V`` of an En-Clone tokenizer (``--clone-perfect-init``).
    """
    tp = args.tensor_model_parallel_size
    impl = args.transformer_impl
    model = GPTModelConfig(
        num_layers=args.num_layers,
        hidden_size=args.hidden_size,
        num_attention_heads=args.num_attention_heads,
        vocab_size=padded_vocab_size(vocab_size, args.make_vocab_size_divisible_by, tp),
        max_sequence_length=args.max_position_embeddings,
        ffn_hidden_size=args.ffn_hidden_size,
        position_embedding_type=args.position_embedding_type,
        normalization=args.normalization,
        untie_embeddings_and_output_weights=args.untie_embeddings_and_output_weights,
        hidden_dropout=args.hidden_dropout,
        attention_dropout=args.attention_dropout,
        init_method_std=args.init_method_std,
        bf16=args.bf16,
        sequence_parallel=args.sequence_parallel,
        transformer_impl=impl,
    )
    return PretrainConfig(
        model=model,
        parallel=ParallelConfig(
            tensor_model_parallel_size=tp,
            pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        ),
        data=DataConfig(
            blend=parse_blend(args.data_path) if args.data_path is not None else None,
            blend_per_split=None if args.data_path is not None else [
                parse_blend(p, flag) if p is not None else None for flag, p in zip(SPLIT_FLAGS, _per_split_paths(args))
            ],
            split=args.split if args.data_path is not None else None,
            seq_length=args.seq_length,
            data_cache_path=args.data_cache_path,
            mmap_bin_files=args.mmap_bin_files,
            eod_mask_loss=args.eod_mask_loss,
            num_workers=args.num_workers,
        ),
        optim=OptimConfig(
            lr=args.lr,
            min_lr=args.min_lr,
            lr_decay_style=args.lr_decay_style,
            lr_warmup_iters=args.lr_warmup_iters,
            lr_decay_iters=args.lr_decay_iters,
            weight_decay=args.weight_decay,
            adam_beta1=args.adam_beta1,
            adam_beta2=args.adam_beta2,
            adam_eps=args.adam_eps,
            clip_grad=args.clip_grad,
        ),
        training=TrainingConfig(
            micro_batch_size=args.micro_batch_size,
            global_batch_size=args.global_batch_size,
            train_iters=args.train_iters,
            seed=args.seed,
            log_interval=args.log_interval,
            eval_interval=args.eval_interval,
            eval_iters=args.eval_iters,
            exit_interval=args.exit_interval,
        ),
        checkpoint=CheckpointConfig(
            save=args.save,
            load=args.load,
            save_interval=args.save_interval,
            load_optim=args.load_optim,
            load_rng=args.load_rng,
        ),
        prealign=PreAlignConfig(
            mode=args.prealign_mode,
            table=args.prealign_table,
            iters=args.prealign_iters,
            temperature=args.prealign_temperature,
            levels=parse_levels(args.prealign_levels),
            lm_weight=args.prealign_lm_weight,
            align_weight=args.prealign_align_weight,
            level_reduction=args.prealign_level_reduction,
            schedule=args.prealign_schedule,
            lr=args.prealign_lr,
            min_lr=args.prealign_min_lr,
            lr_warmup_iters=args.prealign_lr_warmup_iters,
            lr_decay_style=args.prealign_lr_decay_style,
            words_per_batch=args.prealign_words_per_batch,
            clone_perfect_init=args.clone_perfect_init,
            clone_base_vocab_size=clone_base_vocab_size,
        ),
        logging=LoggingConfig(tensorboard_dir=args.tensorboard_dir),
    )
