"""``pretrain()``: set up model, optimizer, data and alignment stream, resume, train, save.

The library side of ``pretrain_prealign.py``. Takes a typed :class:`PretrainConfig`; every
startup check (checkpoint shape, table ids, alignment batch size, mask datasets) raises a
one-line error before the first iteration.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Optional, Type

import torch
from megatron.core import num_microbatches_calculator as nmc
from megatron.core import parallel_state

from megatron_prealign.model.prealign import LevelLossTracker, resolve_levels
from megatron_prealign.platform.compat import init_num_microbatches
from megatron_prealign.training import checkpointing
from megatron_prealign.training.config import PretrainConfig
from megatron_prealign.training.data import build_lm_datasets, build_lm_iterator, lm_sample_counts
from megatron_prealign.training.loop import (
    TrainState,
    build_model,
    build_optimizer_and_scheduler,
    clone_perfect_init_,
    evaluate,
    schedule_for_iteration,
    train_step,
)
from megatron_prealign.training.metrics import IntervalLogger, is_last_rank, open_wandb
from megatron_prealign.training.preemption import ExitConditions
from megatron_prealign.training.stages import schedule_segments, segment_index_at, stage_at

logger = logging.getLogger(__name__)

__all__ = ["pretrain", "log_rank0", "format_args_dump", "check_device_support"]

_PROCESS_START = time.time()  # --exit-duration-in-mins counts from here, as Megatron-LM's _TRAIN_START_TIME


def log_rank0(msg: str) -> None:
    """Print on global rank 0 only."""
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        print(msg, flush=True)


def format_args_dump(args: Dict[str, Any]) -> str:
    """Megatron-LM's start-up listing of every flag (``_print_args``), sorted by name."""
    lines = ["------------------------ arguments ------------------------"]
    for name in sorted(args, key=lambda k: k.lower()):
        lines.append(f"  {name} {'.' * (48 - len(name))} {args[name]}")
    lines.append("-------------------- end of arguments ---------------------")
    return "\n".join(lines)


def check_device_support(cfg: PretrainConfig, cuda: bool) -> None:
    """One-line errors for features that need CUDA, before anything is built."""
    if cuda:
        return
    if cfg.optim.use_distributed_optimizer:
        raise ValueError("--use-distributed-optimizer needs CUDA (Megatron-Core's distributed optimizer "
                         "keeps its buffers on the GPU); drop it on CPU")
    if cfg.optim.fp16 or cfg.model.fp16:
        raise ValueError("--fp16 needs CUDA (Megatron-Core's loss scaler lives on the GPU); drop it on CPU")


