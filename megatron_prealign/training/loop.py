"""The training loop: Megatron-Core pieces put together as Megatron-LM's ``pretrain()`` does.

Per iteration: zero the DDP grad buffers; run ``get_forward_backward_func()`` over the step's
microbatches — when the stage has an alignment loss, one call for its pre-alignment microbatches
(one word per row: their own ``[words, word length]`` shape), and one for the LM microbatches
(``[mbs, seq]``), gradients accumulating in the DDP buffers, each kind averaged over its own
count (``model.prealign.forward_backward_step``); ``finalize_model_grads`` once (DP all-reduce,
SP norm all-reduce, tied-embedding all-reduce across PP); optimizer step (clipping inside);
scheduler step.

LM loss is Megatron's masked mean over tokens, ``sum(loss * loss_mask) / sum(loss_mask)`` per
microbatch (the forward step is ``model.prealign.PreAlignForwardStep``), where ``loss_mask``
(from ``MaskedGPTDataset``) is zero on targets that the input-only codeswitcher substituted:
those contribute exactly zero loss and zero gradient.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from megatron.core import parallel_state
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.transformer.module import Float16Module
from megatron.core.utils import get_model_config, unwrap_model

from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model
from megatron_prealign.model.prealign import (
    LevelLossTracker,
    PreAlignLossConfig,
    forward_backward_step,
)
from megatron_prealign.platform import device
from megatron_prealign.training.config import OptimConfig
from megatron_prealign.training.stages import ScheduleSegment, Stage, lm_segment, segment_index_at

logger = logging.getLogger(__name__)

__all__ = [
    "build_model",
    "build_optimizer_and_scheduler",
    "build_scheduler",
    "reset_optimizer_state_",
    "schedule_for_iteration",
    "clone_perfect_init_",
    "train_step",
    "evaluate",
    "TrainState",
]


@dataclass
class TrainState:
    """Position of the job; saved in every checkpoint."""

    iteration: int = 0
    """Completed optimizer steps."""
    consumed_train_samples: int = 0
    """LM training sequences consumed (all DP ranks)."""
    consumed_valid_samples: int = 0
    """LM validation sequences consumed."""
    align: Dict[str, Any] = field(default_factory=dict)
    """Alignment sampler position."""
    stage: str = ""
    """Stage of the last completed iteration."""

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a (copied) dict, in declaration order."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainState":
        """From :meth:`to_dict` output; absent keys keep their defaults, values take the field's type."""
        return cls(**{k: type(v)(d[k]) for k, v in cls().to_dict().items() if d.get(k) is not None})


def build_model(cfg: GPTModelConfig, overlap_grad_reduce: bool = False, use_distributed_optimizer: bool = False
                ) -> List[DistributedDataParallel]:
    """This rank's GPTModel wrapped in Megatron-Core DDP (fp32 grad buffers).

    With ``bf16``/``fp16`` the model is first wrapped in Megatron-Core's ``Float16Module`` (inputs
    cast on the first stage, outputs to fp32 on the last), as Megatron-LM does.

    Args:
        cfg: model shape and numerics.
        overlap_grad_reduce: start each bucket's DP reduce during the backward; the schedule then
            defers it to the last microbatch through ``config.no_sync_func`` (Megatron-LM's wiring).
        use_distributed_optimizer: lay out the grad buffers for the distributed optimizer
            (reduce-scatter instead of all-reduce); must match the optimizer's setting.
    """
    model = build_gpt_model(cfg)
    if cfg.bf16 or cfg.fp16:
        model = Float16Module(model.config, model)
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=overlap_grad_reduce,
        use_distributed_optimizer=use_distributed_optimizer,
    )
    ddp = DistributedDataParallel(config=model.config, ddp_config=ddp_config, module=model)
    ddp.broadcast_params()
    if overlap_grad_reduce:
        ddp.config.no_sync_func = ddp.no_sync
        ddp.config.grad_sync_func = ddp.start_grad_sync
    return [ddp]


def build_optimizer_and_scheduler(cfg: OptimConfig, model: List[torch.nn.Module], train_iters: int, bf16: bool,
                                  segment: Optional[ScheduleSegment] = None,
                                  ) -> Tuple[Any, OptimizerParamScheduler]:
    """Megatron's Adam(W) (``get_megatron_optimizer``) and ``OptimizerParamScheduler`` in iterations.

    Args:
        cfg: optimizer hyper-parameters (and the LR schedule when ``segment`` is ``None``).
        model: the DDP-wrapped model chunks.
        train_iters: iterations of the job (the schedule's length when ``segment`` is ``None``).
        bf16: bf16 training (Megatron's mixed-precision optimizer).
        segment: the schedule segment the scheduler follows (its iteration 0 is the segment's
            first); ``None`` = one segment over ``train_iters`` from ``cfg``.
    """
    # OptimConfig's fields carry megatron-core's OptimizerConfig names and meanings: passed as they are.
    same = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(OptimizerConfig) if hasattr(cfg, f.name)}
    opt_config = OptimizerConfig(**{
        **same, "optimizer": "adam", "bf16": bf16,
        "params_dtype": torch.bfloat16 if bf16 else torch.float16 if cfg.fp16 else torch.float32})
    optimizer = get_megatron_optimizer(opt_config, model)
    for chunk in model:  # as Megatron-LM: the schedule scales the loss for (b)f16 loss scaling
        chunk.config.grad_scale_func = optimizer.scale_loss
    if segment is None:  # the LM stage's schedule over the whole job
        segment = lm_segment("all", 0, train_iters, cfg)
    return optimizer, build_scheduler(optimizer, segment, cfg.weight_decay)


