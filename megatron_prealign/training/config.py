"""Typed configuration of a pretraining job (library side of the CLI).

Each field that is a command-line flag names it in its ``metadata`` (Megatron-LM's spelling);
:mod:`megatron_prealign.cli.pretrain` generates the parser from these dataclasses, with each
field's docstring as its help, and builds one :class:`PretrainConfig` from the flags.
Everything below the entry point takes these dataclasses (or plain arguments), never an
``argparse.Namespace``. Every value check is in a ``__post_init__``, once; the checks that
relate two configs are in :meth:`PretrainConfig.__post_init__`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from megatron_prealign.model.gpt import GPTModelConfig
from megatron_prealign.model.prealign import PreAlignLossConfig

PREALIGN_MODES = ("init", "on-the-fly", "post", "none")
PREALIGN_SCHEDULES = ("separate", "shared")
LR_DECAY_STYLES = ("constant", "linear", "cosine", "inverse-square-root", "WSD")


def _flag(name: str, **meta) -> dict:
    return {"flag": name, **meta}


@dataclass
class ParallelConfig:
    """Model-parallel layout; the data-parallel size is what remains of the world size."""

    tensor_model_parallel_size: int = field(default=1, metadata=_flag("--tensor-model-parallel-size"))
    """Tensor-parallel ranks."""
    pipeline_model_parallel_size: int = field(default=1, metadata=_flag("--pipeline-model-parallel-size"))
    """Pipeline stages."""
    overlap_grad_reduce: bool = field(default=False, metadata=_flag("--overlap-grad-reduce"))
    """Overlap the data-parallel gradient reduce with the backward pass."""

    def __post_init__(self) -> None:
        if self.tensor_model_parallel_size < 1 or self.pipeline_model_parallel_size < 1:
            raise ValueError("--tensor-model-parallel-size and --pipeline-model-parallel-size must be >= 1")


Blend = Tuple[List[str], Optional[List[float]]]
"""Dataset prefixes and their weights (``None``: one prefix, or blend by dataset size): the
form megatron-core's ``BlendedMegatronDatasetConfig.blend`` takes."""

SPLIT_FLAGS = ("--train-data-path", "--valid-data-path", "--test-data-path")
"""The per-split data flags, in Megatron's split order (train, validation, test)."""


