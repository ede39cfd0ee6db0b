"""Checkpoints: Megatron-LM layout, full state round trip, shape checks, load_model_for_eval."""

from __future__ import annotations

import json
import os

import pytest
import torch

from megatron_prealign.model.gpt import GPTModelConfig
from megatron_prealign.training import checkpointing

from megatron_lm_harness import _batch, build as _setup  # the Megatron-LM interop tests' model, batches, optimizer

S, B, V = 16, 2, 128


def _cfg(**kw) -> GPTModelConfig:
    base = dict(num_layers=2, hidden_size=32, num_attention_heads=4, vocab_size=V, max_sequence_length=S)
    base.update(kw)
    return GPTModelConfig(**base)


def _step(model, opt, sched, seed):
    from megatron_prealign.training.loop import train_step
    from megatron_prealign.training.stages import Stage

    return train_step(Stage("lm", 1.0, 0.0), model, opt, sched, iter([_batch(seed)]), 1, S, B)[0]["lm loss"]


def test_save_load_round_trip_continues_identically(tmp_path, single_process_parallel_state):
    model, opt, sched = _setup(1)
    _step(model, opt, sched, 0)
    state = {"iteration": 1, "consumed_train_samples": 2, "stage": "lm", "align": {"microbatch_index": 3}}
    meta = {"model": _cfg().to_dict(), "tokenizer": {"type": "NullTokenizer"}, "args": {"seed": 1}}
    path = checkpointing.save_checkpoint(str(tmp_path), 1, model, opt, sched, state, meta)
    assert path == str(tmp_path / "iter_0000001")
    assert (tmp_path / "latest_checkpointed_iteration.txt").read_text() == "1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_0000001", "latest_checkpointed_iteration.txt"]
    saved_meta = json.loads((tmp_path / "iter_0000001" / "prealign_meta.json").read_text())
    assert saved_meta["iteration"] == 1 and saved_meta["train_state"]["align"] == {"microbatch_index": 3}
    assert saved_meta["parallel"] == {"tensor_model_parallel_size": 1, "pipeline_model_parallel_size": 1,
                                      "data_parallel_size": 1}
    rng_after_save = torch.rand(3)
    expected = [_step(model, opt, sched, s) for s in (1, 2)]

    model2, opt2, sched2 = _setup(99)  # different initial weights
    torch.rand(5)
    it, train_state = checkpointing.load_checkpoint(str(tmp_path), model2, opt2, sched2)
    assert it == 1 and train_state["consumed_train_samples"] == 2
    assert torch.equal(torch.rand(3), rng_after_save)  # RNG restored
    assert sched2.num_steps == 1
    got = [_step(model2, opt2, sched2, s) for s in (1, 2)]
    assert got == expected  # weights, Adam moments and LR schedule all restored


def test_model_shape_mismatch_is_one_line(tmp_path):
    meta = {"model": _cfg().to_dict()}
    checkpointing.check_model_compatible(meta, _cfg(hidden_dropout=0.0), "ckpt")  # not a shape field
    with pytest.raises(ValueError) as err:
        checkpointing.check_model_compatible(meta, _cfg(hidden_size=64, num_layers=4), "ckpt")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("--load ckpt")
    assert "hidden_size=32 (checkpoint) vs 64 (flags)" in msg and "num_layers=2" in msg


def test_tracker_file_errors(tmp_path):
    assert checkpointing.read_latest_iteration(str(tmp_path)) is None
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("garbage")
    with pytest.raises(ValueError, match="expected an iteration number"):
        checkpointing.read_latest_iteration(str(tmp_path))
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("7")
    with pytest.raises(FileNotFoundError, match="iter_0000007"):
        checkpointing.read_meta(str(tmp_path))


