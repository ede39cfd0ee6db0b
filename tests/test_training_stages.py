"""The stage schedule of --prealign-mode (paper Tables 1-3)."""

from megatron_prealign.model.prealign import PreAlignLossConfig
from megatron_prealign.training.config import PreAlignConfig
from megatron_prealign.training.stages import stage_at


def schedule(mode, iters=0, n=6, lm_weight=0.5):
    cfg = PreAlignConfig(mode=mode, table="t", iters=iters, loss=PreAlignLossConfig(lm_weight=lm_weight))
    return [(s.name, s.lm_weight, s.align_weight) for s in (stage_at(i, n, cfg) for i in range(n))]


def test_init_aligns_first_then_lm():
    assert schedule("init", 2) == [("prealign", 0.5, 1.0)] * 2 + [("lm", 1.0, 0.0)] * 4


def test_post_aligns_last_with_lm_loss():
    assert schedule("post", 2) == [("lm", 1.0, 0.0)] * 4 + [("postalign", 0.5, 1.0)] * 2


def test_on_the_fly_has_both_losses_throughout():
    assert schedule("on-the-fly") == [("lm+align", 1.0, 1.0)] * 6


def test_none_is_joint_training():
    assert schedule("none") == [("lm", 1.0, 0.0)] * 6


def test_alignment_only_stage_without_lm():
    s = stage_at(0, 6, PreAlignConfig(mode="init", table="t", iters=1, loss=PreAlignLossConfig(lm_weight=0.0)))
    assert s.has_align and not s.has_lm


def _segments(mode, schedule="separate", n=10, p=4, **prealign):
    from megatron_prealign.training.config import OptimConfig
    from megatron_prealign.training.stages import schedule_segments

    optim = OptimConfig(lr=1e-3, min_lr=1e-5, lr_warmup_iters=2, lr_decay_style="cosine")
    cfg = PreAlignConfig(mode=mode, table="t", iters=p if mode in ("init", "post") else 0, schedule=schedule,
                         **prealign)
    return [(s.name, s.start, s.iters, s.lr, s.min_lr, s.warmup_iters, s.decay_iters, s.decay_style)
            for s in schedule_segments(n, cfg, optim)]


def test_separate_init_has_alignment_then_lm_segment():
    assert _segments("init") == [
        ("prealign", 0, 4, 1e-3, 1e-5, 2, 4, "cosine"),  # defaults: --lr, --min-lr, warm-up capped at P/2
        ("lm", 4, 6, 1e-3, 1e-5, 2, 6, "cosine"),  # own warm-up, decay over its own 6 iterations
    ]
    assert _segments("init", lr=5e-3, min_lr=0.0, lr_warmup_iters=1, lr_decay_style="constant")[0] == \
        ("prealign", 0, 4, 5e-3, 0.0, 1, 4, "constant")


def test_separate_post_puts_boundary_before_post_stage():
    assert [s[:3] for s in _segments("post")] == [("lm", 0, 6), ("postalign", 6, 4)]


def test_shared_and_single_stage_modes_have_one_segment():
    whole = [("all", 0, 10, 1e-3, 1e-5, 2, 10, "cosine")]
    assert _segments("init", "shared") == whole
    assert _segments("post", "shared") == whole
    assert _segments("none") == whole
    assert _segments("on-the-fly") == whole


def test_segment_index_is_that_of_the_next_step():
    from megatron_prealign.training.config import OptimConfig
    from megatron_prealign.training.stages import schedule_segments, segment_index_at

    segs = schedule_segments(10, PreAlignConfig(mode="init", table="t", iters=4), OptimConfig())
    assert [segment_index_at(i, segs) for i in range(11)] == [0] * 4 + [1] * 7