def pretrain(
    cfg: PretrainConfig,
    tokenizer: Any,
    meta: Dict[str, Any],
    dataset_cls: Optional[Type] = None,
    align_stream_factory: Optional[Callable[[], Any]] = None,
    printer: Optional[Callable[[str], None]] = None,
) -> TrainState:
    """Run a pretraining job (call on every rank after :func:`megatron_prealign.platform.initialize`).

    Args:
        cfg: the job.
        tokenizer: builds datasets (``eod``, ``pad``, ``vocab_size``); ``describe()`` goes to meta.
        meta: extra metadata for ``prealign_meta.json`` (e.g. ``args``).
        dataset_cls: LM dataset class (default ``MaskedGPTDataset``).
        align_stream_factory: builds the
            :class:`~megatron_prealign.training.alignment.AlignmentStream` (called only when some
            stage has an alignment loss).
        printer: where log lines go (default stdout).

    Returns:
        The final :class:`TrainState`.
    """
    t = cfg.training
    dp = parallel_state.get_data_parallel_world_size()
    dp_rank = parallel_state.get_data_parallel_rank()
    check_device_support(cfg, torch.cuda.is_available())
    if meta.get("args"):
        log_rank0(format_args_dump(meta["args"]))
    # Megatron-Core's calculator: the current global batch and microbatch count (ramp-up aware).
    init_num_microbatches(torch.distributed.get_rank() if torch.distributed.is_initialized() else 0,
                          t.rampup_batch_size, t.global_batch_size, t.micro_batch_size, dp)
    num_microbatches = nmc.get_num_microbatches()

    # --- Startup checks that need only files -----------------------------------------------
    resume_meta = None
    if cfg.checkpoint.load and checkpointing.read_latest_iteration(cfg.checkpoint.load) is not None:
        resume_meta = checkpointing.read_meta(cfg.checkpoint.load)
        checkpointing.check_model_compatible(resume_meta, cfg.model, cfg.checkpoint.load)
    elif cfg.checkpoint.load:
        log_rank0(f" --load {cfg.checkpoint.load}: no checkpoint there yet, training from scratch")
    needs_align = cfg.prealign.mode != "none" and any(
        stage_at(i, t.train_iters, cfg.prealign).has_align for i in _stage_boundaries(cfg)
    )
    align_stream = align_stream_factory() if (needs_align and align_stream_factory is not None) else None
    if needs_align and align_stream is None:
        raise ValueError(f"--prealign-mode {cfg.prealign.mode}: no alignment stream was provided")
    tracker = None
    if align_stream is not None:
        levels = resolve_levels(cfg.prealign.loss.levels, cfg.model.num_layers)
        tracker = LevelLossTracker(cfg.model.num_layers, levels)

    # --- Data ----------------------------------------------------------------------------------
    counts = lm_sample_counts(t.train_iters, t.global_batch_size, t.eval_interval, t.eval_iters)
    train_ds, valid_ds, _ = build_lm_datasets(cfg.data, tokenizer, t.seed, counts, dataset_cls)

    # --- Model, optimizer, scheduler -----------------------------------------------------------
    vocab = getattr(tokenizer, "vocab_size", None)
    if isinstance(vocab, int) and vocab <= cfg.model.vocab_size:
        log_rank0(f" > padded vocab (size: {vocab}) with {cfg.model.vocab_size - vocab} dummy tokens "
                  f"(new size: {cfg.model.vocab_size})")
    model = build_model(cfg.model, overlap_grad_reduce=cfg.parallel.overlap_grad_reduce,
                        use_distributed_optimizer=cfg.optim.use_distributed_optimizer)
    if parallel_state.get_data_parallel_rank() == 0:
        n_params = sum(p.nelement() for chunk in model for p in chunk.parameters())
        print(f" > number of parameters on (tensor, pipeline) model parallel rank "
              f"({parallel_state.get_tensor_model_parallel_rank()}, "
              f"{parallel_state.get_pipeline_model_parallel_rank()}): {n_params}", flush=True)
    if cfg.prealign.clone_perfect_init and resume_meta is None:
        if not cfg.prealign.clone_base_vocab_size:
            raise ValueError("--clone-perfect-init needs an En-Clone tokenizer (--en-clone)")
        clone_perfect_init_(model, cfg.prealign.clone_base_vocab_size)
    # The optimizer state and scheduler belong to the segment of the last completed iteration
    # (a checkpoint saved at the stage boundary holds the alignment stage's; the loop resets it
    # once before the first step of the next segment).
    segments = schedule_segments(t.train_iters, cfg.prealign, cfg.optim)
    start_iteration = checkpointing.read_latest_iteration(cfg.checkpoint.load) if resume_meta is not None else 0
    held = segment_index_at(max(0, (start_iteration or 0) - 1), segments)
    optimizer, scheduler = build_optimizer_and_scheduler(cfg.optim, model, t.train_iters, cfg.model.bf16,
                                                         segment=segments[held])
    if len(segments) > 1:
        log_rank0(" LR schedule segments: " + "; ".join(
            f"{g.name} iterations [{g.start}, {g.end}) lr {g.lr:g} warmup {g.warmup_iters} "
            f"{g.decay_style} decay over {g.decay_iters} to {g.min_lr:g}" for g in segments)
            + " (optimizer state reset at each boundary)")
    probe = _alignment_probe(cfg)
    state = TrainState()
    if resume_meta is not None:
        it, ts = checkpointing.load_checkpoint(cfg.checkpoint.load, model, optimizer, scheduler,
                                               load_optim=cfg.checkpoint.load_optim,
                                               load_rng=cfg.checkpoint.load_rng)
        state = TrainState.from_dict(ts)
        state.iteration = it
        log_rank0(f" loaded checkpoint from {cfg.checkpoint.load} at iteration {it} "
                  f"(consumed samples {state.consumed_train_samples}, stage {state.stage or '-'})")
    if align_stream is not None and state.align:
        align_stream.load_state_dict(state.align)

    workers = cfg.data.num_workers
    train_iter = build_lm_iterator(train_ds, state.consumed_train_samples, t.micro_batch_size, dp_rank, dp,
                                   num_workers=workers)
    valid_iter = build_lm_iterator(valid_ds, state.consumed_valid_samples, t.micro_batch_size, dp_rank, dp,
                                   num_workers=min(workers, 1), cyclic=True)

    full_meta = {**meta, "model": cfg.model.to_dict(), "config": cfg.to_dict()}
    if hasattr(tokenizer, "describe"):
        full_meta["tokenizer"] = tokenizer.describe()

    def save(iteration: int, scheduler: Any) -> None:
        # the scheduler is passed: the loop replaces it at a stage boundary
        state.align = align_stream.state_dict() if align_stream is not None else {}
        path = checkpointing.save_checkpoint(cfg.checkpoint.save, iteration, model, optimizer, scheduler,
                                             state.to_dict(), full_meta)
        log_rank0(f" saved checkpoint at iteration {iteration:7d} to {path}")

    lg = cfg.logging
    wandb_run = open_wandb(lg.wandb_project, lg.wandb_exp_name, lg.wandb_save_dir, cfg.to_dict(),
                           printer or (lambda s: print(s, flush=True)))
    log = IntervalLogger(t.train_iters, t.log_interval, lg.tensorboard_dir, printer=printer, wandb_run=wandb_run,
                         log_loss_scale=lg.log_loss_scale, log_world_size=lg.log_world_size,
                         log_learning_rate=lg.log_learning_rate)
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    log_rank0(f" training: {t.train_iters} iterations from {state.iteration}, global batch "
              f"{t.global_batch_size} ({num_microbatches} microbatches x {t.micro_batch_size} x dp {dp}), "
              f"prealign mode {cfg.prealign.mode}{' (resumed)' if resume_meta is not None else ''}")

    for chunk in model:
        chunk.train()
    exit_conditions = ExitConditions(handle_signals=t.exit_signal_handler, duration_mins=t.exit_duration_in_mins,
                                     start_time=_PROCESS_START)
    with exit_conditions:
        state = _train_loop(cfg, t, model, optimizer, scheduler, train_iter, valid_iter, align_stream, tracker,
                            state, log, save, world_size, exit_conditions, segments, held, probe)
    log.close()
    return state


