"""End-to-end runs of ``pretrain_prealign.py`` under torchrun (2 CPU ranks, gloo).

Few launches, each with a hard timeout (the whole process tree is SIGKILLed when it expires):

1. ``run_a``: TP=2, PreAlign ``init`` mode (3 pre-alignment iterations, then LM), 8 iterations,
   checkpoints at 4 and 8, TensorBoard; data from ``--train-data-path``/``--valid-data-path``. Checks log lines, TensorBoard scalars, checkpoint layout.
2. ``run_b``: the same job, ``kill -9`` (whole tree) right after checkpoint 4 is published;
   relaunched with ``--load``: iterations 5-8 must reproduce run A's losses within 1e-6
   (model, optimizer, scheduler, RNG, LM data position, alignment position all restored).
3. Run A's TP=2 checkpoint resumed under TP=2 and under PP=2: same losses (resharding).
4. Bad inputs, one process: each exits 1 with a one-line error before training.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from launcher import _kill_tree  # noqa: E402  (the foundation harness: kills the whole tree)
from training_helpers import write_lm_dataset, write_table  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

VOCAB = 1000
ITER_RE = re.compile(r"iteration\s+(\d+)/\s*\d+ \| stage: (\S+) \|.*?\| lm loss: ([0-9.E+-]+)")


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _cmd(nproc: int, args: List[str]) -> List[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "--max-restarts", "0", str(REPO / "pretrain_prealign.py")] + args


def _run(nproc: int, args: List[str], timeout: float, log: Path) -> subprocess.CompletedProcess:
    with open(log, "wb") as out:
        proc = subprocess.Popen(_cmd(nproc, args), cwd=str(REPO), env=_env(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            raise AssertionError(f"timed out after {timeout}s:\n{log.read_text()[-4000:]}")
    return subprocess.CompletedProcess(proc.args, rc, log.read_text(errors="replace"), "")


def _losses(text: str) -> Dict[int, float]:
    return {int(m.group(1)): float(m.group(3)) for m in ITER_RE.finditer(text)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_e2e")
    from megatron_prealign.tokenizer import build_tokenizer

    tok = build_tokenizer("NullTokenizer", vocab_size=VOCAB)
    write_lm_dataset(str(root / "en_cs"), VOCAB, 200, seed=1, low=0, high=500, mask_every=7)
    write_lm_dataset(str(root / "tgt"), VOCAB, 40, seed=2, low=500, high=1000)
    write_lm_dataset(str(root / "tgt_valid"), VOCAB, 10, seed=3, low=500, high=1000)
    write_table(str(root / "table.jsonl"), tok, 60, offset=500)
    common = [
        "--num-layers", "2", "--hidden-size", "32", "--num-attention-heads", "4", "--seq-length", "32",
        "--micro-batch-size", "2", "--global-batch-size", "4", "--lr", "1e-3", "--min-lr", "1e-4",
        "--lr-warmup-iters", "2", "--tokenizer-type", "NullTokenizer", "--vocab-size", str(VOCAB),
        "--train-data-path", "9", str(root / "en_cs"), "1", str(root / "tgt"),
        "--valid-data-path", str(root / "tgt_valid"),
        "--prealign-mode", "init", "--prealign-table", str(root / "table.jsonl"), "--prealign-iters", "3",
        "--prealign-words-per-batch", "8", "--train-iters", "8", "--log-interval", "1",
        "--eval-interval", "1", "--eval-iters", "6", "--save-interval", "4", "--num-workers", "1",
    ]
    return root, common


@pytest.fixture(scope="module")
def run_a(setup):
    root, common = setup
    res = _run(2, common + ["--tensor-model-parallel-size", "2", "--save", str(root / "a"),
                            "--tensorboard-dir", str(root / "tb")], 240, root / "a.log")
    assert res.returncode == 0, res.stdout[-6000:]
    return res


def test_run_a_logs_stages_and_checkpoints(setup, run_a):
    root, _ = setup
    losses = _losses(run_a.stdout)
    assert sorted(losses) == list(range(1, 9)), run_a.stdout[-3000:]
    stages = {int(m.group(1)): m.group(2) for m in ITER_RE.finditer(run_a.stdout)}
    assert [stages[i] for i in range(1, 9)] == ["prealign"] * 3 + ["lm"] * 5
    # the pre-alignment stage logs per-level alignment losses and the aligned-word cosine
    first = next(line for line in run_a.stdout.splitlines() if "iteration        1/" in line)
    for key in ("align loss emb:", "align loss layer1:", "align loss layer2:", "align loss out:",
                "aligned cosine emb:", "tokens per second:", "ETA:", "learning rate:", "grad norm:"):
        assert key in first, first
    assert (root / "a" / "latest_checkpointed_iteration.txt").read_text().strip() == "8"
    for it in (4, 8):
        d = root / "a" / f"iter_{it:07d}"
        assert (d / "metadata.json").is_file() and (d / "prealign_meta.json").is_file()
    assert not [p for p in (root / "a").iterdir() if ".tmp" in p.name]
    import json

    meta = json.loads((root / "a" / "iter_0000004" / "prealign_meta.json").read_text())
    assert meta["iteration"] == 4 and meta["stage"] == "lm"
    assert meta["train_state"]["consumed_train_samples"] == 16
    assert meta["train_state"]["align"] == {"microbatch_index": 3}
    assert meta["model"]["hidden_size"] == 32 and meta["tokenizer"]["type"] == "NullTokenizer"
    assert meta["parallel"]["tensor_model_parallel_size"] == 2

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(root / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"lm loss", "learning-rate", "grad-norm", "aligned cosine emb", "align loss emb",
            "lm loss validation"} <= tags, tags
    tb_losses = {e.step: e.value for e in acc.Scalars("lm loss")}
    for it, value in losses.items():
        assert abs(tb_losses[it] - value) < 1e-5 * max(1.0, abs(value))


def _interrupted_run(root, common, name):
    """``(checkpoint dir, args, log)`` of a TP=2 run saving to and resuming from ``root/name``."""
    ckpt = root / name
    return ckpt, common + ["--tensor-model-parallel-size", "2", "--save", str(ckpt), "--load", str(ckpt)], \
        root / f"{name}1.log"


def _popen(args, out):
    return subprocess.Popen(_cmd(2, args), cwd=str(REPO), env=_env(), stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _resume_reproduces(root, name, args, stopped, run_a):
    """Relaunched with --load, the run continues at ``stopped`` with run A's losses (to 1e-6)."""
    res = _run(2, args, 240, root / f"{name}2.log")
    assert res.returncode == 0, res.stdout[-6000:]
    assert "loaded checkpoint" in res.stdout and f"at iteration {stopped}" in res.stdout
    resumed, reference = _losses(res.stdout), _losses(run_a.stdout)
    assert sorted(resumed) == list(range(stopped + 1, 9))
    for it in resumed:
        assert abs(resumed[it] - reference[it]) <= 1e-6, (it, resumed[it], reference[it])