def test_load_model_for_eval(tmp_path, single_process_parallel_state):
    model, opt, sched = _setup(5)
    _step(model, opt, sched, 0)
    meta = {"model": _cfg().to_dict(), "args": {"seed": 5}}
    checkpointing.save_checkpoint(str(tmp_path), 3, model, opt, sched, {"iteration": 3}, meta)
    checkpointing.save_checkpoint(str(tmp_path), 4, model, opt, sched, {"iteration": 4}, meta)
    evaluated, cfg, got_meta = checkpointing.load_model_for_eval(str(tmp_path), iteration=3)
    assert got_meta["iteration"] == 3 and cfg.hidden_dropout == 0.0 and not evaluated.training
    for (name, a), b in zip(model[0].module.named_parameters(), evaluated.parameters()):
        assert torch.equal(a, b), name
    assert checkpointing.load_model_for_eval(str(tmp_path))[2]["iteration"] == 4
    assert os.listdir(tmp_path / "iter_0000004")  # sanity: written


def test_load_model_for_eval_seeds_an_unseeded_rng_tracker(tmp_path, single_process_parallel_state):
    """Parallel state set up by the caller, Megatron's RNG tracker never seeded: the model needs the
    tracker (GPU weight init, attention dropout forks), so load_model_for_eval seeds it (with the
    checkpoint's --seed)."""
    from megatron.core import tensor_parallel

    model, opt, sched = _setup(5)
    checkpointing.save_checkpoint(str(tmp_path), 1, model, opt, sched, {"iteration": 1},
                                  {"model": _cfg().to_dict(), "args": {"seed": 5}})
    tracker = tensor_parallel.get_cuda_rng_tracker()
    tracker.reset()
    assert not tracker.get_states()
    evaluated, _, _ = checkpointing.load_model_for_eval(str(tmp_path))
    assert "model-parallel-rng" in tracker.get_states()
    # attention forks the tracker's model-parallel stream: unseeded, this forward would raise
    out = evaluated(torch.randint(0, V, (B, S)), torch.arange(S).expand(B, S), None)
    assert out.shape[:2] == (B, S) and torch.isfinite(out).all()
    for (name, a), b in zip(model[0].module.named_parameters(), evaluated.parameters()):
        assert torch.equal(a, b), name
    # an already seeded tracker is left alone (the caller's dropout streams are not reset)
    with tracker.fork():
        torch.rand(3)
    before = {k: v.clone() for k, v in tracker.get_states().items()}
    checkpointing.load_model_for_eval(str(tmp_path))
    assert all(torch.equal(before[k], v) for k, v in tracker.get_states().items())


def test_load_model_for_training_keeps_dropout(tmp_path, single_process_parallel_state):
    model, opt, sched = _setup(5)
    checkpointing.save_checkpoint(str(tmp_path), 1, model, opt, sched, {"iteration": 1},
                                  {"model": _cfg(hidden_dropout=0.3, attention_dropout=0.2).to_dict(),
                                   "args": {"seed": 5}})
    x = torch.randint(0, V, (B, S))
    pos = torch.arange(S).expand(B, S)

    def twice(m):
        return [m(x, pos, None) for _ in range(2)]

    evaluated, cfg, _ = checkpointing.load_model_for_eval(str(tmp_path))
    assert (cfg.hidden_dropout, cfg.attention_dropout, evaluated.training) == (0.0, 0.0, False)
    a, b = twice(evaluated)
    assert torch.equal(a, b)  # evaluation is deterministic
    tuned, cfg, _ = checkpointing.load_model_for_eval(str(tmp_path), for_training=True)
    assert (cfg.hidden_dropout, cfg.attention_dropout, tuned.training) == (0.3, 0.2, True)
    a, b = twice(tuned)
    assert not torch.equal(a, b)  # the checkpoint's dropout is active
    tuned.eval()
    a, b = twice(tuned)
    assert torch.equal(a, b)
    _, cfg, _ = checkpointing.load_model_for_eval(str(tmp_path), for_training=True, hidden_dropout=0.0)
    assert (cfg.hidden_dropout, cfg.attention_dropout) == (0.0, 0.2)
    with pytest.raises(ValueError, match="hidden_dropout=0.1 needs for_training"):
        checkpointing.load_model_for_eval(str(tmp_path), hidden_dropout=0.1)
    with pytest.raises(ValueError, match="--attention-dropout 1.0"):
        checkpointing.load_model_for_eval(str(tmp_path), for_training=True, attention_dropout=1.0)


