"""Pre-alignment scenarios: TP=2, TP=2+SP, PP=2 (several microbatches) and DP=2 equal one process.

Run by tests/distributed/test_prealign_parallel.py through the launcher (2 ranks, one launch).
By hand::

    python -m torch.distributed.run --standalone --nproc_per_node 2 \
        tests/distributed/prealign_scenarios.py --result-dir /tmp/r --workdir /tmp/w [--only tp2]

Each scenario computes, in every process independently, the TP=1/PP=1 reference on the global
batch: per pre-alignment microbatch the SupCon per level over the words of all DP ranks'
microbatches (``supcon_loss`` on pooled features), plus the LM loss of the LM microbatches,
weighted as in Eq. 4. It then loads the same weights into the parallel layout, runs one step of
``forward_backward_step`` (a schedule call for the pre-alignment microbatches, one word per row,
padded to a common shape, then one for the LM microbatches; DDP wrapper + finalize_model_grads)
and reports the largest differences in per-level losses and gradients. pytest holds the
tolerances. The reference runs each microbatch unpadded, at its own shape.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tiny_gpt as tg  # noqa: E402
from worker import Context, run_scenarios  # noqa: E402

from megatron_prealign.model.prealign import (  # noqa: E402
    LevelLossTracker,
    PreAlignLossConfig,
    forward_backward_step,
    level_name,
    pooled_level_features,
    resolve_levels,
)
from megatron_prealign.model.supcon import supcon_loss  # noqa: E402
from megatron_prealign.model.word_batches import word_rows  # noqa: E402

SEQ = 16
MBS = 2
CFG = replace(tg.TINY, max_sequence_length=SEQ)


def _align_batch(seed: int) -> Dict:
    """Random aligned words: 5 source words, 1-3 translations each, 1-3 tokens per word."""
    gen = torch.Generator().manual_seed(seed)
    words: List[List[int]] = []
    labels: List[int] = []
    for group in range(5):
        for _ in range(1 + int(torch.randint(1, 4, (1,), generator=gen))):
            n = int(torch.randint(1, 4, (1,), generator=gen))
            words.append(torch.randint(0, CFG.vocab_size, (n,), generator=gen).tolist())
            labels.append(seed * 100 + group)
    return word_rows(words, labels)


def _lm_batch(seed: int) -> Dict:
    batch = tg.make_batch(batch_size=MBS, seq=SEQ, vocab=CFG.vocab_size, seed=1000 + seed)
    batch["loss_mask"][:, -3:] = 0.0  # uneven masks: scaling by token counts matters
    return batch


def _reference(cfg, align: List[List[Dict]], lm: List[List[Dict]], loss_cfg: PreAlignLossConfig):
    """TP=1/PP=1 objective on the global batch. ``align[r][j]``: DP rank r's j-th microbatch."""
    tg.set_parallel(1, 1)
    model = tg.build(cfg)
    levels = resolve_levels(loss_cfg.levels, cfg.num_layers)
    num_align, num_lm = len(align[0]), len(lm[0])
    total = torch.zeros(())
    per_level = torch.zeros(len(levels), dtype=torch.float64)
    for j in range(num_align):
        feats, labels = [], []
        for rank_batches in align:
            f, _ = pooled_level_features(model, rank_batches[j], levels)
            feats.append(f)
            labels.append(rank_batches[j]["word_labels"])
        values = supcon_loss(torch.cat(feats, dim=1), torch.cat(labels), loss_cfg.temperature)
        per_level += values.detach().double() / num_align
        total = total + loss_cfg.align_weight / num_align * values.sum()
    for j in range(num_lm):
        ce = torch.stack([tg.masked_mean(tg.per_token_loss(model, rb[j]), rb[j]["loss_mask"]) for rb in lm])
        total = total + loss_cfg.lm_weight / num_lm * ce.mean()
    total.backward()
    names = tg.global_names(model)
    return {
        "weights": {n: p.detach().clone() for n, (_, p) in names.items()},
        # The final norm gets no gradient from alignment levels: its reference gradient is zero.
        "grads": {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone() for n, (_, p) in names.items()},
        "levels": {level_name(x, cfg.num_layers): per_level[i].item() for i, x in enumerate(levels)},
    }


def _run(tp: int, pp: int, cfg=CFG, num_align: int = 2, num_lm: int = 0, loss_cfg=None, dp_world: int = 1):
    from megatron.core import parallel_state

    loss_cfg = loss_cfg or PreAlignLossConfig(temperature=0.1)
    dp = dp_world
    align = [[_align_batch(10 * r + j) for j in range(num_align)] for r in range(dp)]
    lm = [[_lm_batch(10 * r + j) for j in range(num_lm)] for r in range(dp)]
    ref = _reference(cfg, align, lm, loss_cfg)

    tg.set_parallel(tp, pp)
    assert parallel_state.get_data_parallel_world_size() == dp
    rank = parallel_state.get_data_parallel_rank()
    model = tg.build(cfg)
    tg.load_full_weights(model, ref["weights"])
    ddp = tg.wrap_ddp(model)
    ddp.zero_grad_buffer()
    tracker = LevelLossTracker(cfg.num_layers, resolve_levels(loss_cfg.levels, cfg.num_layers))
    forward_backward_step([ddp], loss_cfg, iter(lm[rank]) if num_lm else None, num_lm, SEQ, MBS,
                          align_batches=align[rank], tracker=tracker)
    levels = tracker.reduce()
    grads = tg.max_diff_to_full(model, ref["grads"], get=tg.grad_of)
    return {
        "layout": {"tp": tp, "pp": pp, "dp": dp},
        "level_losses": levels,
        "ref_level_losses": ref["levels"],
        "level_max_abs_diff": max(abs(levels[k] - v) for k, v in ref["levels"].items()),
        "grad_max_abs_diff": grads["max_abs_diff"],
        "grad_worst": grads["worst"],
        "grads_compared": grads["count"],
        "ref_grad_max_abs": max(g.abs().max().item() for g in ref["grads"].values()),
    }


def tp2(ctx: Context):
    return _run(tp=2, pp=1)


def tp2_sp(ctx: Context):
    return _run(tp=2, pp=1, cfg=replace(CFG, sequence_parallel=True))


def pp2(ctx: Context):
    # 4 microbatches, 2 of each kind, unequal weights: checks Eq. 4 scaling and the aux-loss path.
    return _run(tp=1, pp=2, num_align=2, num_lm=2, loss_cfg=PreAlignLossConfig(align_weight=0.7, lm_weight=0.3))


def pp2_untied_levels(ctx: Context):
    # Untied LM head, a level subset with nothing on the last stage but the output embedding.
    cfg = replace(CFG, untie_embeddings_and_output_weights=True)
    return _run(tp=1, pp=2, cfg=cfg, num_align=3, loss_cfg=PreAlignLossConfig(levels=[1, 3]))


def pp2_first_stage_levels(ctx: Context):
    # Levels {embedding, layer 1} live on stage 0 only: the last stage has no level at all.
    return _run(tp=1, pp=2, num_align=2, loss_cfg=PreAlignLossConfig(levels=[0, 1]))


def dp2(ctx: Context):
    return _run(tp=1, pp=1, dp_world=2, num_align=2, num_lm=1)


SCENARIOS = {"tp2": tp2, "tp2_sp": tp2_sp, "pp2": pp2, "pp2_untied_levels": pp2_untied_levels,
             "pp2_first_stage_levels": pp2_first_stage_levels, "dp2": dp2}

if __name__ == "__main__":
    run_scenarios(SCENARIOS)