def test_kill9_resume_reproduces_losses(setup, run_a):
    root, common = setup
    ckpt, args, log = _interrupted_run(root, common, "b")
    tracker = ckpt / "latest_checkpointed_iteration.txt"
    with open(log, "wb") as out:
        proc = _popen(args, out)
        deadline = time.monotonic() + 240
        killed_at = None
        while time.monotonic() < deadline and proc.poll() is None:
            if tracker.is_file() and tracker.read_text().strip() == "4":
                _kill_tree(proc)  # SIGKILL to torchrun and every rank: kill -9
                killed_at = 4
                break
            time.sleep(0.02)
        else:
            _kill_tree(proc)
    first = log.read_text()
    assert killed_at == 4, f"job was not killed after checkpoint 4 (rc {proc.returncode}):\n{first[-3000:]}"
    assert max(_losses(first)) < 8, "the killed run must not have finished"
    _resume_reproduces(root, "b", args, 4, run_a)


def test_tp2_checkpoint_resumes_under_pp2(setup, run_a):
    """Run A's TP=2 checkpoint continued under TP=2 and under PP=2 (dropout off, so the RNG
    streams, which cannot be mapped across layouts, do not matter): iteration 9 checks the
    resharded weights, iteration 10 the resharded optimizer state."""
    root, common = setup
    args = [a for a in common]
    args[args.index("--train-iters") + 1] = "10"
    args[args.index("--eval-iters") + 1] = "1"
    args += ["--hidden-dropout", "0", "--attention-dropout", "0", "--load", str(root / "a")]
    runs = {}
    for name, layout in (("tp2", ["--tensor-model-parallel-size", "2"]), ("pp2", ["--pipeline-model-parallel-size", "2"])):
        res = _run(2, args + layout + ["--save", str(root / name)], 240, root / f"{name}.log")
        assert res.returncode == 0, res.stdout[-6000:]
        assert "at iteration 8" in res.stdout
        runs[name] = _losses(res.stdout)
        assert sorted(runs[name]) == [9, 10]
    for it in (9, 10):
        assert abs(runs["tp2"][it] - runs["pp2"][it]) < 2e-5, runs
    assert (root / "pp2" / "latest_checkpointed_iteration.txt").read_text().strip() == "10"


