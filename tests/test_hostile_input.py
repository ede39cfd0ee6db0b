"""Hostile input (issue 11): one-line errors instead of tracebacks or silent wrong results,
children that die with their parent, stale temporary files cleaned, bounded preprocessing memory.

Every test builds its fixtures in the real formats (megatron-core's builder, a trained byte-level
BPE, JSONL) and checks against an independent reference (numpy over the raw file, the tokenizer
applied to the whole document, the process table).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import OrderedDict

import numpy as np
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

from megatron_prealign.data import preprocess_data as ppd
from megatron_prealign.data.indexed import IndexedDatasetError, check_indexed_dataset, check_token_ids, max_token_id
from megatron_prealign.data.preprocess_data import PreprocessConfig, preprocess
from megatron_prealign.data.readers import InputError, ReaderConfig
from megatron_prealign.platform.process import pid_alive, remove_stale_temp_files
from megatron_prealign.tokenizer import build_tokenizer
from tokenizer_helpers import bpe_folder_fixture
from training_helpers import write_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"_hostile_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def dead_pid():
    """A pid that is certainly not alive (a finished child's)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not pid_alive(p.pid)
    return p.pid


TEXTS = [
    "The quick brown fox can't jump over the lazy dog, e.g. at 3.14 o'clock.",
    "Der schnelle braune Fuchs springt über den faulen Hund.\n\tNew  line   here.",
    '"Quoted" (bracketed) words -- and   spaces  \n\n  everywhere  ',
]


bpe_dir = bpe_folder_fixture("bpe_dir", TEXTS * 20, 350, scope="module")


# ---------------------------------------------------------------------------------------------
# .bin/.idx validation


def test_idx_with_an_edited_middle_length_is_a_one_line_error(tmp_path):
    docs = [np.arange(2, 9), np.arange(3, 5), np.arange(4, 12), np.arange(1, 4)]
    prefix = write_dataset(str(tmp_path / "d"), docs)
    check_indexed_dataset(prefix)
    # Move 2 tokens from sequence 1 to sequence 2: the .bin size (last pointer + last length) is
    # unchanged, so only a check of every sequence sees it.
    with open(prefix + ".idx", "r+b") as f:
        f.seek(34 + 4 * 1)
        f.write(np.array([4], np.int32).tobytes())
        f.write(np.array([6], np.int32).tobytes())
    ds = IndexedDataset(prefix)  # keep it alive while reading its mmap
    assert ds.sequence_lengths.tolist() == [7, 4, 6, 3]  # megatron-core reads it silently
    del ds
    with pytest.raises(IndexedDatasetError, match=r"d\.idx: corrupt index \(sequence 2 starts at byte 18, but the "
                                                  r"lengths before it sum to 22 bytes\)") as err:
        check_indexed_dataset(prefix)
    assert "\n" not in str(err.value)


def test_idx_whose_lengths_overrun_the_bin_is_a_one_line_error(tmp_path):
    prefix = write_dataset(str(tmp_path / "d"), [np.arange(2, 9), np.arange(3, 5)])
    with open(prefix + ".idx", "r+b") as f:  # last length 2 -> 5: pointers agree, .bin too short
        f.seek(34 + 4)
        f.write(np.array([5], np.int32).tobytes())
    with pytest.raises(IndexedDatasetError, match=r"d\.bin: size 18 bytes does not match its index \(24 bytes"):
        check_indexed_dataset(prefix)


def test_max_token_id_is_chunked_and_exact(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 500, size=int(rng.integers(1, 50))) for _ in range(40)]
    docs[17][3] = 777
    prefix = write_dataset(str(tmp_path / "d"), docs)
    flat = np.fromfile(prefix + ".bin", dtype=np.uint16)
    assert max_token_id(prefix, chunk_elements=7) == int(flat.max()) == 777
    check_token_ids(prefix, 778)
    with pytest.raises(IndexedDatasetError, match=r"d\.bin \(--data-path en\): token id 777 >= the tokenizer's "
                                                  r"vocabulary size 600"):
        check_token_ids(prefix, 600, "--data-path en")


