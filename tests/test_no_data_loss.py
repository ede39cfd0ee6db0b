"""No data loss and no stale side files (issue 11).

* An output may never be one of the inputs (``make_en_clone.py``) or the checkpoint being read
  (``export_hf.py``); ``--overwrite`` replaces only a previous export.
* A plain re-run of ``preprocess_data.py`` on a prefix that had a ``--codeswitch`` run removes
  the old ``_lossmask``; a loss mask recorded for another version of its text is refused by the
  training data loader.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import stat
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from megatron_prealign.data.indexed import IndexedDatasetError, loss_mask_prefix
from megatron_prealign.data.preprocess_data import PreprocessConfig, preprocess
from megatron_prealign.data.readers import ReaderConfig
from megatron_prealign.tokenizer import build_tokenizer
from training_helpers import write_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)


def tree_digest(folder):
    """Names and contents of every file under ``folder`` (to prove it is untouched)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


# ---------------------------------------------------------------------------------------------
# make_en_clone.py: output == input


@pytest.mark.parametrize("spelling", ["same", "dot-slash", "symlink"])
def test_make_en_clone_refuses_to_overwrite_its_input(tmp_path, spelling):
    prefix = write_dataset(str(tmp_path / "en"), [[1, 2, 3, 10], [4, 5, 10]])
    before = tree_digest(tmp_path)
    out = {"same": prefix, "dot-slash": str(tmp_path / "." / "en")}.get(spelling)
    if spelling == "symlink":
        os.symlink(tmp_path, tmp_path / "link")
        out = str(tmp_path / "link" / "en")
        before = tree_digest(tmp_path)
    r = subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_en_clone.py"), "--input", prefix,
                        "--output-prefix", out, "--tokenizer-type", "NullTokenizer", "--vocab-size", "10"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"make_en_clone.py: error: --output-prefix {out} would overwrite the input dataset {prefix}"
    assert tree_digest(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# export_hf.py: --overwrite deletes only previous exports


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, single_process_parallel_state):
    pytest.importorskip("transformers")
    from megatron.core import tensor_parallel

    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model
    from megatron_prealign.training import checkpointing

    cfg = GPTModelConfig(num_layers=1, hidden_size=32, num_attention_heads=2, vocab_size=128, max_sequence_length=16,
                         hidden_dropout=0.0, attention_dropout=0.0, transformer_impl="local")
    import torch

    torch.manual_seed(0)
    tensor_parallel.model_parallel_cuda_manual_seed(0)
    model = build_gpt_model(cfg).eval()
    root = tmp_path_factory.mktemp("ckpt_root") / "ckpt"
    meta = {"model": cfg.to_dict(), "tokenizer": {"type": "NullTokenizer", "vocab_size": 101, "eod": 100, "pad": 100},
            "args": {"seed": 1}}
    checkpointing.save_checkpoint(str(root), 3, [model], None, None, {"iteration": 3}, meta)
    return str(root)


def _export(**kw):
    from megatron_prealign.export import ExportError, HFExportConfig, export_hf

    with pytest.raises(ExportError) as err:
        export_hf(HFExportConfig(**kw))
    assert "\n" not in str(err.value)
    return str(err.value)


def test_export_overwrite_never_deletes_the_checkpoint(checkpoint, tmp_path):
    before = tree_digest(checkpoint)
    iter_dir = os.path.join(checkpoint, "iter_0000003")
    assert "is or contains the checkpoint being read" in _export(load=checkpoint, output=checkpoint, overwrite=True)
    assert "is or contains the checkpoint being read" in _export(load=checkpoint, output=iter_dir, overwrite=True)
    assert "is or contains the checkpoint being read" in _export(load=iter_dir, output=os.path.dirname(checkpoint),
                                                                 overwrite=True)
    assert "lies inside the checkpoint being read" in _export(load=checkpoint, output=os.path.join(iter_dir, "hf"))
    assert tree_digest(checkpoint) == before