def _train_loop(cfg, t, model, optimizer, scheduler, train_iter, valid_iter, align_stream, tracker,
                state: TrainState, log: IntervalLogger, save, world_size: int, exit_conditions: ExitConditions,
                segments, held: int, probe) -> TrainState:
    """Iterations until ``train_iters``, ``--exit-interval``, SIGTERM or ``--exit-duration-in-mins``."""
    exiting = False
    while state.iteration < t.train_iters and not exiting:
        stage = stage_at(state.iteration, t.train_iters, cfg.prealign)
        scheduler, held, crossed = schedule_for_iteration(state.iteration, segments, held, optimizer, scheduler,
                                                          cfg.optim.weight_decay)
        if crossed:
            log_rank0(f" stage boundary at iteration {state.iteration}: optimizer state reset, "
                      f"{segments[held].name} LR schedule starts")
        nmc.update_num_microbatches(state.consumed_train_samples, consistency_check=True)
        num_microbatches = nmc.get_num_microbatches()
        global_batch = nmc.get_current_global_batch_size()
        start = time.time()
        losses, grad_norm, skipped = train_step(
            stage, model, optimizer, scheduler, train_iter, num_microbatches,
            cfg.data.seq_length, t.micro_batch_size, align_stream,
            num_align_microbatches=1, loss_config=cfg.prealign.loss, tracker=tracker,
        )
        elapsed = time.time() - start
        state.iteration += 1
        state.stage = stage.name
        if stage.has_lm:
            state.consumed_train_samples += global_batch
        log.add_iteration(elapsed, global_batch * cfg.data.seq_length if stage.has_lm else 0, losses, skipped)
        stage_ends = state.iteration < t.train_iters and \
            stage_at(state.iteration, t.train_iters, cfg.prealign).name != stage.name
        if state.iteration % t.log_interval == 0:
            extra = {}
            if probe is not None:
                extra.update(probe.stats(model[0]))
            if tracker is not None:
                per_level = tracker.reduce()  # collective; zeros when no alignment step ran
                if stage.has_align:
                    for name, value in per_level.items():
                        extra["align loss" if name == "total" else f"align loss {name}"] = value
                extra["aligned cosine emb"] = align_stream.aligned_cosine(model[0])
            log.emit(state.iteration, state.consumed_train_samples, stage.name, scheduler.get_lr(
                optimizer.param_groups[0]), global_batch, grad_norm, extra,
                loss_scale=_loss_scale(optimizer), world_size=world_size)
        elif stage_ends and stage.has_align and probe is not None:
            # The end of the alignment stage is the point that matters (before the LM stage).
            values = probe.stats(model[0])
            log_rank0(f" end of {stage.name} stage at iteration {state.iteration} | " + " | ".join(
                f"{k}: {v:.4f}" for k, v in values.items()) + " |")
            for k, v in values.items():
                log.scalar(k, v, state.iteration)
        if t.eval_interval and t.eval_iters and valid_iter is not None and state.iteration % t.eval_interval == 0:
            _run_eval(model, valid_iter, cfg, num_microbatches, state, log, "validation")
        exiting = bool(t.exit_interval and state.iteration % t.exit_interval == 0)
        why = f"--exit-interval {t.exit_interval}"
        if state.iteration < t.train_iters:
            reason = exit_conditions.should_exit()  # collective: every rank stops after the same iteration
            if reason is not None:
                exiting = True
                why = ("a termination signal" if reason == "signal"
                       else f"--exit-duration-in-mins {t.exit_duration_in_mins}")
        saving = cfg.checkpoint.save and (
            (cfg.checkpoint.save_interval and state.iteration % cfg.checkpoint.save_interval == 0)
            or state.iteration == t.train_iters or exiting
            or (stage_ends and stage.has_align)  # alignment measurable before the LM stage
        )
        if saving:
            save(state.iteration, scheduler)
        if exiting:
            log_rank0(f" exiting at iteration {state.iteration} after {why}"
                      f"{'' if cfg.checkpoint.save else ' (no --save: nothing saved)'}")
    return state


