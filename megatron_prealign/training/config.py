"""Typed configuration of a pretraining job (library side of the CLI).

``megatron_prealign.cli.pretrain`` turns Megatron-style command-line flags into one
:class:`PretrainConfig`; everything below the entry point takes these dataclasses (or plain
arguments), never an ``argparse.Namespace``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from megatron_prealign.model.gpt import GPTModelConfig

PREALIGN_MODES = ("init", "on-the-fly", "post", "none")
PREALIGN_SCHEDULES = ("separate", "shared")
LEVEL_REDUCTIONS = ("sum", "mean")


@dataclass
class ParallelConfig:
    """Model-parallel layout; the data-parallel size is what remains of the world size."""

    tensor_model_parallel_size: int = 1
    """Tensor-parallel ranks (``--tensor-model-parallel-size``)."""
    pipeline_model_parallel_size: int = 1
    """Pipeline stages (``--pipeline-model-parallel-size``)."""
    overlap_grad_reduce: bool = False
    """Overlap the data-parallel gradient reduce with the backward (``--overlap-grad-reduce``)."""


Blend = Tuple[List[str], Optional[List[float]]]
"""Dataset prefixes and their weights (``None``: one prefix, or blend by dataset size)."""

SPLIT_FLAGS = ("--train-data-path", "--valid-data-path", "--test-data-path")
"""The per-split data flags, in Megatron's split order (train, validation, test)."""


@dataclass
class DataConfig:
    """Where LM training sequences come from (Megatron ``.bin/.idx`` datasets).

    Exactly one of ``blend`` (one blend cut into train/valid/test by ``split``, Megatron's
    ``--data-path``) and ``blend_per_split`` (each split its own datasets, read whole,
    Megatron's ``--train-data-path``/``--valid-data-path``/``--test-data-path``) is set.

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
    split: Optional[str] = "969,30,1"
    """Train/valid/test split of each ``blend`` dataset (``--split``); unused with
    ``blend_per_split``."""
    seq_length: int = 1024
    """Tokens per training sequence (``--seq-length``)."""
    data_cache_path: Optional[str] = None
    """Where the dataset index caches go (``--data-cache-path``); default next to the data."""
    mmap_bin_files: bool = True
    """Memory-map ``.bin`` files (``--no-mmap-bin-files`` turns it off)."""
    eod_mask_loss: bool = False
    """Do not predict EOD tokens (``--eod-mask-loss``)."""
    num_workers: int = 2
    """DataLoader worker processes per rank (``--num-workers``); 0 loads in the main process."""

    def __post_init__(self) -> None:
        if (self.blend is None) == (self.blend_per_split is None):
            raise ValueError("--data-path and --train-data-path: give exactly one of them")
        if self.blend_per_split is not None:
            if len(self.blend_per_split) != len(SPLIT_FLAGS):
                raise ValueError(f"blend_per_split: expected {len(SPLIT_FLAGS)} entries (train, valid, test), "
                                 f"got {len(self.blend_per_split)}")
            if self.blend_per_split[0] is None:
                raise ValueError("--train-data-path is required when --valid-data-path or --test-data-path is given")

    @property
    def per_split(self) -> bool:
        """Whether each split has its own datasets (``--train-data-path`` etc.)."""
        return self.blend_per_split is not None


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule (Megatron's flag names in the docstrings)."""

    lr: float = 1.0e-4
    """Peak learning rate (``--lr``)."""
    min_lr: float = 0.0
    """Final learning rate of the decay (``--min-lr``)."""
    lr_decay_style: str = "linear"
    """``constant``, ``linear``, ``cosine``, ``inverse-square-root`` or ``WSD`` (``--lr-decay-style``)."""
    lr_warmup_iters: int = 0
    """Linear warm-up iterations (``--lr-warmup-iters``); with the ``separate`` PreAlign schedule,
    of the LM stage (counted from its first iteration)."""
    lr_warmup_init: float = 0.0
    """Learning rate the warm-up starts from (``--lr-warmup-init``)."""
    lr_decay_iters: Optional[int] = None
    """Iterations the decay spans (``--lr-decay-iters``); ``None`` means the LM stage's length
    (``train_iters`` minus the alignment stage under the ``separate`` schedule, else
    ``train_iters``)."""
    weight_decay: float = 0.01
    """Decoupled weight decay (``--weight-decay``)."""
    adam_beta1: float = 0.9
    """Adam beta1 (``--adam-beta1``)."""
    adam_beta2: float = 0.999
    """Adam beta2 (``--adam-beta2``)."""
    adam_eps: float = 1.0e-8
    """Adam epsilon (``--adam-eps``)."""
    clip_grad: float = 1.0
    """Global gradient-norm clip; 0 disables it (``--clip-grad``)."""
    fp16: bool = False
    """float16 training with loss scaling (``--fp16``)."""
    loss_scale: Optional[float] = None
    """Static loss scale (``--loss-scale``); ``None`` = dynamic scaling with fp16."""
    initial_loss_scale: float = 2.0 ** 32
    """Initial dynamic loss scale (``--initial-loss-scale``)."""
    min_loss_scale: float = 1.0
    """Lowest dynamic loss scale (``--min-loss-scale``)."""
    loss_scale_window: float = 1000
    """Iterations without overflow before the dynamic scale doubles (``--loss-scale-window``)."""
    hysteresis: int = 2
    """Overflows tolerated before the dynamic scale halves (``--hysteresis``)."""
    use_distributed_optimizer: bool = False
    """Shard optimizer state over data-parallel ranks (``--use-distributed-optimizer``; CUDA)."""