def test_export_overwrite_replaces_only_a_previous_export(checkpoint, tmp_path):
    from megatron_prealign.export import EXPORT_SENTINEL, HFExportConfig, export_hf

    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    msg = _export(load=checkpoint, output=str(other), overwrite=True)
    assert f"is not a previous export (no {EXPORT_SENTINEL} in it)" in msg
    assert (other / "notes.txt").read_text() == "keep me"
    plain_file = tmp_path / "file"
    plain_file.write_text("x")
    assert "is not a previous export" in _export(load=checkpoint, output=str(plain_file), overwrite=True)
    out = tmp_path / "hf"
    export_hf(HFExportConfig(load=checkpoint, output=str(out)))
    assert (out / EXPORT_SENTINEL).is_file() and (out / "config.json").is_file()
    (out / "stale.txt").write_text("from the first export")
    export_hf(HFExportConfig(load=checkpoint, output=str(out), overwrite=True))
    assert (out / EXPORT_SENTINEL).is_file() and not (out / "stale.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["file", "hf", "precious"]


def test_export_into_an_unwritable_place_is_one_line(checkpoint, tmp_path):
    """Works as root too: the parent of --output is a regular file."""
    (tmp_path / "afile").write_text("x")
    msg = _export(load=checkpoint, output=str(tmp_path / "afile" / "hf"))
    assert msg.startswith(f"--output {tmp_path / 'afile' / 'hf'}: cannot create {tmp_path / 'afile'}")
    assert sorted(os.listdir(tmp_path)) == ["afile"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_export_into_a_read_only_directory_is_one_line(checkpoint, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert "is not writable" in _export(load=checkpoint, output=str(ro / "hf"))
        r = subprocess.run([sys.executable, os.path.join(REPO, "tools", "export_hf.py"), "--load", checkpoint,
                            "--output", str(ro / "sub" / "hf")], capture_output=True, text=True, env=ENV, timeout=300)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines()[-1] == f"error: --output {ro / 'sub' / 'hf'}: directory {ro} is not writable"
        assert os.listdir(ro) == []
    finally:
        ro.chmod(stat.S_IRWXU)


# ---------------------------------------------------------------------------------------------
# Stale loss masks


class _Codeswitcher:
    """Replaces every id 5 by 905 and zeroes the mask there (a stand-in with the real interface)."""

    vocab_size = 1001

    def apply(self, tokens, doc_index):
        out = np.where(tokens == 5, 905, tokens).astype(np.int32)
        return out, (tokens != 5).astype(np.uint8)


class _Tok:
    vocab_size = 1001
    eod = 1000
    pad = 1000

    def __init__(self):
        self.unique_identifiers = OrderedDict(cls="_Tok")


def _build_train(prefix, tmp_path):
    from megatron_prealign.data.masked_gpt_dataset import build_train_valid_test_datasets, masked_gpt_dataset_config

    cfg = masked_gpt_dataset_config(_Tok(), seq_length=4, seed=1, blend=([prefix], None), split="1,0,0",
                                    data_cache_path=str(tmp_path / "cache"))
    return build_train_valid_test_datasets(cfg, [4, None, None], is_built_on_rank=lambda: True)[0]


def _run(tmp_path, texts, codeswitcher=None):
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    factory = functools.partial(build_tokenizer, "NullTokenizer", vocab_size=1000)
    preprocess([str(tmp_path / "in.jsonl")], factory, PreprocessConfig(output_prefix=str(tmp_path / "en"), append_eod=True),
               ReaderConfig(), codeswitcher=codeswitcher)
    return str(tmp_path / "en_text_document")


def test_plain_rerun_removes_the_stale_loss_mask(tmp_path):
    texts = ["1 5 2 5 3 4 6 7 8", "5 5 9 10 11 12 13"]
    text = _run(tmp_path, texts, _Codeswitcher())
    mask = loss_mask_prefix(text)
    assert os.path.isfile(mask + ".bin") and os.path.isfile(mask + ".json")
    mask_ds = IndexedDataset(mask)  # keep it alive: items view its mmap
    assert mask_ds[0].tolist() == [1, 0, 1, 0, 1, 1, 1, 1, 1, 1]
    del mask_ds
    ds = _build_train(text, tmp_path)
    assert min(float(ds[i]["loss_mask"].min()) for i in range(len(ds))) == 0.0  # masked where substituted
    _run(tmp_path, texts)  # plain re-run on the same prefix
    assert not [f for f in os.listdir(tmp_path) if "_lossmask" in f]
    ds = _build_train(text, tmp_path)
    assert all(float(ds[i]["loss_mask"].min()) == 1.0 for i in range(len(ds)))  # no plain target masked


def test_loader_refuses_a_mask_recorded_for_another_text(tmp_path):
    texts = ["1 5 2 3 4 6 7 8", "5 9 10 11 12 13 14"]
    text = _run(tmp_path, texts, _Codeswitcher())
    mask = loss_mask_prefix(text)
    saved = {ext: open(mask + ext, "rb").read() for ext in (".bin", ".idx", ".json")}
    # a plain run whose documents have exactly the same lengths (so the structural check passes)
    _run(tmp_path, ["1 6 2 3 4 6 7 8", "6 9 10 11 12 13 14"])
    for ext, data in saved.items():  # the stale mask comes back (an older tool, a copy, a restore)
        open(mask + ext, "wb").write(data)
    mask_ds, text_ds = IndexedDataset(mask), IndexedDataset(text)
    assert mask_ds.sequence_lengths.tolist() == text_ds.sequence_lengths.tolist()
    del mask_ds, text_ds
    with pytest.raises(IndexedDatasetError, match=r"stale loss mask: it was written with another version of .*en_text_document") as err:
        _build_train(text, tmp_path)
    assert "\n" not in str(err.value)
    # the matching text is accepted again
    _run(tmp_path, texts, _Codeswitcher())
    assert len(_build_train(text, tmp_path)) >= 1