@dataclass
class DataConfig:
    """Where LM training sequences come from (Megatron ``.bin/.idx`` datasets).

    Exactly one of ``blend`` (one blend cut into train/valid/test by ``split``, Megatron's
    ``--data-path``) and ``blend_per_split`` (each split its own datasets, read whole,
    Megatron's ``--train-data-path``/``--valid-data-path``/``--test-data-path``) is set; both
    go to megatron-core's ``GPTDatasetConfig`` as they are.

    Raises:
        ValueError: both or neither of ``blend`` and ``blend_per_split``, or a malformed
            ``blend_per_split`` (one line naming the flag).
    """

    blend: Optional[Blend] = None
    """Dataset prefixes and weights from ``--data-path`` (Megatron blend syntax)."""
    blend_per_split: Optional[List[Optional[Blend]]] = None
    """``[train, valid, test]`` blends from ``--train-data-path``, ``--valid-data-path`` and
    ``--test-data-path`` (an entry is ``None`` when its flag is absent); each split uses its
    datasets whole (megatron-core ``BlendedMegatronDatasetConfig.blend_per_split``)."""
    split: Optional[str] = field(default="969,30,1", metadata=_flag("--split", default=None))
    """train,valid,test proportions of every --data-path dataset (default 969,30,1); unused with
    --train-data-path."""
    seq_length: int = field(default=1024, metadata=_flag("--seq-length", default=None))
    """Tokens per training sequence; required (or --use-checkpoint-args)."""
    data_cache_path: Optional[str] = field(default=None, metadata=_flag("--data-cache-path"))
    """Where the dataset index caches go; default next to the data."""
    mmap_bin_files: bool = field(default=True, metadata=_flag("--no-mmap-bin-files"))
    """Memory-map ``.bin`` files (--no-mmap-bin-files reads them instead)."""
    eod_mask_loss: bool = field(default=False, metadata=_flag("--eod-mask-loss"))
    """Do not predict EOD tokens."""
    num_workers: int = field(default=2, metadata=_flag("--num-workers"))
    """DataLoader worker processes per rank (0 = the main process)."""

    def __post_init__(self) -> None:
        if (self.blend is None) == (self.blend_per_split is None):
            raise ValueError("--data-path and --train-data-path: give exactly one of them")
        if self.blend_per_split is not None:
            if len(self.blend_per_split) != len(SPLIT_FLAGS):
                raise ValueError(f"blend_per_split: expected {len(SPLIT_FLAGS)} entries (train, valid, test), "
                                 f"got {len(self.blend_per_split)}")
            if self.blend_per_split[0] is None:
                raise ValueError("--train-data-path is required when --valid-data-path or --test-data-path is given")
        if self.num_workers < 0:
            raise ValueError("--num-workers must be >= 0")

    @property
    def per_split(self) -> bool:
        """Whether each split has its own datasets (``--train-data-path`` etc.)."""
        return self.blend_per_split is not None


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule."""

    lr: float = field(default=1.0e-4, metadata=_flag("--lr", required=True))
    """Peak learning rate."""
    min_lr: float = field(default=0.0, metadata=_flag("--min-lr"))
    """Final learning rate of the decay."""
    lr_decay_style: str = field(default="linear", metadata=_flag("--lr-decay-style", choices=LR_DECAY_STYLES))
    """Decay shape (Megatron-LM's default: linear)."""
    lr_warmup_iters: int = field(default=0, metadata=_flag("--lr-warmup-iters"))
    """Linear warm-up iterations; with the separate PreAlign schedule, of the LM stage (counted
    from its first iteration)."""
    lr_warmup_init: float = field(default=0.0, metadata=_flag("--lr-warmup-init"))
    """Learning rate the warm-up starts from."""
    lr_decay_iters: Optional[int] = field(default=None, metadata=_flag("--lr-decay-iters"))
    """Iterations the decay spans; default the LM stage's length (--train-iters minus the
    alignment stage under the separate schedule, else --train-iters)."""
    weight_decay: float = field(default=0.01, metadata=_flag("--weight-decay"))
    """Decoupled weight decay."""
    adam_beta1: float = field(default=0.9, metadata=_flag("--adam-beta1"))
    """Adam beta1."""
    adam_beta2: float = field(default=0.999, metadata=_flag("--adam-beta2"))
    """Adam beta2."""
    adam_eps: float = field(default=1.0e-8, metadata=_flag("--adam-eps"))
    """Adam epsilon."""
    clip_grad: float = field(default=1.0, metadata=_flag("--clip-grad"))
    """Global gradient-norm clip; 0 disables it."""
    fp16: bool = False
    """float16 training with loss scaling (set from --fp16 of the model)."""
    loss_scale: Optional[float] = field(default=None, metadata=_flag("--loss-scale"))
    """Static loss scale (a power of 2); default: dynamic loss scaling with --fp16."""
    initial_loss_scale: float = field(default=2.0 ** 32, metadata=_flag("--initial-loss-scale"))
    """Initial dynamic loss scale."""
    min_loss_scale: float = field(default=1.0, metadata=_flag("--min-loss-scale"))
    """Lowest dynamic loss scale."""
    loss_scale_window: float = field(default=1000, metadata=_flag("--loss-scale-window"))
    """Iterations without overflow before the dynamic scale grows."""
    hysteresis: int = field(default=2, metadata=_flag("--hysteresis"))
    """Overflows tolerated before the dynamic scale shrinks."""
    use_distributed_optimizer: bool = field(default=False, metadata=_flag("--use-distributed-optimizer"))
    """Shard optimizer state over data-parallel ranks (Megatron-Core's distributed optimizer; CUDA)."""

    def __post_init__(self) -> None:
        if self.loss_scale is not None and self.loss_scale <= 0:
            raise ValueError(f"--loss-scale {self.loss_scale} must be > 0")
        if self.lr_decay_style != "constant" and self.min_lr > self.lr:
            raise ValueError(f"--min-lr {self.min_lr} exceeds --lr {self.lr}")
        if self.clip_grad < 0:
            raise ValueError("--clip-grad must be >= 0")


@dataclass
class TrainingConfig:
    """Batch sizes, iteration counts and intervals."""

    micro_batch_size: int = field(metadata=_flag("--micro-batch-size", required=True))
    """Sequences per microbatch per data-parallel rank."""
    global_batch_size: int = field(metadata=_flag("--global-batch-size"))
    """Sequences per optimizer step over all data-parallel ranks; default micro batch size x
    data-parallel size."""
    train_iters: int = field(metadata=_flag("--train-iters"))
    """Optimizer steps of the whole job, alignment stages included: PreAlign runs
    --prealign-iters alignment steps and the rest LM steps (see
    :mod:`megatron_prealign.training.stages`)."""
    seed: int = field(default=1234, metadata=_flag("--seed"))
    """Seed of weights, dropout and data order."""
    log_interval: int = field(default=100, metadata=_flag("--log-interval"))
    """Iterations between log lines and TensorBoard points."""
    eval_interval: int = field(default=1000, metadata=_flag("--eval-interval"))
    """Iterations between validation runs; 0 disables."""
    eval_iters: int = field(default=100, metadata=_flag("--eval-iters"))
    """Validation batches per evaluation."""
    exit_interval: Optional[int] = field(default=None, metadata=_flag("--exit-interval"))
    """Stop (after saving) when the iteration is a multiple of this."""
    exit_duration_in_mins: Optional[int] = field(default=None, metadata=_flag("--exit-duration-in-mins"))
    """Save and exit once the job has run this many minutes."""
    exit_signal_handler: bool = field(default=True, metadata=_flag("--exit-signal-handler", negatable=True))
    """SIGTERM saves a checkpoint after the current iteration and exits with status 0 (always on
    here; --no-exit-signal-handler lets SIGTERM kill the job without a checkpoint)."""
    rampup_batch_size: Optional[List[int]] = field(default=None, metadata=_flag(
        "--rampup-batch-size", nargs=3, metavar=("START", "INCR", "SAMPLES")))
    """Grow the global batch from START by INCR over SAMPLES samples (Megatron-LM)."""
    train_samples: Optional[int] = field(default=None, metadata=_flag("--train-samples"))
    """Instead of --train-iters: samples of the whole job (iterations follow from the global
    batch and --rampup-batch-size)."""

    def __post_init__(self) -> None:
        if self.micro_batch_size < 1:
            raise ValueError("--micro-batch-size must be >= 1")
        if self.train_iters is not None and self.train_iters < 1:
            raise ValueError("--train-iters must be >= 1")
        if self.train_samples is not None and self.train_samples < 1:
            raise ValueError("--train-samples must be >= 1")
        if self.log_interval < 1:
            raise ValueError("--log-interval must be >= 1")
        if self.exit_duration_in_mins is not None and self.exit_duration_in_mins < 1:
            raise ValueError("--exit-duration-in-mins must be >= 1")
        if self.rampup_batch_size is not None:
            start, incr, samples = self.rampup_batch_size
            if start < 1 or incr < 1 or samples < 0:
                raise ValueError(f"--rampup-batch-size {start} {incr} {samples}: expected positive START and INCR")


@dataclass
class CheckpointConfig:
    """Megatron-LM checkpoint layout in torch_dist format."""

    save: Optional[str] = field(default=None, metadata=_flag("--save"))
    """Directory checkpoints are written to."""
    load: Optional[str] = field(default=None, metadata=_flag("--load"))
    """Directory a checkpoint is resumed from."""
    save_interval: Optional[int] = field(default=None, metadata=_flag("--save-interval"))
    """Iterations between checkpoints; the last iteration is always saved."""
    load_optim: bool = field(default=True, metadata=_flag("--no-load-optim"))
    """Restore optimizer and scheduler state (--no-load-optim turns it off)."""
    load_rng: bool = field(default=True, metadata=_flag("--no-load-rng"))
    """Restore RNG states when the parallel layout matches (--no-load-rng turns it off)."""

    def __post_init__(self) -> None:
        if self.save_interval is not None and self.save_interval < 1:
            raise ValueError("--save-interval must be >= 1")
        if self.save_interval is not None and not self.save:
            raise ValueError("--save-interval needs --save")


@dataclass
class PreAlignConfig:
    """The PreAlign stage schedule and its contrastive loss.

    Raises:
        ValueError: an inconsistent mode, stage length or alignment-stage schedule (one line
            naming the flag).
    """

    mode: str = field(default="init", metadata=_flag("--prealign-mode", choices=PREALIGN_MODES))
    """init = PreAlign (alignment stage first); on-the-fly = contrastive loss throughout; post =
    alignment stage after pretraining (with LM loss); none = joint training."""
    table: Optional[str] = field(default=None, metadata=_flag("--alignment-table", aliases=("--prealign-table",),
                                                              dest="prealign_table"))
    """Alignment table (JSONL); required unless --prealign-mode none."""
    iters: int = field(default=0, metadata=_flag("--prealign-iters"))
    """Iterations of the alignment stage (first for init, last for post)."""
    loss: PreAlignLossConfig = field(default_factory=PreAlignLossConfig)
    """Temperature, levels and weights of the alignment loss."""
    schedule: str = field(default="separate", metadata=_flag("--prealign-schedule", choices=PREALIGN_SCHEDULES))
    """separate (default, the paper's stage boundary): the init/post alignment stage has its own
    LR schedule (--prealign-lr*), and at the boundary the Adam state is reset and the LM stage
    runs its own --lr-warmup-iters and decay over --lr-decay-iters (default its own length);
    shared: one schedule and one Adam state over the whole job. --train-iters counts all
    optimizer steps, the alignment stage included."""
    lr: Optional[float] = field(default=None, metadata=_flag("--prealign-lr"))
    """Peak LR of the alignment stage (separate schedule; default --lr)."""
    min_lr: Optional[float] = field(default=None, metadata=_flag("--prealign-min-lr"))
    """Final LR of the alignment stage (separate schedule; default --min-lr)."""
    lr_warmup_iters: Optional[int] = field(default=None, metadata=_flag("--prealign-lr-warmup-iters"))
    """Warm-up of the alignment stage (separate schedule; default --lr-warmup-iters capped at half
    of --prealign-iters)."""
    lr_decay_style: Optional[str] = field(default=None, metadata=_flag("--prealign-lr-decay-style",
                                                                       choices=LR_DECAY_STYLES))
    """Decay of the alignment stage over --prealign-iters (separate schedule; default
    --lr-decay-style)."""
    words_per_batch: int = field(default=256, metadata=_flag("--prealign-words-per-batch"))
    """Source words per alignment microbatch, each with its translations."""
    clone_perfect_init: bool = field(default=False, metadata=_flag("--clone-perfect-init"))
    """En-Clone upper bound: embedding rows id+V start equal to rows id."""
    clone_base_vocab_size: Optional[int] = None
    """``V``, the base vocabulary of the En-Clone tokenizer (set from the tokenizer)."""

    def __post_init__(self) -> None:
        mode = self.mode
        if mode not in PREALIGN_MODES:
            raise ValueError(f"--prealign-mode {mode}: expected one of {', '.join(PREALIGN_MODES)}")
        if mode != "none" and not self.table:
            raise ValueError(f"--prealign-mode {mode} needs --alignment-table (alias --prealign-table; use --prealign-mode none for joint "
                             "training)")
        if mode in ("init", "post") and self.iters < 1:
            raise ValueError(f"--prealign-mode {mode} needs --prealign-iters >= 1")
        if mode in ("none", "on-the-fly") and self.iters:
            raise ValueError(f"--prealign-iters has no effect with --prealign-mode {mode}; leave it at 0")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"--prealign-lr {self.lr} must be > 0")
        if self.lr_warmup_iters is not None and mode in ("init", "post") and \
                not 0 <= self.lr_warmup_iters < self.iters:
            raise ValueError(f"--prealign-lr-warmup-iters {self.lr_warmup_iters} must be within "
                             f"0..{self.iters - 1} (--prealign-iters {self.iters})")
        if self.words_per_batch < 2:
            raise ValueError(f"--prealign-words-per-batch {self.words_per_batch}: a contrastive batch "
                             "needs at least 2 words (one positive pair and a negative)")