@dataclass
class TrainingConfig:
    """Batch sizes, iteration counts and intervals."""

    micro_batch_size: int
    """Sequences per microbatch per data-parallel rank (``--micro-batch-size``)."""
    global_batch_size: int
    """Sequences per optimizer step over all data-parallel ranks (``--global-batch-size``)."""
    train_iters: int
    """Optimizer steps of the whole job, pre-/post-alignment stages included (``--train-iters``):
    PreAlign runs ``prealign_iters`` alignment steps and ``train_iters - prealign_iters`` LM steps
    (see :mod:`megatron_prealign.training.stages`)."""
    seed: int = 1234
    """Seed of weights, dropout and data order (``--seed``)."""
    log_interval: int = 100
    """Iterations between log lines and TensorBoard points (``--log-interval``)."""
    eval_interval: int = 1000
    """Iterations between validation runs; 0 disables (``--eval-interval``)."""
    eval_iters: int = 100
    """Validation batches per evaluation (``--eval-iters``)."""
    exit_interval: Optional[int] = None
    """Stop (after saving) when the iteration is a multiple of this (``--exit-interval``)."""
    exit_duration_in_mins: Optional[int] = None
    """Save and stop once the job has run this many minutes (``--exit-duration-in-mins``)."""
    exit_signal_handler: bool = True
    """SIGTERM saves a checkpoint after the current iteration and exits with status 0
    (``--no-exit-signal-handler`` turns it off)."""
    rampup_batch_size: Optional[List[int]] = None
    """``[start, increment, samples]`` global-batch ramp-up (``--rampup-batch-size``)."""
    train_samples: Optional[int] = None
    """The job's length in samples when given as ``--train-samples`` (``train_iters`` follows)."""


@dataclass
class CheckpointConfig:
    """Megatron-LM checkpoint layout in torch_dist format."""

    save: Optional[str] = None
    """Directory checkpoints are written to (``--save``)."""
    load: Optional[str] = None
    """Directory a checkpoint is resumed from (``--load``)."""
    save_interval: Optional[int] = None
    """Iterations between checkpoints (``--save-interval``); the last iteration is always saved."""
    load_optim: bool = True
    """Restore optimizer and scheduler state (``--no-load-optim`` turns it off)."""
    load_rng: bool = True
    """Restore RNG states when the parallel layout matches (``--no-load-rng`` turns it off)."""