# ---------------------------------------------------------------------------------------------
# Megatron-LM layout (the Megatron-LM side itself: tests/test_megatron_lm_checkpoints.py)
# ---------------------------------------------------------------------------------------------


def _saved(tmp_path, seed=5, iteration=3, args=None):
    model, opt, sched = _setup(seed)
    _step(model, opt, sched, 0)
    meta = {"model": _cfg().to_dict(), "tokenizer": {"type": "NullTokenizer", "vocab_size": V},
            "args": args if args is not None else {"seed": seed, "global_batch_size": 4, "tokenizer_type": "NullTokenizer",
                                                  "vocab_size": V - 1}}
    state = {"iteration": iteration, "consumed_train_samples": 12, "consumed_valid_samples": 8,
             "num_floating_point_operations_so_far": 77}
    checkpointing.save_checkpoint(str(tmp_path), iteration, model, opt, sched, state, meta)
    return model, opt, sched


def test_common_state_has_megatron_lm_keys_and_rng_shape(tmp_path, single_process_parallel_state):
    """What Megatron-LM's load_checkpoint reads, in its shape: common.pt keys, the args it
    consults, the scheduler counted in samples, and rng_state sharded over (PP, TP) only."""
    import argparse

    from megatron.core import dist_checkpointing
    from torch.distributed.checkpoint import FileSystemReader

    _, _, sched = _saved(tmp_path)
    path = str(tmp_path / "iter_0000003")
    common = dist_checkpointing.load_common_state_dict(path)
    assert common["iteration"] == 3 and common["checkpoint_version"] == 3.0
    assert common["num_floating_point_operations_so_far"] == 77
    args = common["args"]
    assert isinstance(args, argparse.Namespace)
    assert (args.tensor_model_parallel_size, args.pipeline_model_parallel_size, args.world_size,
            args.data_parallel_size) == (1, 1, 1, 1)
    assert (args.consumed_train_samples, args.consumed_valid_samples) == (12, 8)
    assert (args.num_layers, args.hidden_size, args.num_attention_heads, args.padded_vocab_size,
            args.max_position_embeddings) == (2, 32, 4, V, S)
    assert args.no_save_rng is False and args.no_save_optim is False
    assert common["opt_param_scheduler"]["num_steps"] == sched.num_steps * 4  # samples (x global batch)
    assert common["opt_param_scheduler"]["lr_warmup_steps"] == sched.lr_warmup_steps * 4
    assert dist_checkpointing.load_content_metadata(path) == {"singleton_local_shards": False,
                                                               "chained_optim_avoid_prefix": True}
    keys = FileSystemReader(path).read_metadata().state_dict_metadata
    assert [k for k in keys if k.startswith("rng_state")] == ["rng_state/shard_0.0_1.1"]  # (PP, TP) = (1, 1)


def _strip_common(path, *keys):
    import torch as _t

    f = os.path.join(path, "common.pt")
    common = _t.load(f, weights_only=False)
    for k in keys:
        common.pop(k, None)
    _t.save(common, f)