def build_scheduler(optimizer: Any, segment: ScheduleSegment, weight_decay: float) -> OptimizerParamScheduler:
    """Megatron's ``OptimizerParamScheduler`` for one schedule segment, at its step 0.

    Constructing it sets the param groups' LR to the segment's first value (0 with warm-up).
    Megatron's scheduler reads each param group's ``max_lr``/``min_lr`` before its own, so they
    are set to the segment's here.
    """
    decay = segment.decay_iters
    for group in optimizer.param_groups:
        group["max_lr"] = segment.lr
        group["min_lr"] = segment.min_lr
    return OptimizerParamScheduler(
        optimizer,
        init_lr=segment.warmup_init if segment.warmup_iters > 0 else segment.lr,
        max_lr=segment.lr,
        min_lr=segment.min_lr,
        lr_warmup_steps=segment.warmup_iters,
        lr_decay_steps=max(decay, segment.warmup_iters + 1) if segment.decay_style != "constant" else decay,
        lr_decay_style=segment.decay_style,
        start_wd=weight_decay,
        end_wd=weight_decay,
        wd_incr_steps=max(1, segment.iters),
        wd_incr_style="constant",
        use_checkpoint_opt_param_scheduler=True,
        override_opt_param_scheduler=False,
    )


def _inner_optimizers(optimizer: Any) -> List[torch.optim.Optimizer]:
    """The ``torch.optim`` optimizers under Megatron's (chained / mixed-precision) wrappers."""
    chained = getattr(optimizer, "chained_optimizers", None) or [optimizer]
    return [getattr(opt, "optimizer", opt) for opt in chained]


@torch.no_grad()
def reset_optimizer_state_(optimizer: Any) -> None:
    """Forget Adam's moments and step counts (a fresh optimizer on the same parameters).

    The param groups, and so the references to the model's (or mixed precision's main)
    parameters and the DDP grad buffers, stay as they are; the state is rebuilt lazily (zero
    moments, step 1) by the next ``step()``, as for a newly constructed optimizer.
    """
    for opt in _inner_optimizers(optimizer):
        opt.state = defaultdict(dict)
        for group in opt.param_groups:
            group.pop("step", None)  # fused Adams keep the step count in the group


def schedule_for_iteration(iteration: int, segments: List[ScheduleSegment], held: int, optimizer: Any,
                           scheduler: OptimizerParamScheduler, weight_decay: float,
                           ) -> Tuple[OptimizerParamScheduler, int, bool]:
    """Cross a stage boundary when the step after ``iteration`` starts a new schedule segment.

    Args:
        iteration: completed steps.
        segments: the job's segments (:func:`~megatron_prealign.training.stages.schedule_segments`).
        held: index of the segment the optimizer state and ``scheduler`` belong to.
        optimizer: Megatron optimizer; its state is reset on crossing.
        scheduler: the current scheduler.
        weight_decay: ``--weight-decay``.

    Returns:
        ``(scheduler, held, crossed)``: a fresh scheduler at the new segment's step 0 and the new
        index when a boundary was crossed, else the inputs unchanged.
    """
    index = segment_index_at(iteration, segments)
    if index == held:
        return scheduler, held, False
    reset_optimizer_state_(optimizer)
    return build_scheduler(optimizer, segments[index], weight_decay), index, True


@torch.no_grad()
def _clone_rows_(weight: torch.Tensor, base_vocab: int) -> None:
    """Copy rows ``[0, V)`` of a vocab-parallel weight to ``[V, 2V)`` across the TP group."""
    tp = parallel_state.get_tensor_model_parallel_world_size()
    if tp > 1:
        group = parallel_state.get_tensor_model_parallel_group()
        parts = [torch.empty_like(weight) for _ in range(tp)]
        torch.distributed.all_gather(parts, weight.contiguous(), group=group)
        full = torch.cat(parts, dim=0)
    else:
        full = weight.detach().clone()
    if 2 * base_vocab > full.shape[0]:
        raise ValueError(f"--clone-perfect-init: model vocabulary {full.shape[0]} is smaller than 2 x {base_vocab}")
    full[base_vocab:2 * base_vocab] = full[:base_vocab]
    rank = parallel_state.get_tensor_model_parallel_rank()
    rows = weight.shape[0]
    weight.copy_(full[rank * rows:(rank + 1) * rows])