@dataclass
class LoggingConfig:
    """Where progress goes besides stdout."""

    tensorboard_dir: Optional[str] = field(default=None, metadata=_flag("--tensorboard-dir"))
    """TensorBoard event directory; written by the last rank."""
    log_loss_scale: bool = field(default=True, metadata=_flag("--no-log-loss-scale-to-tensorboard",
                                                              dest="log_loss_scale_to_tensorboard"))
    """Write the loss-scale series (--no-log-loss-scale-to-tensorboard turns it off)."""
    log_world_size: bool = field(default=False, metadata=_flag("--log-world-size-to-tensorboard"))
    """Write the world-size series."""
    log_learning_rate: bool = field(default=True, metadata=_flag(
        "--no-log-learnig-rate-to-tensorboard", dest="log_learning_rate_to_tensorboard"))  # sic: Megatron-LM's spelling
    """Write the learning-rate series (--no-log-learnig-rate-to-tensorboard turns it off)."""
    wandb_project: Optional[str] = field(default=None, metadata=_flag("--wandb-project"))
    """W&B project (needs the wandb package); none: no W&B."""
    wandb_exp_name: Optional[str] = field(default=None, metadata=_flag("--wandb-exp-name"))
    """W&B run name."""
    wandb_save_dir: Optional[str] = field(default=None, metadata=_flag("--wandb-save-dir"))
    """W&B local directory (default {--save}/wandb)."""

    def __post_init__(self) -> None:
        if self.wandb_project is not None and not self.wandb_project.strip():
            raise ValueError("--wandb-project is empty")