BAD_INPUT_DRIVER = r"""
import contextlib, io, json, os, socket, sys
sys.path.insert(0, {repo!r})
import pretrain_prealign
results = []
for argv in json.loads(sys.argv[1]):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = pretrain_prealign.main(argv)
        except SystemExit as exc:
            rc = exc.code
    results.append([rc, err.getvalue()])
print("RESULTS" + json.dumps(results))
"""


def test_bad_inputs_fail_before_training(setup, run_a, tmp_path):
    import json

    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    root, common = setup
    from megatron_prealign.tokenizer import build_tokenizer

    tok = build_tokenizer("NullTokenizer", vocab_size=VOCAB)
    write_table(str(tmp_path / "big_ids.jsonl"), tok, 60, offset=1100)  # ids 1100.. >= vocabulary 1001
    write_table(str(tmp_path / "long_words.jsonl"), tok, 60, offset=500, word_len=3)
    # a loss mask whose documents do not match its text dataset
    write_lm_dataset(str(tmp_path / "bad"), VOCAB, 30, seed=3)
    b = IndexedDatasetBuilder(str(tmp_path / "bad_lossmask.bin"), dtype=np.uint8)
    b.add_document(np.ones(5, dtype=np.uint8), [5])
    b.finalize(str(tmp_path / "bad_lossmask.idx"))

    def with_(pairs):
        args = list(common)
        del args[args.index("--save-interval"):args.index("--save-interval") + 2]
        for k, v in pairs.items():
            if k in args:
                i = args.index(k)
                if k == "--train-data-path":
                    args[i + 1:i + 5] = [v]
                else:
                    args[i + 1] = v
            else:
                args += [k, v] if v is not None else [k]
        return args + ["--eval-iters", "1"]

    cases = {
        "table": with_({"--prealign-table": str(tmp_path / "big_ids.jsonl")}),
        "mask": with_({"--train-data-path": str(tmp_path / "bad"), "--prealign-mode": "none", "--prealign-iters": "0"}),
        "shape": with_({"--hidden-size": "64", "--load": str(root / "a")}),
        "valid": with_({"--valid-data-path": str(tmp_path / "nope")}),
        # 3-token words, --seq-length 2: no word fits the model's sequence, so no pair can form
        "batch": with_({"--seq-length": "2", "--micro-batch-size": "1", "--global-batch-size": "1",
                        "--prealign-words-per-batch": "2", "--prealign-table": str(tmp_path / "long_words.jsonl")}),
    }
    driver = tmp_path / "driver.py"
    driver.write_text(BAD_INPUT_DRIVER.format(repo=str(REPO)))
    env = _env()
    proc = subprocess.run([sys.executable, "-W", "ignore", str(driver), json.dumps(list(cases.values()))],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=240)
    assert "RESULTS" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = dict(zip(cases, json.loads(proc.stdout.split("RESULTS", 1)[1])))
    expect = {
        "table": ["--alignment-table", "1100", "big_ids.jsonl"],  # the canonical name, also via the alias
        "mask": ["bad_lossmask"],
        "shape": ["--load", "hidden_size=32", "64"],
        "valid": ["--valid-data-path", "nope.bin does not exist"],
        "batch": ["--alignment-table", "positive pair"],
    }
    for name, (rc, err) in results.items():
        lines = [ln for ln in err.splitlines() if ln.startswith("pretrain_prealign.py: error:")]
        assert rc == 1 and len(lines) == 1, (name, rc, err[-2000:])
        for word in expect[name]:
            assert word in lines[0], (name, lines[0])
    assert "iteration        1/" not in proc.stdout


