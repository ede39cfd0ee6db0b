"""Megatron-LM flags end to end (2 CPU ranks, DP=2, PreAlign init mode): overlapped gradient
reduce and selective recompute leave the losses unchanged (pre-alignment hooks included), and a
batch-size ramp-up with --train-samples runs Megatron-Core's microbatch calculator."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from test_training_e2e import _losses, _run  # noqa: E402
from training_helpers import write_lm_dataset, write_table  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

VOCAB = 1000
GBS_RE = re.compile(r"iteration\s+(\d+)/\s*\d+ \|.*?consumed samples:\s+(\d+) \|.*?learning rate: ([0-9.E+-]+) \| "
                    r"global batch size:\s+(\d+)")


@pytest.fixture(scope="module")
def common(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlm_flags")
    from megatron_prealign.tokenizer import build_tokenizer

    tok = build_tokenizer("NullTokenizer", vocab_size=VOCAB)
    write_lm_dataset(str(root / "en"), VOCAB, 200, seed=1, low=0, high=500)
    write_lm_dataset(str(root / "tgt"), VOCAB, 40, seed=2, low=500, high=1000)
    write_table(str(root / "table.jsonl"), tok, 60, offset=500)
    args = ["--num-layers", "2", "--hidden-size", "32", "--num-attention-heads", "4", "--seq-length", "32",
            "--micro-batch-size", "2", "--lr", "1e-3", "--tokenizer-type", "NullTokenizer", "--vocab-size",
            str(VOCAB), "--data-path", "9", str(root / "en"), "1", str(root / "tgt"),
            "--prealign-mode", "init", "--prealign-table", str(root / "table.jsonl"), "--prealign-iters", "2",
            "--prealign-words-per-batch", "8", "--log-interval", "1", "--eval-interval", "100", "--eval-iters", "1",
            "--num-workers", "0", "--hidden-dropout", "0", "--attention-dropout", "0", "--global-batch-size", "8"]
    return root, args


def test_overlap_grad_reduce_and_selective_recompute_keep_the_losses(common):
    root, args = common
    base = _run(2, args + ["--train-iters", "5"], 240, root / "base.log")
    assert base.returncode == 0, base.stdout[-4000:]
    fast = _run(2, args + ["--train-iters", "5", "--overlap-grad-reduce", "--recompute-activations",
                           "--use-mcore-models"], 240, root / "fast.log")
    assert fast.returncode == 0, fast.stdout[-4000:]
    assert "notice: --use-mcore-models" in fast.stdout
    a, b = _losses(base.stdout), _losses(fast.stdout)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5]
    for it in a:
        assert abs(a[it] - b[it]) <= 1e-6, (it, a[it], b[it])


def test_rampup_and_train_samples(common):
    root, args = common
    res = _run(2, args + ["--train-samples", "64", "--rampup-batch-size", "4", "4", "16"], 240, root / "ramp.log")
    assert res.returncode == 0, res.stdout[-4000:]
    rows = {int(m.group(1)): (int(m.group(2)), float(m.group(3)), int(m.group(4))) for m in GBS_RE.finditer(res.stdout)}
    # Megatron-Core's calculator: batch 4 until 16 samples are consumed, then 8; 64 samples -> 10 iterations
    assert [rows[i][2] for i in sorted(rows)] == [4, 4, 4, 4, 8, 8, 8, 8, 8, 8]
    assert rows[10][0] == 64
    lrs = [rows[i][1] for i in sorted(rows)]
    assert lrs[-1] == 0.0 and lrs[-2] > 0.0  # the decay ends with the last sample (not earlier)
    assert "------------------------ arguments ------------------------" in res.stdout
    assert " > padded vocab (size: 1001) with 23 dummy tokens (new size: 1024)" in res.stdout