@dataclass
class PreAlignConfig:
    """The PreAlign stage schedule and its contrastive loss."""

    mode: str = "init"
    """``init`` (PreAlign: alignment stage first), ``on-the-fly`` (alignment loss throughout),
    ``post`` (alignment stage after pretraining, with LM loss) or ``none`` (joint training)."""
    table: Optional[str] = None
    """Alignment table JSONL (``--prealign-table``); required unless mode is ``none``."""
    iters: int = 0
    """Iterations of the alignment stage (``--prealign-iters``) for ``init`` and ``post``."""
    temperature: float = 0.1
    """Temperature of the supervised contrastive loss (``--prealign-temperature``)."""
    levels: Optional[List[int]] = None
    """Representation levels aligned: 0 = input embedding, 1..L = layers, L+1 = output
    embedding; ``None`` = all (``--prealign-levels``)."""
    lm_weight: float = 1.0
    """Weight of the auxiliary LM loss in the ``init``/``post`` alignment stage
    (``--prealign-lm-weight``); 0 runs the alignment stage without LM batches."""
    align_weight: float = 1.0
    """Weight of the alignment loss whenever it is active (``--prealign-weight``, alias
    ``--prealign-align-weight``)."""
    level_reduction: str = "sum"
    """How the per-level losses combine: ``sum`` (paper Eq. 3) or ``mean`` (the authors'
    released code) (``--prealign-level-reduction``); see docs/prealign-weighting.md."""
    schedule: str = "separate"
    """``separate`` (default, the paper's stage boundary: the alignment stage has its own LR
    schedule, and the optimizer state is reset when the LM stage starts, which runs its own
    warm-up and decay) or ``shared`` (one schedule and one Adam state over the whole job)
    (``--prealign-schedule``); only ``init`` and ``post`` have a boundary."""
    lr: Optional[float] = None
    """Peak LR of the alignment stage (``--prealign-lr``); ``None`` = ``--lr``."""
    min_lr: Optional[float] = None
    """Final LR of the alignment stage's decay (``--prealign-min-lr``); ``None`` = ``--min-lr``."""
    lr_warmup_iters: Optional[int] = None
    """Warm-up iterations of the alignment stage (``--prealign-lr-warmup-iters``); ``None`` =
    ``--lr-warmup-iters`` capped at half the stage."""
    lr_decay_style: Optional[str] = None
    """Decay style of the alignment stage over its ``iters`` (``--prealign-lr-decay-style``);
    ``None`` = ``--lr-decay-style``."""
    words_per_batch: int = 256
    """Source words per alignment microbatch, each with its translations
    (``--prealign-words-per-batch``)."""
    clone_perfect_init: bool = False
    """En-Clone upper bound: copy input/output embedding rows ``i`` to ``i + V`` at
    initialisation (``--clone-perfect-init``)."""
    clone_base_vocab_size: Optional[int] = None
    """``V``, the base vocabulary of the En-Clone tokenizer (set from the tokenizer)."""


@dataclass
class LoggingConfig:
    """Where progress goes besides stdout."""

    tensorboard_dir: Optional[str] = None
    """TensorBoard event directory (``--tensorboard-dir``); written by the last rank."""
    log_loss_scale: bool = True
    """Write ``loss-scale`` series (``--no-log-loss-scale-to-tensorboard`` turns it off)."""
    log_world_size: bool = False
    """Write ``world-size`` series (``--log-world-size-to-tensorboard``)."""
    log_learning_rate: bool = True
    """Write ``learning-rate`` series (``--no-log-learnig-rate-to-tensorboard`` turns it off)."""
    wandb_project: Optional[str] = None
    """Weights & Biases project (``--wandb-project``); ``None`` = no W&B."""
    wandb_exp_name: Optional[str] = None
    """W&B run name (``--wandb-exp-name``)."""
    wandb_save_dir: Optional[str] = None
    """W&B local directory (``--wandb-save-dir``, default ``{--save}/wandb``)."""


@dataclass
class PretrainConfig:
    """Everything a pretraining job needs, built once from the command line."""

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

    def to_dict(self) -> dict:
        """JSON-serialisable form (recorded in ``prealign_meta.json``)."""
        return dataclasses.asdict(self)
