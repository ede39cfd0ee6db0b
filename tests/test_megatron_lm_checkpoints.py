"""Checkpoints both ways between megatron-prealign and Megatron-LM's own checkpoint code.

Megatron-LM's ``megatron/training/checkpointing.py`` (``save_checkpoint``/``load_checkpoint``)
is not part of megatron-core 0.16.1 (the pinned version); the megatron-core wheels from 0.17
on carry it. A session fixture downloads such a wheel with pip (no dependencies) into a cache
folder, extracts only ``megatron/training`` and runs it in a subprocess
(``tests/megatron_lm_harness.py``) against the installed megatron-core, on CPU. The tests skip,
saying why, when the wheel cannot be downloaded or its code does not import here.

Environment: ``MEGATRON_LM_VERSION`` (default ``0.17.1``, the closest to 0.16.1 and the newest
whose training code imports on Python 3.11; 0.18/0.19 use ``typing.override``, Python >= 3.12,
and skip here), ``MEGATRON_LM_CACHE`` (default ``~/.cache/megatron-prealign/megatron-lm``),
``MEGATRON_LM_ROOT`` (an existing folder holding ``megatron/training``; no download).

Nothing of Megatron-LM is committed to this repository.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
import zipfile

import pytest
import torch

from megatron_prealign.training import checkpointing

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
HARNESS = os.path.join(HERE, "megatron_lm_harness.py")
sys.path.insert(0, HERE)
import megatron_lm_harness as harness  # noqa: E402  (shared model/batch/step definitions only)

VERSION = os.environ.get("MEGATRON_LM_VERSION", "0.17.1")


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=_free_port(), RANK="0", WORLD_SIZE="1",
               LOCAL_RANK="0")
    return env


def _extract_training(wheel: str, dest: str) -> None:
    tmp = f"{dest}.tmp-{os.getpid()}"
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.startswith("megatron/training/")]
        if not names:
            raise RuntimeError(f"{wheel} has no megatron/training")
        z.extractall(tmp, members=names)
    os.replace(tmp, dest)


@pytest.fixture(scope="session")
def megatron_lm_root():
    """Folder holding Megatron-LM's ``megatron/training`` package (downloaded once, cached)."""
    root = os.environ.get("MEGATRON_LM_ROOT")
    if not root:
        cache = os.environ.get("MEGATRON_LM_CACHE",
                               os.path.join(os.path.expanduser("~"), ".cache", "megatron-prealign", "megatron-lm"))
        root = os.path.join(cache, f"megatron-core-{VERSION}")
        if not os.path.isdir(os.path.join(root, "megatron", "training")):
            os.makedirs(cache, exist_ok=True)
            wheels = glob.glob(os.path.join(cache, f"megatron_core-{VERSION}-*.whl"))
            if not wheels:
                cmd = [sys.executable, "-m", "pip", "download", f"megatron-core=={VERSION}", "--no-deps",
                       "--ignore-requires-python", "--only-binary=:all:", "-d", cache, "-q"]
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    pytest.skip(f"cannot download megatron-core=={VERSION} (Megatron-LM's training code): {exc}")
                wheels = glob.glob(os.path.join(cache, f"megatron_core-{VERSION}-*.whl"))
                if proc.returncode != 0 or not wheels:
                    last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
                    pytest.skip(f"cannot download megatron-core=={VERSION} (Megatron-LM's training code): {last[0]}")
            try:
                _extract_training(wheels[0], root)
            except (OSError, zipfile.BadZipFile, RuntimeError) as exc:
                pytest.skip(f"cannot extract Megatron-LM's training code from {wheels[0]}: {exc}")
    proc = subprocess.run([sys.executable, HARNESS, "probe", "--mlm-root", root], capture_output=True, text=True,
                          env=_env(), timeout=600)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or ["?"]
        pytest.skip(f"Megatron-LM's training code from megatron-core {VERSION} does not import here: {last[0]}")
    return root


def _run_harness(root: str, mode: str, out: str, *flags: str) -> dict:
    proc = subprocess.run([sys.executable, HARNESS, mode, "--mlm-root", root, "--out", out, "--", *flags],
                          capture_output=True, text=True, env=_env(), timeout=900)
    assert proc.returncode == 0, f"Megatron-LM {mode} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    with open(out) as f:
        return json.load(f)