class _Tok:
    """What GPTDataset needs from a tokenizer."""

    vocab_size = 100
    eod = 0
    pad = 1

    def __init__(self):
        self.unique_identifiers = OrderedDict(cls="_Tok")


@pytest.mark.parametrize("bad_id", [100, 127, 60000], ids=["inside-padded-vocab", "last-padded-id", "beyond-padded"])
def test_training_refuses_ids_outside_the_tokenizer_vocabulary(tmp_path, bad_id):
    from megatron_prealign.data.masked_gpt_dataset import MaskedGPTDataset, masked_gpt_dataset_config

    prefix = write_dataset(str(tmp_path / "en_text_document"), [[5, 6, 7, 0], [8, bad_id, 9, 0], [2, 3, 0]])
    cfg = masked_gpt_dataset_config(_Tok(), seq_length=4, seed=1, blend=([prefix], None), split="1,0,0",
                                    data_cache_path=str(tmp_path / "cache"))
    with pytest.raises(IndexedDatasetError) as err:
        MaskedGPTDataset.build_low_level_dataset(prefix, cfg)
    msg = str(err.value)
    assert "\n" not in msg and f"en_text_document.bin (training data): token id {bad_id} >= the tokenizer's vocabulary size 100" in msg
    # the same data within the vocabulary builds
    ok = write_dataset(str(tmp_path / "ok_text_document"), [[5, 6, 7, 0], [8, 99, 9, 0]])
    assert len(MaskedGPTDataset.build_low_level_dataset(ok, cfg)) == 2


# ---------------------------------------------------------------------------------------------
# JSONL: lone surrogates


def _null():
    return functools.partial(build_tokenizer, "NullTokenizer", vocab_size=1000)


def _surrogate_corpus(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = ['{"text": "1 2 3"}', '{"text": "4 \\ud800 5"}', '{"text": "6 7"}', '{"text": "8 \\ud83d\\ude00 9"}']
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_lone_surrogate_is_skipped_and_counted_with_skip_malformed(tmp_path):
    inp = _surrogate_corpus(tmp_path)
    with pytest.raises(InputError, match=r"in\.jsonl:2: key 'text' holds a lone surrogate \\ud800"):
        preprocess([inp], _null(), PreprocessConfig(output_prefix=str(tmp_path / "a")), ReaderConfig())
    assert not [f for f in os.listdir(tmp_path) if f.startswith("a")]
    # the surrogate pair on line 4 is a valid character, not malformed; the NullTokenizer fails
    # on it, so use a corpus whose only bad line is the lone surrogate
    lines = open(inp).read().splitlines()[:3]
    open(inp, "w").write("\n".join(lines) + "\n")
    stats = preprocess([inp], _null(), PreprocessConfig(output_prefix=str(tmp_path / "b"), skip_malformed=True),
                       ReaderConfig())
    assert stats.malformed == 1 and stats.documents == {"text": 2}
    ds = IndexedDataset(str(tmp_path / "b_text_document"))
    assert [list(ds[i]) for i in range(len(ds))] == [[1, 2, 3], [6, 7]]


def test_lone_surrogate_through_the_cli_is_one_line(tmp_path, bpe_dir):
    inp = _surrogate_corpus(tmp_path)
    base = [sys.executable, os.path.join(REPO, "tools", "preprocess_data.py"), "--input", inp,
            "--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", bpe_dir]
    r = subprocess.run(base + ["--output-prefix", str(tmp_path / "c")], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"preprocess_data.py: error: {inp}:2: key 'text' holds a lone surrogate")
    r = subprocess.run(base + ["--output-prefix", str(tmp_path / "d"), "--skip-malformed"], capture_output=True, text=True,
                       env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "skipped 0 empty document(s) and 1 malformed record(s)" in r.stderr
    assert len(IndexedDataset(str(tmp_path / "d_text_document"))) == 3


# ---------------------------------------------------------------------------------------------
# train_tokenizer.py


def _train_tokenizer(args, tmp_path, preexec_fn=None):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "train_tokenizer.py")] + args,
                          capture_output=True, text=True, env=ENV, timeout=300, preexec_fn=preexec_fn, cwd=str(tmp_path))


