"""The stage schedule: which losses each iteration optimises, with which weights and LR schedule.

One job, one iteration counter. ``--train-iters`` counts **every optimizer step of the job**,
alignment stage included: PreAlign (``init``) runs ``P = --prealign-iters`` alignment steps and
``train_iters - P`` LM-only steps, Joint Training (``none``) ``train_iters`` LM steps. With the
alignment stage's LM loss on (``--prealign-lm-weight`` > 0, default; paper Eq. 4) every step of
both runs consumes one LM global batch, so the same ``--train-iters`` gives Joint and PreAlign
the same optimizer steps *and* the same pretraining data (the paper's comparison). With
``--prealign-lm-weight 0`` PreAlign sees ``P`` fewer LM batches; give it ``--train-iters N + P``
to match Joint's data.

The ``--prealign-mode`` picks the losses (paper Tables 1-3):

=============  ==========================================================================
mode           iterations ``[0, train_iters)``
=============  ==========================================================================
``init``       ``[0, P)``: alignment + ``lm_weight`` x LM (PreAlign); then LM only
``on-the-fly`` LM + ``align_weight`` x alignment at every iteration
``post``       LM only; the last ``P`` iterations: alignment + ``lm_weight`` x LM
``none``       LM only (joint training)
=============  ==========================================================================

``--prealign-schedule`` picks the LR schedule and optimizer state (:func:`schedule_segments`):

* ``separate`` (default; the paper initialises the model by pre-alignment and then pretrains,
  the authors run two jobs): ``init`` and ``post`` have a **stage boundary**. Each side is a
  segment with its own LR schedule: the alignment stage uses ``--prealign-lr`` (default
  ``--lr``), ``--prealign-lr-warmup-iters``, ``--prealign-min-lr`` and
  ``--prealign-lr-decay-style``, decaying over its ``P`` iterations; the LM stage uses ``--lr``,
  ``--lr-warmup-iters``, ``--min-lr`` and ``--lr-decay-style``, decaying over
  ``--lr-decay-iters`` (default its own length, ``train_iters - P``), counted from its first
  iteration. When a segment starts, the Adam state (moments and step counts) is reset and the
  segment's scheduler starts at step 0. For ``post`` the boundary sits before the post-alignment
  stage (the LM stage is first), with the same logic.
* ``shared``: one segment, one scheduler over ``train_iters`` and one Adam state (the behaviour
  before the stage boundary existed; kept for comparison). ``on-the-fly`` and ``none`` always
  have one segment.

The optimizer state in hand always belongs to the segment of the last completed iteration, so a
checkpoint saved at the boundary holds the alignment stage's optimizer, and a job resumed there
resets it once before its first LM step; a job resumed later loads the LM stage's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from megatron_prealign.training.config import PREALIGN_MODES, OptimConfig, PreAlignConfig

__all__ = ["Stage", "stage_at", "ScheduleSegment", "schedule_segments", "segment_index_at", "lm_segment"]


@dataclass(frozen=True)
class Stage:
    """What one iteration optimises."""

    name: str
    """``prealign``, ``lm``, ``lm+align`` (on-the-fly) or ``postalign``."""
    lm_weight: float
    """Weight of the LM loss (0 = no LM microbatches this iteration)."""
    align_weight: float
    """Weight of the alignment loss (0 = no alignment microbatches this iteration)."""

    @property
    def has_lm(self) -> bool:
        return self.lm_weight > 0

    @property
    def has_align(self) -> bool:
        return self.align_weight > 0


def stage_at(iteration: int, train_iters: int, cfg: PreAlignConfig) -> Stage:
    """The stage of the optimizer step that starts after ``iteration`` completed steps."""
    if cfg.mode not in PREALIGN_MODES:
        raise ValueError(f"unknown --prealign-mode {cfg.mode!r}")
    if cfg.mode == "on-the-fly":
        return Stage("lm+align", 1.0, cfg.loss.align_weight)
    if cfg.mode == "init" and iteration < cfg.iters:
        return Stage("prealign", cfg.loss.lm_weight, cfg.loss.align_weight)
    if cfg.mode == "post" and iteration >= train_iters - cfg.iters:
        return Stage("postalign", cfg.loss.lm_weight, cfg.loss.align_weight)
    return Stage("lm", 1.0, 0.0)


@dataclass(frozen=True)
class ScheduleSegment:
    """A run of iterations sharing one LR schedule and one optimizer state."""

    name: str
    """``prealign``, ``lm``, ``postalign`` or ``all`` (one segment for the whole job)."""
    start: int
    """First iteration (completed steps before it) of the segment."""
    iters: int
    """Iterations in the segment."""
    lr: float
    """Peak learning rate."""
    min_lr: float
    """Final learning rate of the decay."""
    warmup_iters: int
    """Linear warm-up iterations from 0, counted from ``start``."""
    decay_iters: int
    """Iterations the decay spans, counted from ``start`` (warm-up included, as Megatron)."""
    decay_style: str
    """Megatron ``--lr-decay-style``."""
    warmup_init: float = 0.0
    """Learning rate the warm-up starts from (``--lr-warmup-init`` for the LM stage)."""

    @property
    def end(self) -> int:
        return self.start + self.iters


def _alignment_segment(name: str, start: int, cfg: PreAlignConfig, optim: OptimConfig) -> ScheduleSegment:
    warmup = cfg.lr_warmup_iters if cfg.lr_warmup_iters is not None else min(optim.lr_warmup_iters, cfg.iters // 2)
    return ScheduleSegment(
        name=name, start=start, iters=cfg.iters,
        lr=cfg.lr if cfg.lr is not None else optim.lr,
        min_lr=cfg.min_lr if cfg.min_lr is not None else optim.min_lr,
        warmup_iters=warmup, decay_iters=cfg.iters,
        decay_style=cfg.lr_decay_style or optim.lr_decay_style,
    )


def lm_segment(name: str, start: int, iters: int, optim: OptimConfig) -> ScheduleSegment:
    """The LM stage's schedule (``--lr`` ... ``--min-lr``) over ``iters`` iterations from ``start``."""
    return ScheduleSegment(
        name=name, start=start, iters=iters, lr=optim.lr, min_lr=optim.min_lr,
        warmup_iters=optim.lr_warmup_iters,
        decay_iters=optim.lr_decay_iters if optim.lr_decay_iters is not None else iters,
        decay_style=optim.lr_decay_style, warmup_init=optim.lr_warmup_init,
    )


def schedule_segments(train_iters: int, cfg: PreAlignConfig, optim: OptimConfig) -> List[ScheduleSegment]:
    """The job's LR-schedule segments, in order, covering ``[0, train_iters)``.

    Raises:
        ValueError: an unknown ``--prealign-schedule``.
    """
    if cfg.schedule not in ("separate", "shared"):
        raise ValueError(f"unknown --prealign-schedule {cfg.schedule!r} (separate or shared)")
    boundary = cfg.schedule == "separate" and cfg.mode in ("init", "post") and 0 < cfg.iters < train_iters
    if not boundary:
        return [lm_segment("all", 0, train_iters, optim)]
    p = cfg.iters
    if cfg.mode == "init":
        return [_alignment_segment("prealign", 0, cfg, optim), lm_segment("lm", p, train_iters - p, optim)]
    return [lm_segment("lm", 0, train_iters - p, optim), _alignment_segment("postalign", train_iters - p, cfg, optim)]


def segment_index_at(iteration: int, segments: List[ScheduleSegment]) -> int:
    """Index of the segment that the step after ``iteration`` completed steps belongs to."""
    for i, seg in enumerate(segments):
        if iteration < seg.end:
            return i
    return len(segments) - 1