def clone_perfect_init_(model: List[torch.nn.Module], base_vocab: int) -> None:
    """En-Clone upper bound: input and output embedding row ``i + V`` := row ``i``.

    With tied embeddings the shared matrix is copied on every stage that holds it (first and,
    under PP, last), so the copies stay equal.
    """
    m = unwrap_model(model[0])
    if getattr(m, "pre_process", False):
        _clone_rows_(m.embedding.word_embeddings.weight, base_vocab)
    if getattr(m, "post_process", False):
        if not m.share_embeddings_and_output_weights:
            _clone_rows_(m.output_layer.weight, base_vocab)
        elif not m.pre_process:  # the last stage's copy of the tied matrix
            _clone_rows_(m.shared_embedding_or_output_weight(), base_vocab)


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------


def _reduce_lm_reports(reports: List[Dict[str, torch.Tensor]]) -> Dict[str, float]:
    """Token-weighted LM loss over microbatches (here) and DP ranks (all-reduce).

    Each report holds ``"lm loss": [sum of masked token losses, number of unmasked tokens]``
    (pre-alignment microbatches report zeros), as Megatron-LM's loss functions do.
    """
    if not reports:
        return {}
    total = torch.zeros(2, dtype=torch.float64)
    for r in reports:
        total += r["lm loss"].detach().double().cpu().reshape(-1)[:2]
    if parallel_state.get_data_parallel_world_size() > 1:
        buf = total.to(device())
        torch.distributed.all_reduce(buf, group=parallel_state.get_data_parallel_group())
        total = buf.cpu()
    if total[1] <= 0:
        return {}
    return {"lm loss": float(total[0] / total[1])}


def _broadcast_from_last_stage(losses: Dict[str, float], keys: List[str]) -> Dict[str, float]:
    """Make the last PP stage's reduced losses known to every rank of the pipeline."""
    if parallel_state.get_pipeline_model_parallel_world_size() == 1:
        return losses
    values = torch.tensor([losses.get(k, float("nan")) for k in keys], dtype=torch.float64, device=device())
    src = parallel_state.get_pipeline_model_parallel_last_rank()
    torch.distributed.broadcast(values, src=src, group=parallel_state.get_pipeline_model_parallel_group())
    return {k: float(v) for k, v in zip(keys, values.cpu().tolist()) if not math.isnan(v)}


def train_step(
    stage: Stage,
    model: List[torch.nn.Module],
    optimizer: Any,
    scheduler: OptimizerParamScheduler,
    lm_iterator: Optional[Iterator],
    num_lm_microbatches: int,
    seq_length: int,
    micro_batch_size: int,
    align_stream: Any = None,
    num_align_microbatches: int = 1,
    loss_config: Optional[PreAlignLossConfig] = None,
    tracker: Optional[LevelLossTracker] = None,
) -> Tuple[Dict[str, float], Optional[float], bool]:
    """One optimizer step of ``stage``: pipeline schedules over its alignment and LM microbatches.

    The step minimises ``stage.lm_weight`` x (mean LM loss over the LM microbatches) +
    ``stage.align_weight`` x (mean over the alignment microbatches of the SupCon summed, or
    averaged, over levels),
    with :class:`~megatron_prealign.model.prealign.PreAlignForwardStep` as the forward step.

    Returns:
        ``(losses, grad_norm, skipped)``: the LM loss (token-weighted over microbatches and DP
        ranks, known on every rank), the global grad norm, and whether the update was skipped.
    """
    num_lm = num_lm_microbatches if stage.has_lm else 0
    num_align = num_align_microbatches if stage.has_align else 0
    align_batches = list(align_stream.take(num_align)) if num_align else []
    for chunk in model:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    out = forward_backward_step(
        model, loss_config or PreAlignLossConfig(), lm_iterator if num_lm else None, num_lm, seq_length,
        micro_batch_size, align_batches=align_batches, tracker=tracker, weights=(stage.lm_weight, stage.align_weight),
    )
    losses = _reduce_lm_reports(out) if parallel_state.is_pipeline_last_stage() else {}
    if get_model_config(model[0]).finalize_model_grads_func is None:  # else the last schedule call ran it
        finalize_model_grads(model)
    update_successful, grad_norm, _ = optimizer.step()
    if update_successful:
        scheduler.step(increment=1)
    losses = _broadcast_from_last_stage(losses, ["lm loss"] if num_lm else [])
    return losses, (float(grad_norm) if grad_norm is not None else None), not update_successful


@torch.no_grad()
def evaluate(model: List[torch.nn.Module], valid_iterator: Iterator, eval_iters: int, num_lm_microbatches: int,
             seq_length: int, micro_batch_size: int) -> Dict[str, float]:
    """Validation LM loss (token-weighted) over ``eval_iters`` global batches, forward only."""
    for chunk in model:
        chunk.eval()
    reports: List[Dict[str, torch.Tensor]] = []
    for _ in range(eval_iters):
        reports.extend(forward_backward_step(model, PreAlignLossConfig(), valid_iterator, num_lm_microbatches,
                                             seq_length, micro_batch_size, forward_only=True))
    for chunk in model:
        chunk.train()
    losses = _reduce_lm_reports(reports) if parallel_state.is_pipeline_last_stage() else {}
    loss = _broadcast_from_last_stage(losses, ["lm loss"])["lm loss"]
    return {"lm loss": loss, "lm loss PPL": math.exp(min(20.0, loss))}