def _alignment_probe(cfg: PretrainConfig):
    """The training log's embedding-alignment probe over ``--alignment-table`` (``None`` without one)."""
    if not cfg.prealign.table:
        return None
    from megatron_prealign.alignment import AlignmentTable
    from megatron_prealign.training.alignment_log import EmbeddingAlignmentProbe

    return EmbeddingAlignmentProbe.from_table(AlignmentTable.load(cfg.prealign.table),
                                              cfg.prealign.clone_base_vocab_size)


def _loss_scale(optimizer) -> Optional[float]:
    """The optimizer's current loss scale (1.0 without fp16), as Megatron-LM logs it."""
    get = getattr(optimizer, "get_loss_scale", None)
    if get is None:
        return None
    try:
        value = get()
    except (AttributeError, NotImplementedError):
        return None
    return float(value.item() if hasattr(value, "item") else value)


def _stage_boundaries(cfg: PretrainConfig) -> List[int]:
    """Iterations where the stage can change (enough to know which stages occur)."""
    n, p = cfg.training.train_iters, cfg.prealign.iters
    return sorted({0, max(0, min(n - 1, p)), max(0, n - p), n - 1})


def _run_eval(model, valid_iter, cfg: PretrainConfig, num_microbatches: int, state: TrainState,
              log: IntervalLogger, name: str) -> None:
    t = cfg.training
    res = evaluate(model, valid_iter, t.eval_iters, num_microbatches, cfg.data.seq_length, t.micro_batch_size)
    state.consumed_valid_samples += t.eval_iters * t.global_batch_size
    line = (f" {name} loss at iteration {state.iteration} | lm loss value: {res['lm loss']:.6E} | "
            f"lm loss PPL: {res['lm loss PPL']:.6E} |")
    if is_last_rank():
        print("-" * len(line) + "\n" + line + "\n" + "-" * len(line), flush=True)
    log.scalar(f"lm loss {name}", res["lm loss"], state.iteration, state.consumed_train_samples)
    log.scalar(f"lm loss {name} ppl", res["lm loss PPL"], state.iteration, state.consumed_train_samples)