def _one_line_error(r):
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    return lines[-1]


def test_train_tokenizer_bad_inputs_are_one_line_and_write_nothing(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("\n".join(TEXTS * 50) + "\n")
    (tmp_path / "empty.txt").write_text("\n\n")
    out = tmp_path / "tok"
    line = _one_line_error(_train_tokenizer(["--input", str(text), "--output-dir", str(out), "--vocab-size", "-5"], tmp_path))
    assert "--vocab-size -5: must be at least 258" in line
    line = _one_line_error(_train_tokenizer(["--input", "empty.txt", "--output-dir", str(out), "--vocab-size", "300"], tmp_path))
    assert line == "train_tokenizer.py: error: no training text: the inputs hold no non-empty document (check --input and --json-keys)"
    assert not out.exists()

    def small_files():  # a full disk, as the writer sees it: writes past 2 kB fail (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    r = _train_tokenizer(["--input", str(text), "--output-dir", str(out), "--vocab-size", "300"], tmp_path, small_files)
    line = _one_line_error(r)
    assert line.startswith("train_tokenizer.py: error: ") and "tokenizer.json" in line and "File too large" in line
    assert not out.exists()
    # a working run, for contrast
    r = _train_tokenizer(["--input", str(text), "--output-dir", str(out), "--vocab-size", "300"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["merges.txt", "tokenizer.json", "tokenizer_config.json", "vocab.json"]


# ---------------------------------------------------------------------------------------------
# Ctrl-C: exit 130, no traceback, nothing half-written


def test_make_en_clone_ctrl_c_exits_130_and_writes_nothing(tmp_path, bpe_dir, monkeypatch, capsys):
    from megatron_prealign.tokenizer import EnCloneTokenizer

    base = build_tokenizer("HuggingFaceTokenizer", tokenizer_model=bpe_dir)
    docs = [base.tokenize(t) + [base.eod] for t in TEXTS * 30]
    write_dataset(str(tmp_path / "en"), docs)
    calls = [0]
    real = EnCloneTokenizer.clone_ids

    def interrupted(self, ids):
        calls[0] += 1
        if calls[0] == 3:  # mid-stream, after two chunks were written to the temporary file
            raise KeyboardInterrupt
        return real(self, ids)

    monkeypatch.setattr(EnCloneTokenizer, "clone_ids", interrupted)
    tool = _tool("make_en_clone")
    assert tool.main(["--input", str(tmp_path / "en"), "--output-prefix", str(tmp_path / "clone"), "--chunk-tokens", "50",
                      "--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", bpe_dir]) == 130
    assert calls[0] == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "make_en_clone.py: interrupted; no output written"
    assert sorted(os.listdir(tmp_path)) == ["en.bin", "en.idx"]


def test_codeswitch_dataset_ctrl_c_exits_130_and_writes_nothing(tmp_path):
    """A real SIGINT to the tool while the C++ pass runs."""
    from megatron_prealign.alignment import AlignmentEntry, AlignmentTable, Translation

    tok = build_tokenizer("NullTokenizer", vocab_size=100)
    table = AlignmentTable(languages=["de"], entries=[
        AlignmentEntry(word=str(i), count=1, ids=[i], translations={"de": [Translation(text=str(i + 50), ids=[i + 50])]})
        for i in range(10)], vocab_size=tok.vocab_size, tokenizer=tok.describe())
    table.save(str(tmp_path / "table.jsonl"))
    rng = np.random.default_rng(0)
    # large enough that the pass runs for a while (many chunks, one thread)
    data = rng.integers(0, 20, size=30_000_000).astype(np.uint16)
    builder = IndexedDatasetBuilder(str(tmp_path / "in.bin"), dtype=np.uint16)
    builder.data_file.write(data.tobytes())
    builder.sequence_lengths = [1_000_000] * 30
    builder.document_indices = list(range(31))
    builder.finalize(str(tmp_path / "in.idx"))
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tools", "codeswitch_dataset.py"), "--input-prefix", str(tmp_path / "in"),
         "--output-prefix", str(tmp_path / "out"), "--alignment-table", str(tmp_path / "table.jsonl"),
         "--codeswitch-ratio", "0.3", "--threads", "1", "--chunk-tokens", "4096", "--log-interval", "0.2",
         "--tokenizer-type", "NullTokenizer", "--vocab-size", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        # a job started in the background (`cmd &`) inherits SIGINT ignored, and Python then
        # installs no KeyboardInterrupt handler: give the tool the default, as a terminal would
        preexec_fn=functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not any(".tmp-" in f for f in os.listdir(tmp_path)):
        time.sleep(0.05)
    assert any(".tmp-" in f for f in os.listdir(tmp_path)), "the pass did not start"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "codeswitch_dataset.py: interrupted; no output written"
    assert sorted(os.listdir(tmp_path)) == ["in.bin", "in.idx", "table.jsonl"]


# ---------------------------------------------------------------------------------------------
# Ports


def test_one_process_runs_pick_a_free_port_and_respect_an_explicit_one():
    """Two tools at once used to meet on 29500; now MASTER_PORT unset -> a free port."""
    script = textwrap.dedent("""
        import os, sys
        from megatron_prealign.platform import init_distributed
        init_distributed()
        print(os.environ["MASTER_PORT"])
    """)
    env = {k: v for k, v in ENV.items() if k not in ("MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            busy.bind(("127.0.0.1", 29500))
            busy.listen(1)
        except OSError:
            pass  # already in use by someone else: just as good
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert int(r.stdout.strip().splitlines()[-1]) != 29500
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=dict(env, MASTER_PORT=str(port)), timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip().splitlines()[-1] == str(port)
    finally:
        busy.close()


# ---------------------------------------------------------------------------------------------
# Children die with their parent


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _kill_and_check_children(proc, ready, want_children):
    deadline = time.time() + 120
    kids = []
    while time.time() < deadline:
        kids = _children(proc.pid)
        if len(kids) >= want_children and ready():
            break
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        time.sleep(0.1)
    assert len(kids) >= want_children, kids
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 3  # torch's own watchdog would take >= 5 s, a blocked pool worker forever
    while time.time() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.05)
    survivors = [k for k in kids if _alive(k)]
    for k in survivors:  # do not leave them running if the test fails
        os.kill(k, signal.SIGKILL)
    assert not survivors, f"children survived kill -9 of their parent: {survivors}"


def test_dataloader_workers_die_with_a_killed_training_process(tmp_path):
    script = textwrap.dedent("""
        import sys, time, torch
        from megatron_prealign.training.data import build_lm_iterator
        class DS(torch.utils.data.Dataset):
            def __len__(self): return 1000
            def __getitem__(self, i): return {"tokens": torch.tensor([i])}
        it = build_lm_iterator(DS(), 0, 2, 0, 1, num_workers=2)
        next(it)
        print("ready", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    first = []

    def ready():
        if not first:
            first.append(proc.stdout.readline())
        return first[0].strip() == "ready"

    _kill_and_check_children(proc, ready, 2)


def test_preprocess_pool_workers_die_with_a_killed_run(tmp_path):
    inp = tmp_path / "in.jsonl"
    with open(inp, "w") as f:
        for i in range(200_000):
            f.write(json.dumps({"text": " ".join(str((i * 7 + j) % 1000) for j in range(20))}) + "\n")
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tools", "preprocess_data.py"), "--input", str(inp),
                             "--output-prefix", str(tmp_path / "out"), "--tokenizer-type", "NullTokenizer",
                             "--vocab-size", "1000", "--workers", "2", "--chunk-size", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    _kill_and_check_children(proc, lambda: any(".tmp-" in f for f in os.listdir(tmp_path)), 2)
    # the killed run's temporary files are removed by the next run writing the same output
    left = [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    assert left
    small = tmp_path / "small.jsonl"
    small.write_text('{"text": "1 2 3"}\n')
    preprocess([str(small)], _null(), PreprocessConfig(output_prefix=str(tmp_path / "out")), ReaderConfig())
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]


# ---------------------------------------------------------------------------------------------
# Stale temporary files of killed runs


def test_stale_temp_files_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead, alive = dead_pid(), os.getppid()
    names = [f"out_text_document.bin.tmp-{dead}", f"out_text_document_lossmask.idx.tmp-{dead}",
             f"out.tmp-{dead}.bin", f"out.json.tmp-{dead}", f"out_text_document.bin.tmp-{alive}", "other.bin.tmp-1",
             "out_text_document.bin"]
    for n in names:
        (tmp_path / n).write_text("x")
    (tmp_path / f"hf.tmp-{dead}").mkdir()
    (tmp_path / f"hf.tmp-{dead}" / "config.json").write_text("{}")
    removed = remove_stale_temp_files(str(tmp_path / "out"))
    assert sorted(os.path.basename(p) for p in removed) == sorted(names[:4])
    assert remove_stale_temp_files(str(tmp_path / "hf")) == [str(tmp_path / f"hf.tmp-{dead}")]
    assert sorted(os.listdir(tmp_path)) == sorted(names[4:])


def test_writers_clean_stale_temp_files_of_their_output(tmp_path, bpe_dir):
    from megatron_prealign.platform.files import write_json_atomic
    from megatron_prealign.tokenizer import EnCloneTokenizer
    from megatron_prealign.data.en_clone import clone_indexed_dataset

    dead = dead_pid()
    stale = [f"en_text_document.bin.tmp-{dead}", f"en_text_document.idx.tmp-{dead}", f"clone.bin.tmp-{dead}",
             f"res.json.tmp-{dead}"]
    for n in stale:
        (tmp_path / n).write_text("x")
    (tmp_path / "in.jsonl").write_text('{"text": "1 2 3"}\n')
    preprocess([str(tmp_path / "in.jsonl")], _null(), PreprocessConfig(output_prefix=str(tmp_path / "en")), ReaderConfig())
    assert not (tmp_path / stale[0]).exists() and not (tmp_path / stale[1]).exists()
    base = build_tokenizer("NullTokenizer", vocab_size=1000)
    clone_indexed_dataset(str(tmp_path / "en_text_document"), str(tmp_path / "clone"), EnCloneTokenizer(base))
    assert not (tmp_path / stale[2]).exists()
    write_json_atomic(str(tmp_path / "res.json"), {"a": 1})
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    assert json.load(open(tmp_path / "res.json")) == {"a": 1}


# ---------------------------------------------------------------------------------------------
# One huge document: bounded memory, same ids


@pytest.mark.parametrize("kind", ["HuggingFaceTokenizer", "GPT2BPETokenizer"])
def test_piecewise_tokenization_equals_whole_document(bpe_dir, kind):
    if kind == "HuggingFaceTokenizer":
        tok = build_tokenizer(kind, tokenizer_model=bpe_dir)
    else:
        tok = build_tokenizer(kind, vocab_file=os.path.join(bpe_dir, "vocab.json"), merge_file=os.path.join(bpe_dir, "merges.txt"))
    assert ppd._splits_safely(tok)
    rng = np.random.default_rng(1)
    words = ["the", "The", "can't", "e.g.", "J.P.", "3.14", "über", "敏捷的", "(x)", '"q"', "--", "'s", "fox,", "naïve"]
    seps = [" "] * 12 + ["  ", "   ", "\n", "\n\n", "\t", " \n", "\n ", " \t "]
    text = "".join(rng.choice(words) + rng.choice(seps) for _ in range(6000))
    whole = tok.tokenize(text)
    for piece in (7, 50, 333, 4096):
        pieces = list(ppd.text_pieces(text, piece))
        assert "".join(pieces) == text and len(pieces) > 1
        got = ppd.tokenize_long(tok, text, piece)
        assert got.dtype == np.int64 and got.tolist() == whole, piece


def test_sentencepiece_style_tokenizers_are_not_split():
    class SentencePieceLike:  # adds a prefix per call: pieces would differ
        pass

    assert not ppd._splits_safely(SentencePieceLike())


def test_long_documents_take_the_piecewise_path_in_preprocess(tmp_path, bpe_dir, monkeypatch):
    monkeypatch.setattr(ppd, "LONG_DOCUMENT_CHARS", 100)
    monkeypatch.setattr(ppd, "DOCUMENT_PIECE_CHARS", 30)
    calls = []
    real = ppd.tokenize_long
    monkeypatch.setattr(ppd, "tokenize_long", lambda tok, text, piece=30: calls.append(len(text)) or real(tok, text, piece))
    texts = [" ".join(TEXTS * 5), "short one"]
    with open(tmp_path / "in.jsonl", "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    factory = functools.partial(build_tokenizer, "HuggingFaceTokenizer", tokenizer_model=bpe_dir)
    preprocess([str(tmp_path / "in.jsonl")], factory, PreprocessConfig(output_prefix=str(tmp_path / "o"), append_eod=True),
               ReaderConfig())
    assert calls == [len(texts[0])]
    tok = factory()
    ds = IndexedDataset(str(tmp_path / "o_text_document"))
    assert [list(ds[i]) for i in range(2)] == [tok.tokenize(t) + [tok.eod] for t in texts]


@pytest.mark.slow
def test_a_50_mb_document_preprocesses_under_1_gb(tmp_path):
    """Peak RSS of tools/preprocess_data.py on one ~50 MB JSONL document (was 1.7 GB with the
    NullTokenizer, 7.1 GB with GPT-2 BPE, before piecewise tokenization)."""
    script = textwrap.dedent(f"""
        import json, numpy as np
        ids = np.random.default_rng(0).integers(0, 1000, size=13_000_000)
        with open({str(tmp_path / 'big.jsonl')!r}, "w") as f:
            f.write(json.dumps({{"text": " ".join(map(str, ids.tolist()))}}) + "\\n")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    assert os.path.getsize(tmp_path / "big.jsonl") > 48 * 2**20
    # A fresh parent measures the tool alone (ru_maxrss of children also counts what a forked
    # child inherited from a big parent before exec).
    measure = textwrap.dedent(f"""
        import resource, subprocess, sys
        r = subprocess.run([sys.executable, {os.path.join(REPO, 'tools', 'preprocess_data.py')!r},
                            "--input", {str(tmp_path / 'big.jsonl')!r}, "--output-prefix", {str(tmp_path / 'out')!r},
                            "--tokenizer-type", "NullTokenizer", "--vocab-size", "1000", "--append-eod"])
        print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    """)
    r = subprocess.run([sys.executable, "-c", measure], capture_output=True, text=True, env=ENV, timeout=900)
    rc, maxrss_kb = map(int, r.stdout.split())
    assert rc == 0, r.stderr[-2000:]
    assert maxrss_kb < 1024 * 1024, f"peak RSS {maxrss_kb / 1024:.0f} MB"
    ds = IndexedDataset(str(tmp_path / "out_text_document"))
    assert len(ds) == 1 and ds.sequence_lengths[0] == 13_000_001