def _our_meta(consumed: int) -> dict:
    cfg = harness.model_config()
    args = {"seed": 1234, "num_layers": cfg.num_layers, "hidden_size": cfg.hidden_size,
            "num_attention_heads": cfg.num_attention_heads, "seq_length": harness.S,
            "max_position_embeddings": harness.S, "micro_batch_size": harness.B,
            "global_batch_size": harness.B, "tokenizer_type": "NullTokenizer", "vocab_size": harness.V - 1,
            "make_vocab_size_divisible_by": 128, "train_iters": 10, "lr": 1e-2}
    return {"model": cfg.to_dict(), "tokenizer": {"type": "NullTokenizer", "vocab_size": harness.V},
            "args": args}


def test_megatron_lm_resumes_our_checkpoint_with_plain_load(tmp_path, megatron_lm_root, single_process_parallel_state):
    """Ours -> Megatron-LM ``load_checkpoint`` (plain ``--load``, no ``--finetune``/``--no-load-*``):
    iteration, FLOPs, consumed samples, scheduler, RNG, weights and Adam state all round-trip,
    so its next two training steps equal ours."""
    model, opt, sched = harness.build(1)
    for s in range(3):
        harness.step(model, opt, sched, 100 + s)
    state = {"iteration": 3, "consumed_train_samples": 6, "consumed_valid_samples": 4, "stage": "lm",
             "num_floating_point_operations_so_far": 4242}
    checkpointing.save_checkpoint(str(tmp_path), 3, model, opt, sched, state, _our_meta(6))
    expected_rand = torch.rand(3).tolist()
    expected_logits = harness.logits(model)
    expected_losses = [harness.step(model, opt, sched, s) for s in (1, 2)]

    got = _run_harness(megatron_lm_root, "load", str(tmp_path / "mlm.json"), "--load", str(tmp_path))
    assert got["iteration"] == 3
    assert got["flops"] == 4242
    assert got["consumed_train_samples"] == 6 and got["consumed_valid_samples"] == 4
    assert got["num_steps"] == 3 * harness.B  # Megatron-LM counts the schedule in samples
    assert got["rand"] == expected_rand  # RNG state restored (Megatron-LM's shape)
    assert got["logits"] == expected_logits  # weights
    assert got["losses"] == expected_losses  # Adam moments, LR schedule, dropout RNG streams


def test_our_loaders_read_a_megatron_lm_checkpoint(tmp_path, megatron_lm_root, single_process_parallel_state):
    """Megatron-LM ``save_checkpoint`` -> our eval loader (no prealign_meta.json: the model shape
    comes from common.pt's args) gives the logits of the model that saved it; our training
    loader resumes it: iteration, consumed samples, scheduler, RNG and the next two steps."""
    ref = _run_harness(megatron_lm_root, "save", str(tmp_path / "mlm.json"), "--save", str(tmp_path / "ckpt"),
                       "--seed", "1234")
    root = str(tmp_path / "ckpt")
    assert not os.path.exists(os.path.join(root, "iter_0000003", checkpointing.META_FILENAME))

    meta = checkpointing.read_meta(root)
    assert meta["source"] == "megatron-lm" and meta["iteration"] == 3
    assert {k: meta["model"][k] for k in ("num_layers", "hidden_size", "num_attention_heads", "vocab_size",
                                          "max_sequence_length")} == {"num_layers": 2, "hidden_size": 32,
                                                                      "num_attention_heads": 4, "vocab_size": harness.V,
                                                                      "max_sequence_length": harness.S}

    eval_model, cfg, _ = checkpointing.load_model_for_eval(root)
    b = harness._batch(7)
    with torch.no_grad():
        out = eval_model(b["tokens"], b["position_ids"], b["attention_mask"])
    assert out.float().tolist() == ref["logits"]

    model, opt, sched = harness.build(99)
    it, train_state = checkpointing.load_checkpoint(root, model, opt, sched)
    assert it == 3 and train_state["consumed_train_samples"] == 6 and train_state["consumed_valid_samples"] == 4
    assert sched.num_steps == 3  # samples -> our iterations
    assert torch.rand(3).tolist() == ref["rand"]
    assert harness.logits(model) == ref["logits"]
    assert [harness.step(model, opt, sched, s) for s in (1, 2)] == ref["losses"]
