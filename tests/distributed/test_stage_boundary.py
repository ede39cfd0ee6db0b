"""The paper's stage boundary and perfect init for untied models, in 2-rank runs.

One launch of stage_scenarios.py serves every test. The LR reference is Megatron's schedule
written out by hand (linear warm-up from 0, cosine decay to ``min_lr``); the optimizer checks
read the Adam state itself: right after the boundary it is empty, and after the first LM step
``exp_avg == (1 - beta1) * grad`` with step 1 (a fresh Adam), which fails if the moments carry
over.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from launcher import run_torchrun

pytestmark = pytest.mark.distributed

SCRIPT = Path(__file__).with_name("stage_scenarios.py")
N, P = 6, 3


@pytest.fixture(scope="module")
def launch():
    return run_torchrun(SCRIPT, nproc=2, timeout=300, check=False)


def ref_lr(n: int, lr: float, min_lr: float, warmup: int, decay: int) -> float:
    """Megatron's cosine schedule at step ``n`` of a segment (init LR 0 with warm-up)."""
    if warmup > 0 and n <= warmup:
        return lr * n / warmup
    if n > decay:
        return min_lr
    ratio = (n - warmup) / (decay - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (math.cos(math.pi * ratio) + 1.0)


def test_separate_schedule_restarts_warmup_and_resets_adam(launch):
    for rank, m in launch.scenario("boundary_separate").items():
        log = m["log"]
        # alignment stage: --prealign-lr 5e-3, warm-up 1, cosine over 3 iterations to --min-lr
        expected = [ref_lr(n, 5e-3, 1e-4, 1, P) for n in range(P)]
        # LM stage: --lr 1e-3, --lr-warmup-iters 2, cosine over its own 3 iterations
        expected += [ref_lr(n, 1e-3, 1e-4, 2, N - P) for n in range(N - P)]
        assert [e["lr"] for e in log] == pytest.approx(expected, abs=1e-12), rank
        assert log[P]["lr"] == 0.0  # the warm-up's first value at the first LM iteration
        assert [e["crossed"] for e in log] == [i == P for i in range(N)]
        # right after the boundary, before the first LM step: no Adam state at all
        assert log[P]["before"] == {"has_state": 0.0}
        assert log[P - 1]["after"]["step"] == P and log[P - 1]["after"]["exp_avg_abs_max"] > 0
        # after the first LM step: a fresh Adam (step 1, exp_avg = (1 - beta1) grad)
        assert log[P]["after"]["step"] == 1.0
        assert log[P]["after"]["first_step_residual"] < 1e-9
        assert log[P + 1]["after"]["step"] == 2.0
        # control: without a reset the residual is far from zero
        assert log[P - 1]["after"]["first_step_residual"] > 1e-4


def test_shared_schedule_keeps_one_schedule_and_one_adam_state(launch):
    for rank, m in launch.scenario("boundary_shared").items():
        log = m["log"]
        expected = [ref_lr(n, 1e-3, 1e-4, 2, N) for n in range(N)]
        assert [e["lr"] for e in log] == pytest.approx(expected, abs=1e-12), rank
        assert not any(e["crossed"] for e in log)
        assert [e["after"]["step"] for e in log] == [float(i + 1) for i in range(N)]
        assert log[P]["after"]["first_step_residual"] > 1e-4


@pytest.mark.parametrize("name", ["boundary_separate", "boundary_shared"])
def test_resume_on_both_sides_of_the_boundary(launch, name):
    """Resumed at the boundary (alignment optimizer saved) the reset happens once; resumed in the
    LM stage it does not happen again: both runs end on the uninterrupted run's weights."""
    for rank, m in launch.scenario(name).items():
        full = {e["iteration"]: e for e in m["log"]}
        for key in ("resumed_at_boundary", "resumed_in_lm"):
            for e in m[key]:
                assert e["lr"] == pytest.approx(full[e["iteration"]]["lr"], abs=1e-12), (key, e)
                assert e["crossed"] == full[e["iteration"]]["crossed"], (key, e)
        assert m["resume_boundary_weight_diff"] < 1e-6
        assert m["resume_lm_weight_diff"] < 1e-6


def test_perfect_init_untied_tp2_input_and_output_rows(launch):
    for rank, m in launch.scenario("perfect_init_untied_tp2").items():
        assert m["shard_rows"] == 500  # vocab-parallel: each TP rank holds half the rows
        assert m["rows_differ_before"] > 1e-3 and m["out_rows_differ_before"] > 1e-3
        assert m["emb_clone_diff"] == 0.0 and m["out_clone_diff"] == 0.0
        assert m["english_rows_kept"] == 0.0
        assert m["emb_out_differ"] > 1e-3  # untied: two different matrices were cloned
        for key, value in m["probe_after"].items():
            assert value == pytest.approx(1.0, abs=1e-9), key


def test_alignment_log_under_tp2_matches_single_process(launch):
    names = {"raw_cosine": "raw cos", "centred_cosine": "centred cos", "norm_ratio": "norm ratio"}
    for rank, m in launch.scenario("perfect_init_untied_tp2").items():
        for level in ("emb", "out"):
            for k, short in names.items():
                assert m["probe_before"][f"align {level} {short}"] == pytest.approx(
                    m["ref_before"][level][k], abs=1e-6), (level, k)
