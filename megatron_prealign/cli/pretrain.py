"""Command-line flags of ``pretrain_prealign.py`` (Megatron-LM's names where they exist).

This is the CLI edge: :func:`parse_args` reads the flags, :func:`validate_args` rejects bad
combinations with one-line errors naming the flag, and :func:`config_from_args` converts them to
a typed :class:`~megatron_prealign.training.config.PretrainConfig`. Library code never sees the
``argparse.Namespace``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

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
    "NOOP_FLAGS",
    "NOOP_VALUE_FLAGS",
    "noop_notices",
    "checkpoint_args",
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
    # Required unless --use-checkpoint-args takes them from --load (checked in validate_args).
    g.add_argument("--num-layers", type=int, default=None, help="required (or --use-checkpoint-args)")
    g.add_argument("--hidden-size", type=int, default=None, help="required (or --use-checkpoint-args)")
    g.add_argument("--num-attention-heads", type=int, default=None, help="required (or --use-checkpoint-args)")
    g.add_argument("--ffn-hidden-size", type=int, default=None,
                   help="default 4 x hidden size; with --swiglu int(8 x hidden / 3 / 64) x 64 (Megatron-LM)")
    g.add_argument("--swiglu", action="store_true", help="gated SiLU MLP (Llama-style), as Megatron-LM")
    g.add_argument("--group-query-attention", action="store_true", help="grouped-query attention")
    g.add_argument("--num-query-groups", type=int, default=1,
                   help="key/value head groups with --group-query-attention (Megatron-LM default 1)")
    g.add_argument("--seq-length", type=int, default=None, help="required (or --use-checkpoint-args)")
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
    g.add_argument("--fp16", action="store_true", help="float16 parameters and compute with loss scaling (GPU)")
    g.add_argument("--loss-scale", type=float, default=None,
                   help="static loss scale (a power of 2); default: dynamic loss scaling")
    g.add_argument("--initial-loss-scale", type=float, default=2.0 ** 32, help="initial dynamic loss scale")
    g.add_argument("--min-loss-scale", type=float, default=1.0, help="minimum dynamic loss scale")
    g.add_argument("--loss-scale-window", type=float, default=1000,
                   help="iterations without overflow before the dynamic scale grows")
    g.add_argument("--hysteresis", type=int, default=2, help="overflows tolerated before the scale shrinks")
    g.add_argument("--recompute-activations", action="store_true",
                   help="selective recompute (core attention), the same as --recompute-granularity selective")
    g.add_argument("--recompute-granularity", choices=["full", "selective"], default=None,
                   help="full: recompute whole layers (not during pre-alignment); selective: core attention")
    g.add_argument("--recompute-method", choices=["uniform", "block"], default=None,
                   help="with --recompute-granularity full: uniform chunks or the first N layers per stage")
    g.add_argument("--recompute-num-layers", type=int, default=1,
                   help="layers per recompute chunk (uniform) or recomputed layers per stage (block)")
    g.add_argument("--transformer-impl", choices=["auto", "local", "transformer_engine"], default="transformer_engine",
                   help="Megatron-LM's default transformer_engine; the local spec when TE/CUDA is missing")


def _add_parallel_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("parallelism")
    g.add_argument("--tensor-model-parallel-size", type=int, default=1)
    g.add_argument("--pipeline-model-parallel-size", type=int, default=1)
    g.add_argument("--sequence-parallel", action="store_true")
    g.add_argument("--use-distributed-optimizer", action="store_true",
                   help="shard optimizer state over data-parallel ranks (Megatron-Core's distributed optimizer; CUDA)")
    g.add_argument("--overlap-grad-reduce", action="store_true",
                   help="overlap the data-parallel gradient reduce with the backward pass")


def _add_training_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--micro-batch-size", type=int, required=True)
    g.add_argument("--global-batch-size", type=int, default=None,
                   help="default micro batch size x data-parallel size")
    g.add_argument("--rampup-batch-size", nargs=3, type=int, default=None, metavar=("START", "INCR", "SAMPLES"),
                   help="grow the global batch from START by INCR over SAMPLES samples (Megatron-LM)")
    g.add_argument("--train-iters", type=int, default=None,
                   help="optimizer steps of the whole job, alignment stages included")
    g.add_argument("--train-samples", type=int, default=None,
                   help="instead of --train-iters: samples of the whole job (iterations follow from the "
                   "global batch and --rampup-batch-size)")
    g.add_argument("--seed", type=int, default=1234)
    g.add_argument("--log-interval", type=int, default=100)
    g.add_argument("--eval-interval", type=int, default=1000)
    g.add_argument("--eval-iters", type=int, default=100)
    g.add_argument("--exit-interval", type=int, default=None)
    g.add_argument("--exit-duration-in-mins", type=int, default=None,
                   help="save and exit once the job has run this many minutes")
    g.add_argument("--exit-signal-handler", action="store_true",
                   help="accepted for Megatron-LM; SIGTERM always saves and exits cleanly here "
                   "(--no-exit-signal-handler turns that off)")
    g.add_argument("--no-exit-signal-handler", dest="exit_signal_handler_off", action="store_true",
                   help="let SIGTERM kill the job without a checkpoint")


def _add_optimizer_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("optimizer")
    g.add_argument("--lr", type=float, required=True)
    g.add_argument("--min-lr", type=float, default=0.0)
    g.add_argument("--lr-decay-style", choices=["constant", "linear", "cosine", "inverse-square-root", "WSD"],
                   default="linear", help="Megatron-LM's default: linear")
    g.add_argument("--lr-warmup-iters", type=int, default=0)
    g.add_argument("--lr-warmup-fraction", type=float, default=None,
                   help="warm-up as a fraction of the decay iterations (instead of --lr-warmup-iters)")
    g.add_argument("--lr-warmup-samples", type=int, default=0, help="with --train-samples")
    g.add_argument("--lr-warmup-init", type=float, default=0.0, help="learning rate the warm-up starts from")
    g.add_argument("--lr-decay-iters", type=int, default=None, help="default --train-iters")
    g.add_argument("--lr-decay-samples", type=int, default=None, help="with --train-samples (default: all)")
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
    g.add_argument("--use-checkpoint-args", action="store_true",
                   help="take the model shape (and tokenizer) flags from the --load checkpoint")


def _add_logging_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("logging")
    g.add_argument("--tensorboard-dir", default=None)
    g.add_argument("--no-log-loss-scale-to-tensorboard", dest="log_loss_scale_to_tensorboard",
                   action="store_false")
    g.add_argument("--log-world-size-to-tensorboard", action="store_true")
    g.add_argument("--log-batch-size-to-tensorboard", action="store_true",
                   help="accepted for Megatron-LM; batch-size is always written")
    g.add_argument("--no-log-learnig-rate-to-tensorboard", dest="log_learning_rate_to_tensorboard",
                   action="store_false")  # sic: Megatron-LM's spelling
    g.add_argument("--wandb-project", default=None, help="W&B project (needs the wandb package)")
    g.add_argument("--wandb-exp-name", default=None, help="W&B run name")
    g.add_argument("--wandb-save-dir", default=None, help="W&B local directory (default {--save}/wandb)")


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
    out = []
    for flag, why in {**NOOP_FLAGS, **NOOP_VALUE_FLAGS}.items():
        value = getattr(args, _noop_dest(flag), None)
        if value not in (None, False):
            out.append(f"notice: {flag} is accepted for Megatron-LM compatibility and has no effect ({why})")
    return out


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
    from megatron_prealign.cli.tokenizer import add_tokenizer_args

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
    _add_noop_args(parser)
    add_tokenizer_args(parser, required=False)  # inferred from --vocab-file/--merge-file as Megatron-LM examples expect
    _add_prealign_args(parser)
    return parser


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
    from megatron_prealign.training import checkpointing

    it = checkpointing.read_latest_iteration(load_dir)
    if it is None:
        raise ValueError(f"--use-checkpoint-args: no checkpoint under --load {load_dir}")
    try:
        saved = checkpointing.read_meta(load_dir).get("args")
    except (FileNotFoundError, ValueError):
        saved = None
    if saved is None:
        common = os.path.join(checkpointing.checkpoint_dir(load_dir, it), "common.pt")
        if os.path.exists(common):
            import torch

            ns = torch.load(common, map_location="cpu", weights_only=False).get("args")
            saved = vars(ns) if ns is not None and not isinstance(ns, dict) else ns
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


def validate_args(args: argparse.Namespace, world_size: Optional[int]) -> None:
    """Reject inconsistent flags with a one-line ``ValueError`` naming the flag.

    Args:
        args: parsed flags.
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
    if args.group_query_attention:
        if args.num_query_groups < 1 or args.num_attention_heads % args.num_query_groups:
            raise ValueError(f"--num-query-groups {args.num_query_groups} must divide --num-attention-heads "
                             f"{args.num_attention_heads}")
        if args.num_query_groups % args.tensor_model_parallel_size:
            raise ValueError(f"--num-query-groups {args.num_query_groups} is not divisible by "
                             f"--tensor-model-parallel-size {args.tensor_model_parallel_size}")
    if args.bf16 and args.fp16:
        raise ValueError("--bf16 and --fp16 are mutually exclusive")
    if args.loss_scale is not None and args.loss_scale <= 0:
        raise ValueError(f"--loss-scale {args.loss_scale} must be > 0")
    if args.recompute_activations:
        if args.recompute_granularity == "full":
            raise ValueError("--recompute-activations is selective recompute; it contradicts --recompute-granularity full")
        args.recompute_granularity = "selective"
    if args.recompute_granularity == "full":
        if args.recompute_method is None:
            raise ValueError("--recompute-granularity full needs --recompute-method uniform or block")
        if args.recompute_num_layers < 1:
            raise ValueError("--recompute-num-layers must be >= 1")
        if args.prealign_mode != "none":
            # Pre-alignment reads every layer's output with forward hooks; under full recompute the
            # hooks see outputs computed without autograd, so the alignment loss would not train.
            raise ValueError(f"--recompute-granularity full cannot run the --prealign-mode {args.prealign_mode} "
                             "alignment loss (it reads per-layer outputs); use --recompute-activations "
                             "(selective) or --prealign-mode none")
    elif args.recompute_method is not None:
        raise ValueError(f"--recompute-method {args.recompute_method} needs --recompute-granularity full")
    if args.train_iters is None and args.train_samples is None:
        raise ValueError("give --train-iters or --train-samples")
    if args.train_iters is not None and args.train_samples is not None:
        raise ValueError("--train-iters and --train-samples are mutually exclusive")
    if args.train_iters is not None and (args.lr_decay_samples is not None or args.lr_warmup_samples):
        raise ValueError("--lr-decay-samples/--lr-warmup-samples need --train-samples (use --lr-decay-iters/"
                         "--lr-warmup-iters with --train-iters)")
    if args.lr_warmup_fraction is not None:
        if args.lr_warmup_iters or args.lr_warmup_samples:
            raise ValueError("--lr-warmup-fraction and --lr-warmup-iters/--lr-warmup-samples are mutually exclusive")
        if not 0.0 <= args.lr_warmup_fraction <= 1.0:
            raise ValueError(f"--lr-warmup-fraction {args.lr_warmup_fraction} must be in [0, 1]")
    if args.rampup_batch_size is not None:
        start, incr, samples = args.rampup_batch_size
        if start < 1 or incr < 1 or samples < 0:
            raise ValueError(f"--rampup-batch-size {start} {incr} {samples}: expected positive START and INCR")
        if args.global_batch_size is None:
            raise ValueError("--rampup-batch-size needs --global-batch-size")
    if args.exit_duration_in_mins is not None and args.exit_duration_in_mins < 1:
        raise ValueError("--exit-duration-in-mins must be >= 1")
    if args.use_checkpoint_args and not args.load:
        raise ValueError("--use-checkpoint-args needs --load")
    if args.wandb_project is not None and not args.wandb_project.strip():
        raise ValueError("--wandb-project is empty")
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
    if args.train_iters is not None and args.train_iters < 1:
        raise ValueError("--train-iters must be >= 1")
    if args.train_samples is not None and args.train_samples < 1:
        raise ValueError("--train-samples must be >= 1")
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
        if args.rampup_batch_size is not None:
            start, incr, _ = args.rampup_batch_size
            if start % (args.micro_batch_size * dp) or incr % (args.micro_batch_size * dp):
                raise ValueError(f"--rampup-batch-size: START {start} and INCR {incr} must be multiples of "
                                 f"--micro-batch-size x data-parallel size = {args.micro_batch_size * dp}")
        if args.train_samples is not None:
            args.train_iters = resolve_train_iters(args.train_samples, args.global_batch_size, args.rampup_batch_size)
            if args.train_iters < 1:
                raise ValueError(f"--train-samples {args.train_samples} is less than one global batch")
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
        if args.train_iters is not None and args.prealign_iters > args.train_iters:
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
        fp16=args.fp16,
        swiglu=args.swiglu,
        num_query_groups=args.num_query_groups if args.group_query_attention else None,
        recompute_granularity=args.recompute_granularity,
        recompute_method=args.recompute_method,
        recompute_num_layers=args.recompute_num_layers if args.recompute_granularity == "full" else None,
        sequence_parallel=args.sequence_parallel,
        transformer_impl=impl,
    )
    gbs = args.global_batch_size
    if args.train_samples is not None:
        # The schedule steps once per iteration: sample counts become the iterations that consume
        # them (ramp-up included), so decay and warm-up end where Megatron-LM's sample-based ones do.
        decay_samples = args.lr_decay_samples or args.train_samples
        warmup_samples = (args.lr_warmup_fraction * decay_samples if args.lr_warmup_fraction is not None
                          else args.lr_warmup_samples)
        rampup = args.rampup_batch_size
        # Without --lr-decay-samples the decay spans the LM stage (None: its own length, after a
        # separate alignment stage), as with --train-iters.
        decay_iters = resolve_train_iters(args.lr_decay_samples, gbs, rampup) if args.lr_decay_samples else None
        warmup_iters = resolve_train_iters(int(warmup_samples), gbs, rampup) if warmup_samples else 0
    else:
        decay_iters = args.lr_decay_iters
        warmup_iters = (round(args.lr_warmup_fraction * (decay_iters or args.train_iters))
                        if args.lr_warmup_fraction is not None else args.lr_warmup_iters)
    return PretrainConfig(
        model=model,
        parallel=ParallelConfig(
            tensor_model_parallel_size=tp,
            pipeline_model_parallel_size=args.pipeline_model_parallel_size,
            overlap_grad_reduce=args.overlap_grad_reduce,
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
            lr_warmup_iters=warmup_iters,
            lr_warmup_init=args.lr_warmup_init,
            lr_decay_iters=decay_iters,
            weight_decay=args.weight_decay,
            adam_beta1=args.adam_beta1,
            adam_beta2=args.adam_beta2,
            adam_eps=args.adam_eps,
            clip_grad=args.clip_grad,
            fp16=args.fp16,
            loss_scale=args.loss_scale,
            initial_loss_scale=args.initial_loss_scale,
            min_loss_scale=args.min_loss_scale,
            loss_scale_window=args.loss_scale_window,
            hysteresis=args.hysteresis,
            use_distributed_optimizer=args.use_distributed_optimizer,
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
            exit_duration_in_mins=args.exit_duration_in_mins,
            exit_signal_handler=not args.exit_signal_handler_off,
            rampup_batch_size=list(args.rampup_batch_size) if args.rampup_batch_size else None,
            train_samples=args.train_samples,
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
        logging=LoggingConfig(
            tensorboard_dir=args.tensorboard_dir,
            log_loss_scale=args.log_loss_scale_to_tensorboard,
            log_world_size=args.log_world_size_to_tensorboard,
            log_learning_rate=args.log_learning_rate_to_tensorboard,
            wandb_project=args.wandb_project,
            wandb_exp_name=args.wandb_exp_name,
            wandb_save_dir=args.wandb_save_dir or (os.path.join(args.save, "wandb") if args.save else None),
        ),
    )
