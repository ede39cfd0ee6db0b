"""Stage-boundary and perfect-init scenarios (2 ranks), run by test_stage_boundary.py.

* ``boundary_separate`` / ``boundary_shared`` (DP=2): the loop's pieces as ``pretrain()`` uses
  them (``build_model``, ``build_optimizer_and_scheduler`` on a segment,
  ``schedule_for_iteration`` before every ``train_step``) for 6 iterations of a job whose first
  3 are the alignment stage. LM-only steps: the boundary logic does not depend on the losses.
  Reports the LR each step ran with, the Adam state right before and after each step, and the
  weights; also resumes (optimizer/scheduler state dicts, rebuilt as ``pretrain()`` does) at the
  boundary and inside the LM stage.
* ``perfect_init_untied_tp2`` (TP=2): ``clone_perfect_init_`` on an untied model, and the
  training log's alignment probe against a single-process computation on gathered weights.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import replace
from typing import Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tiny_gpt as tg  # noqa: E402
from worker import Context, run_scenarios  # noqa: E402

from megatron_prealign.model.alignment_metrics import alignment_stats  # noqa: E402
from megatron_prealign.training.alignment_log import EmbeddingAlignmentProbe  # noqa: E402
from megatron_prealign.training.config import OptimConfig, PreAlignConfig  # noqa: E402
from megatron_prealign.training.loop import (  # noqa: E402
    _inner_optimizers,
    build_model,
    build_optimizer_and_scheduler,
    clone_perfect_init_,
    schedule_for_iteration,
    train_step,
)
from megatron_prealign.training.stages import Stage, schedule_segments, segment_index_at  # noqa: E402

N, P = 6, 3
SEQ, MBS = 16, 2
CFG = replace(tg.TINY, max_sequence_length=SEQ)
OPTIM = OptimConfig(lr=1e-3, min_lr=1e-4, lr_warmup_iters=2, lr_decay_style="cosine", clip_grad=1.0)
BETA1 = OPTIM.adam_beta1


def _prealign(schedule: str) -> PreAlignConfig:
    return PreAlignConfig(mode="init", table="t", iters=P, schedule=schedule, lr=5e-3, lr_warmup_iters=1)


def _batches(iteration: int, rank: int):
    """The LM microbatch of (iteration, DP rank): deterministic, so a resumed run sees the same data."""
    b = tg.make_batch(batch_size=MBS, seq=SEQ, vocab=CFG.vocab_size, seed=1000 * iteration + rank)
    return iter([b])


def _adam_probe(optimizer) -> Dict[str, float]:
    """Step count and |exp_avg - (1 - beta1) grad| of the first parameter with state (or empty)."""
    opt = _inner_optimizers(optimizer)[0]
    param = opt.param_groups[0]["params"][0]
    st = opt.state.get(param, {})
    if not st:
        return {"has_state": 0.0}
    grad = param.grad if param.grad is not None else torch.zeros_like(param)
    return {
        "has_state": 1.0,
        "step": float(st["step"]),
        "exp_avg_abs_max": float(st["exp_avg"].abs().max()),
        "first_step_residual": float((st["exp_avg"] - (1 - BETA1) * grad).abs().max()),
    }


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).float() for p in model[0].parameters()])


def _run(schedule: str, start: int = 0, snapshot_at: int = -1, resume_from=None):
    """Iterations ``[start, N)``; ``resume_from`` = (weights, optimizer sd, scheduler sd) at ``start``."""
    from megatron.core import parallel_state

    tg.set_parallel(1, 1)
    rank = parallel_state.get_data_parallel_rank()
    model = build_model(CFG)
    segments = schedule_segments(N, _prealign(schedule), OPTIM)
    held = segment_index_at(max(0, start - 1), segments)
    optimizer, scheduler = build_optimizer_and_scheduler(OPTIM, model, N, False, segment=segments[held])
    if resume_from is not None:
        weights, opt_sd, sched_sd = resume_from
        with torch.no_grad():
            for p, w in zip(model[0].parameters(), weights):
                p.copy_(w)
        optimizer.reload_model_params() if hasattr(optimizer, "reload_model_params") else None
        optimizer.load_state_dict(copy.deepcopy(opt_sd))
        scheduler.load_state_dict(copy.deepcopy(sched_sd))
    log: List[Dict] = []
    snapshot = None
    for it in range(start, N):
        scheduler, held, crossed = schedule_for_iteration(it, segments, held, optimizer, scheduler,
                                                          OPTIM.weight_decay)
        before = _adam_probe(optimizer)
        lr_used = optimizer.param_groups[0]["lr"]
        train_step(Stage("lm", 1.0, 0.0), model, optimizer, scheduler, _batches(it, rank), 1, SEQ, MBS)
        log.append({"iteration": it, "lr": lr_used, "crossed": crossed, "segment": segments[held].name,
                    "before": before, "after": _adam_probe(optimizer)})
        if it + 1 == snapshot_at:
            snapshot = ([p.detach().clone() for p in model[0].parameters()],
                        copy.deepcopy(optimizer.state_dict()), copy.deepcopy(scheduler.state_dict()))
    return log, _flat(model), snapshot


def _boundary(schedule: str):
    full, weights, snap_p = _run(schedule, snapshot_at=P)
    _, _, snap_p1 = _run(schedule, snapshot_at=P + 1)
    resumed_p, w_p, _ = _run(schedule, start=P, resume_from=snap_p)
    resumed_p1, w_p1, _ = _run(schedule, start=P + 1, resume_from=snap_p1)
    return {
        "log": full,
        "resumed_at_boundary": resumed_p,
        "resumed_in_lm": resumed_p1,
        "resume_boundary_weight_diff": float((w_p - weights).abs().max()),
        "resume_lm_weight_diff": float((w_p1 - weights).abs().max()),
        "segments": [s.__dict__ for s in schedule_segments(N, _prealign(schedule), OPTIM)],
    }


def boundary_separate(ctx: Context):
    return _boundary("separate")


def boundary_shared(ctx: Context):
    return _boundary("shared")


def _gather_tp(weight: torch.Tensor) -> torch.Tensor:
    from megatron.core import parallel_state

    parts = [torch.empty_like(weight) for _ in range(parallel_state.get_tensor_model_parallel_world_size())]
    torch.distributed.all_gather(parts, weight.detach().contiguous(), group=parallel_state.get_tensor_model_parallel_group())
    return torch.cat(parts, dim=0)


def _reference_stats(full: torch.Tensor, pairs, v: int) -> Dict[str, float]:
    """Single-process reference: mean-pooled rows, language means over [0, V) and [V, 2V)."""
    src = torch.stack([full[list(s)].double().mean(0) for s, _ in pairs])
    tgt = torch.stack([full[list(t)].double().mean(0) for _, t in pairs])
    return alignment_stats(src, tgt, full[:v].double().mean(0), full[v:2 * v].double().mean(0))


def perfect_init_untied_tp2(ctx: Context):
    from megatron.core.utils import unwrap_model

    tg.set_parallel(2, 1)
    v = CFG.vocab_size // 2
    model = build_model(replace(CFG, untie_embeddings_and_output_weights=True))
    gpt = unwrap_model(model[0])
    pairs = [([i], [i + v]) for i in range(0, v, 7)] + [([3, 11], [3 + v, 11 + v]), ([490, 7, 250], [490 + v, 7 + v, 250 + v])]
    probe = EmbeddingAlignmentProbe(pairs, clone_base_vocab=v)
    before_emb = _gather_tp(gpt.embedding.word_embeddings.weight)
    before_out = _gather_tp(gpt.output_layer.weight)
    probe_before = probe.stats(model[0])
    ref_before = {"emb": _reference_stats(before_emb, pairs, v), "out": _reference_stats(before_out, pairs, v)}
    clone_perfect_init_(model, v)
    emb = _gather_tp(gpt.embedding.word_embeddings.weight)
    out = _gather_tp(gpt.output_layer.weight)
    return {
        "shard_rows": int(gpt.embedding.word_embeddings.weight.shape[0]),
        "rows_differ_before": float((before_emb[v:] - before_emb[:v]).abs().max()),
        "out_rows_differ_before": float((before_out[v:] - before_out[:v]).abs().max()),
        "emb_clone_diff": float((emb[v:2 * v] - emb[:v]).abs().max()),
        "out_clone_diff": float((out[v:2 * v] - out[:v]).abs().max()),
        "english_rows_kept": float(max((emb[:v] - before_emb[:v]).abs().max(), (out[:v] - before_out[:v]).abs().max())),
        "emb_out_differ": float((emb - out).abs().max()),
        "probe_before": probe_before,
        "ref_before": ref_before,
        "probe_after": probe.stats(model[0]),
    }


SCENARIOS = {"boundary_separate": boundary_separate, "boundary_shared": boundary_shared,
             "perfect_init_untied_tp2": perfect_init_untied_tp2}

if __name__ == "__main__":
    run_scenarios(SCENARIOS)