def test_eval_loads_a_checkpoint_without_prealign_meta(tmp_path, single_process_parallel_state):
    """A Megatron-LM style checkpoint (no prealign_meta.json): the model comes from common.pt's
    args; without args from the model flags (one-line error naming the missing flags)."""
    from megatron_prealign.eval.loading import EvalLoadError, load_checkpoint_for_eval

    model, _, _ = _saved(tmp_path)
    it_dir = tmp_path / "iter_0000003"
    os.remove(it_dir / checkpointing.META_FILENAME)
    x = torch.randint(0, V, (B, S), generator=torch.Generator().manual_seed(3))
    pos = torch.arange(S).expand(B, S)
    ref_model = model[0].module
    ref_model.eval()
    with torch.no_grad():
        ref = ref_model(x, pos, None)

    meta = checkpointing.read_meta(str(tmp_path))
    assert meta["source"] == "megatron-lm" and meta["model"]["hidden_size"] == 32 and meta["vocab_size"] == V
    evaluated, cfg, _, tok = load_checkpoint_for_eval(str(tmp_path))
    assert tok.vocab_size == V  # NullTokenizer rebuilt from the checkpoint's tokenizer args
    with torch.no_grad():
        assert torch.equal(evaluated(x, pos, None), ref)
    with pytest.raises(EvalLoadError, match="--hidden-size 64 .checkpoint: 32."):
        load_checkpoint_for_eval(str(tmp_path), model_config={"hidden_size": 64})

    _strip_common(str(it_dir), "args")
    with pytest.raises(EvalLoadError) as err:
        load_checkpoint_for_eval(str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and "--num-layers, --hidden-size, --num-attention-heads, --max-position-embeddings" in msg
    flags = {"num_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "max_sequence_length": S}
    from megatron_prealign.tokenizer import build_tokenizer

    evaluated, cfg, _, _ = load_checkpoint_for_eval(str(tmp_path), tokenizer=build_tokenizer("NullTokenizer", vocab_size=V - 1),
                                                    model_config=flags)
    assert cfg.vocab_size == V  # from the embedding's global shape
    with torch.no_grad():
        assert torch.equal(evaluated(x, pos, None), ref)


def test_training_resumes_a_checkpoint_without_meta(tmp_path, single_process_parallel_state):
    """pretrain's --load path (read_meta + check_model_compatible + load_checkpoint) on a
    checkpoint without prealign_meta.json continues exactly like one with it."""
    model, opt, sched = _saved(tmp_path)
    rng_after = torch.rand(3)
    expected = [_step(model, opt, sched, s) for s in (1, 2)]
    os.remove(tmp_path / "iter_0000003" / checkpointing.META_FILENAME)
    meta = checkpointing.read_meta(str(tmp_path))
    checkpointing.check_model_compatible(meta, _cfg(), str(tmp_path))
    with pytest.raises(ValueError, match="hidden_size=32 .checkpoint. vs 64"):
        checkpointing.check_model_compatible(meta, _cfg(hidden_size=64), str(tmp_path))
    model2, opt2, sched2 = _setup(99)
    it, ts = checkpointing.load_checkpoint(str(tmp_path), model2, opt2, sched2)
    assert it == 3 and ts["consumed_train_samples"] == 12 and sched2.num_steps == sched.num_steps - 2
    assert torch.equal(torch.rand(3), rng_after)
    assert [_step(model2, opt2, sched2, s) for s in (1, 2)] == expected


# ---------------------------------------------------------------------------------------------
# Hostile conditions (issue 11)
# ---------------------------------------------------------------------------------------------


def test_truncated_checkpoint_files_are_one_line_errors_naming_the_file(tmp_path, single_process_parallel_state):
    _saved(tmp_path)
    it_dir = tmp_path / "iter_0000003"
    distcp = sorted(it_dir.glob("*.distcp"), key=lambda p: -p.stat().st_size)[0]
    data = distcp.read_bytes()
    distcp.write_bytes(data[: len(data) // 2])
    model, opt, sched = _setup(1)
    for load in (lambda: checkpointing.load_checkpoint(str(tmp_path), model, opt, sched),
                 lambda: checkpointing.load_model_for_eval(str(tmp_path))):
        with pytest.raises(checkpointing.CheckpointError) as err:
            load()
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(str(distcp)) and "truncated" in msg
    distcp.write_bytes(data)
    common = it_dir / "common.pt"
    cdata = common.read_bytes()
    common.write_bytes(cdata[:100])
    with pytest.raises(checkpointing.CheckpointError) as err:
        checkpointing.load_checkpoint(str(tmp_path), model, opt, sched)
    assert "\n" not in str(err.value) and str(err.value).startswith(str(common))
    common.write_bytes(cdata)
    # A damaged .metadata: read by training's object look-up and, without prealign_meta.json, by
    # the shape probe that derives the metadata (training and eval).
    metadata = it_dir / ".metadata"
    mdata = metadata.read_bytes()
    metadata.write_bytes(mdata[: len(mdata) // 2])

    def error_of(load):
        with pytest.raises(checkpointing.CheckpointError) as err:
            load()
        return str(err.value)

    named = str(metadata) + ": checkpoint file truncated"
    assert error_of(lambda: checkpointing.load_checkpoint(str(tmp_path), model, opt, sched)).startswith(named)
    (it_dir / "prealign_meta.json").rename(it_dir / "meta.bak")
    assert error_of(lambda: checkpointing.load_checkpoint(str(tmp_path), model, opt, sched)).startswith(named)
    assert error_of(lambda: checkpointing.read_meta(str(tmp_path))).startswith(named)
    metadata.write_bytes(mdata)
    (it_dir / "meta.bak").rename(it_dir / "prealign_meta.json")
    checkpointing.load_checkpoint(str(tmp_path), model, opt, sched)  # intact again: loads


def test_disk_full_during_save_is_one_line_and_removes_the_temporary(tmp_path, monkeypatch,
                                                                     single_process_parallel_state):
    import errno

    model, opt, sched = _saved(tmp_path, iteration=1)
    real_save = torch.save

    def full_disk(obj, f, *a, **k):  # the common-state write: some bytes land, then ENOSPC
        if not isinstance(f, (str, os.PathLike)):  # in-memory serialisation of objects
            return real_save(obj, f, *a, **k)
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(checkpointing.CheckpointError) as err:
        checkpointing.save_checkpoint(str(tmp_path), 2, model, opt, sched, {"iteration": 2},
                                      {"model": _cfg().to_dict(), "args": {"seed": 1}})
    monkeypatch.setattr(torch, "save", real_save)
    msg = str(err.value)
    assert "\n" not in msg and "No space left on device" in msg and f"iter_0000002.tmp-{os.getpid()}" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_0000001", "latest_checkpointed_iteration.txt"]
    assert checkpointing.read_latest_iteration(str(tmp_path)) == 1


def test_stale_temporaries_of_dead_processes_are_cleaned_by_the_next_run(tmp_path, single_process_parallel_state):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f"iter_0000005.tmp-{dead.pid}").mkdir()
        (tmp_path / f"iter_0000005.tmp-{dead.pid}" / "__0_0.distcp").write_bytes(b"x" * 100)
        (tmp_path / f"latest_checkpointed_iteration.txt.tmp-{dead.pid}").write_text("5")
        (tmp_path / f"iter_0000006.tmp-{alive.pid}").mkdir()  # a save in progress elsewhere
        (tmp_path / "notes.txt").write_text("kept")
        _saved(tmp_path, iteration=1)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["iter_0000001", "latest_checkpointed_iteration.txt", f"iter_0000006.tmp-{alive.pid}", "notes.txt"])
        # loading (a rerun that only resumes) cleans too
        (tmp_path / f"iter_0000002.tmp-{dead.pid}").mkdir()
        model, opt, sched = _setup(1)
        checkpointing.load_checkpoint(str(tmp_path), model, opt, sched)
        assert not (tmp_path / f"iter_0000002.tmp-{dead.pid}").exists()
    finally:
        alive.kill()
        alive.wait()


def test_tensor_parallel_larger_than_world_is_one_line(single_process_parallel_state):
    from megatron_prealign.platform import initialize

    with pytest.raises(ValueError) as err:
        initialize(4, 1, 1234)
    msg = str(err.value)
    assert "\n" not in msg and "--tensor-model-parallel-size 4" in msg and "processes (1)" in msg


def test_export_reads_a_checkpoint_without_prealign_meta(tmp_path, single_process_parallel_state):
    """export_hf on a Megatron-LM style checkpoint (no prealign_meta.json) writes the same
    weights as on the same checkpoint with it."""
    from safetensors.torch import load_file

    from megatron_prealign.export.hf import HFExportConfig, export_hf

    _saved(tmp_path / "ckpt")
    with_meta = export_hf(HFExportConfig(load=str(tmp_path / "ckpt"), output=str(tmp_path / "a"), tokenizer=False))
    os.remove(tmp_path / "ckpt" / "iter_0000003" / checkpointing.META_FILENAME)
    without = export_hf(HFExportConfig(load=str(tmp_path / "ckpt"), output=str(tmp_path / "b"), tokenizer=False))
    a = load_file(os.path.join(with_meta, "model.safetensors"))
    b = load_file(os.path.join(without, "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