@dataclass
class PretrainConfig:
    """Everything a pretraining job needs, built once from the command line.

    Raises:
        ValueError: two parts that do not fit together (one line naming the flags).
    """

    model: GPTModelConfig
    """Model shape and numerics."""
    parallel: ParallelConfig
    """Tensor/pipeline layout."""
    data: DataConfig
    """LM datasets."""
    optim: OptimConfig
    """Optimizer and LR schedule."""
    training: TrainingConfig
    """Batches, iterations, intervals."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Save/load."""
    prealign: PreAlignConfig = field(default_factory=PreAlignConfig)
    """Alignment stage and loss."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """TensorBoard."""

    def __post_init__(self) -> None:
        m, tp, pp = self.model, self.parallel.tensor_model_parallel_size, self.parallel.pipeline_model_parallel_size
        seq, pre = self.data.seq_length, self.prealign
        if seq > m.max_sequence_length:
            raise ValueError(f"--seq-length {seq} exceeds --max-position-embeddings {m.max_sequence_length}")
        if m.num_attention_heads % tp:
            raise ValueError(f"--num-attention-heads {m.num_attention_heads} is not divisible by "
                             f"--tensor-model-parallel-size {tp}")
        if m.num_query_groups is not None and m.num_query_groups % tp:
            raise ValueError(f"--num-query-groups {m.num_query_groups} is not divisible by "
                             f"--tensor-model-parallel-size {tp}")
        if m.num_layers % pp:
            raise ValueError(f"--num-layers {m.num_layers} is not divisible by --pipeline-model-parallel-size {pp}")
        if m.sequence_parallel and tp == 1:
            raise ValueError("--sequence-parallel needs --tensor-model-parallel-size > 1")
        if m.sequence_parallel and seq % tp:
            raise ValueError(f"--sequence-parallel: --seq-length {seq} is not divisible by TP {tp}")
        if m.recompute_granularity == "full" and pre.mode != "none":
            # Pre-alignment reads every layer's output with forward hooks; under full recompute the
            # hooks see outputs computed without autograd, so the alignment loss would not train.
            raise ValueError(f"--recompute-granularity full cannot run the --prealign-mode {pre.mode} "
                             "alignment loss (it reads per-layer outputs); use --recompute-activations "
                             "(selective) or --prealign-mode none")
        train_iters = self.training.train_iters
        if pre.mode in ("init", "post") and train_iters is not None and pre.iters > train_iters:
            raise ValueError(f"--prealign-iters {pre.iters} exceeds --train-iters {train_iters} "
                             "(--train-iters counts the whole job, alignment stage included)")
        prealign_lr = pre.lr if pre.lr is not None else self.optim.lr
        if pre.min_lr is not None and not 0 <= pre.min_lr <= prealign_lr:
            raise ValueError(f"--prealign-min-lr {pre.min_lr} must be within 0..{prealign_lr} (--prealign-lr)")

    def to_dict(self) -> dict:
        """JSON-serialisable form (recorded in ``prealign_meta.json``)."""
        return dataclasses.asdict(self)