def test_run_a_crosses_the_stage_boundary_and_logs_alignment(setup, run_a):
    """Default --prealign-schedule separate: a boundary at iteration 3, a checkpoint there (the
    alignment stage's end), the LM stage's LR warm-up starting again from 0, alignment stats logged."""
    root, _ = setup
    assert "stage boundary at iteration 3: optimizer state reset" in run_a.stdout
    lr = {int(m.group(1)): float(m.group(2)) for m in re.finditer(
        r"iteration\s+(\d+)/\s*\d+ \|.*?learning rate: ([0-9.E+-]+)", run_a.stdout)}
    # the logged LR is the scheduler's value after the step: LM stage step 1 of warm-up 2 -> lr/2
    assert abs(lr[4] - 0.5e-3) < 1e-9 and abs(lr[5] - 1e-3) < 1e-9, lr
    assert (root / "a" / "iter_0000003" / "prealign_meta.json").is_file()
    third = next(line for line in run_a.stdout.splitlines() if "iteration        3/" in line)
    for key in ("align emb raw cos:", "align emb centred cos:", "align emb norm ratio:", "align out centred cos:"):
        assert key in third, third


def test_resume_from_the_boundary_checkpoint_reproduces_losses(setup, run_a):
    """A job resumed from the end-of-alignment checkpoint resets the optimizer once and
    continues exactly as the uninterrupted run."""
    import shutil

    root, common = setup
    ckpt = root / "boundary"
    ckpt.mkdir()
    shutil.copytree(root / "a" / "iter_0000003", ckpt / "iter_0000003")
    for extra in (root / "a").iterdir():  # run-level files next to the iteration directories
        if extra.is_file() and extra.name != "latest_checkpointed_iteration.txt":
            shutil.copy(extra, ckpt / extra.name)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("3")
    args = common + ["--tensor-model-parallel-size", "2", "--save", str(ckpt), "--load", str(ckpt)]
    res = _run(2, args, 240, root / "boundary.log")
    assert res.returncode == 0, res.stdout[-6000:]
    assert "at iteration 3" in res.stdout and "stage boundary at iteration 3" in res.stdout
    resumed, reference = _losses(res.stdout), _losses(run_a.stdout)
    assert sorted(resumed) == [4, 5, 6, 7, 8]
    for it in resumed:
        assert abs(resumed[it] - reference[it]) <= 1e-6, (it, resumed[it], reference[it])


def _worker_with_rank(proc: subprocess.Popen, rank: int):
    import psutil

    for child in psutil.Process(proc.pid).children():
        try:
            if child.environ().get("RANK") == str(rank):
                return child
        except psutil.Error:
            continue
    return None


def test_sigterm_saves_exits_cleanly_and_resumes(setup, run_a):
    """SIGTERM to ONE rank (rank 1) mid-run: both ranks agree (all-reduce), save after the same
    iteration and exit 0; a relaunch with --load reproduces the uninterrupted run's losses."""
    import signal

    root, common = setup
    ckpt, args, log = _interrupted_run(root, common, "sigterm")
    with open(log, "wb") as out:
        proc = _popen(args, out)
        deadline = time.monotonic() + 240
        signalled = False
        try:
            while time.monotonic() < deadline and proc.poll() is None and not signalled:
                if re.search(r"iteration\s+2/", log.read_text(errors="replace")):
                    victim = _worker_with_rank(proc, 1)
                    assert victim is not None, "rank 1 not found among torchrun's children"
                    victim.send_signal(signal.SIGTERM)
                    signalled = True
                time.sleep(0.02)
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except (subprocess.TimeoutExpired, AssertionError):
            _kill_tree(proc)
            raise
    first = log.read_text(errors="replace")
    assert signalled, first[-3000:]
    assert rc == 0, f"rc {rc}:\n{first[-4000:]}"
    m = re.search(r"exiting at iteration (\d+) after a termination signal", first)
    assert m, first[-3000:]
    stopped = int(m.group(1))
    assert 2 <= stopped < 8 and max(_losses(first)) == stopped
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == str(stopped)
    _resume_reproduces(root, "sigterm", args, stopped, run_a)
