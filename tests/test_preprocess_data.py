"""Binarization (``megatron_prealign.data.preprocess_data`` and ``tools/preprocess_data.py``).

Outputs are read back with megatron-core's own ``IndexedDataset`` and compared with the
tokenizer applied document by document.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from megatron.core.datasets.indexed_dataset import DType, IndexedDataset

from megatron_prealign.data import preprocess_data as ppd
from megatron_prealign.data.indexed import IndexedDatasetError
from megatron_prealign.data.preprocess_data import PreprocessConfig, preprocess
from megatron_prealign.data.readers import InputError, ReaderConfig
from megatron_prealign.tokenizer import build_tokenizer
from tokenizer_helpers import bpe_folder_fixture

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "preprocess_data.py")


def _load_tool():
    spec = importlib.util.spec_from_file_location("tools_preprocess_data", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli = _load_tool()


@pytest.fixture(autouse=True)
def restore_logging():
    """``cli.main`` configures logging like a CLI does; undo it for the other tests."""
    logger = logging.getLogger("megatron_prealign")
    level = logger.level
    yield
    logger.setLevel(level)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "Megatron binarizes corpora into bin and idx files.",
    "Pre-alignment happens before pretraining; codeswitching during it.",
]


def make_texts(n, seed=0):
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        if i % 17 == 5:
            texts.append("")  # empty document
        else:
            k = int(rng.integers(1, 6))
            texts.append(" ".join(SENTENCES[int(j)] for j in rng.integers(0, len(SENTENCES), size=k)))
    return texts


bpe_dir = bpe_folder_fixture("bpe_dir", SENTENCES * 20, 400)


def hf_factory(bpe_dir):
    return functools.partial(build_tokenizer, "HuggingFaceTokenizer", tokenizer_model=bpe_dir)


def null_factory(vocab_size=1000):
    return functools.partial(build_tokenizer, "NullTokenizer", vocab_size=vocab_size)


def write_jsonl(path, texts, key="text", extra=None):
    with open(path, "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            row = {key: t, "id": i}
            if extra:
                row.update(extra(i))
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(path)


def read_docs(prefix):
    ds = IndexedDataset(prefix)
    return ds, [np.array(ds[i]) for i in range(len(ds))]


def expected_docs(tokenizer, texts, append_eod=True):
    out = []
    for t in texts:
        ids = tokenizer.tokenize(t) if t else []
        if ids:
            out.append(ids + ([tokenizer.eod] if append_eod else []))
    return out


def run(inputs, factory, out_prefix, **kw):
    reader_kw = {k: kw.pop(k) for k in ("json_keys", "input_format", "text_unit") if k in kw}
    codeswitcher = kw.pop("codeswitcher", None)
    return preprocess(
        inputs if isinstance(inputs, list) else [inputs],
        factory,
        PreprocessConfig(output_prefix=str(out_prefix), **kw),
        ReaderConfig(**reader_kw),
        codeswitcher=codeswitcher,
    )


def files_in(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


# ---------------------------------------------------------------------------------------------


def test_jsonl_matches_tokenizer_and_megatron_reader(tmp_path, bpe_dir):
    texts = make_texts(120)
    src = write_jsonl(tmp_path / "c.jsonl", texts)
    stats = run(src, hf_factory(bpe_dir), tmp_path / "out" / "en", append_eod=True, workers=2, batch_size=8)
    tok = hf_factory(bpe_dir)()
    expected = expected_docs(tok, texts)
    ds, docs = read_docs(str(tmp_path / "out" / "en_text_document"))
    assert ds.index.dtype == DType.optimal_dtype(tok.vocab_size) == np.uint16
    assert [d.tolist() for d in docs] == expected
    np.testing.assert_array_equal(ds.document_indices, np.arange(len(expected) + 1))
    assert stats.documents == {"text": len(expected)} and stats.empty == {"text": texts.count("")}
    assert stats.tokens["text"] == sum(map(len, expected)) and stats.records == len(texts)
    assert files_in(tmp_path / "out") == ["en_text_document.bin", "en_text_document.idx"]


def test_int32_dtype_for_large_vocabulary(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", ["1 70000 3", "69999"])
    run(src, null_factory(70000), tmp_path / "big", append_eod=True)
    ds, docs = read_docs(str(tmp_path / "big_text_document"))
    assert ds.index.dtype == np.int32 == DType.optimal_dtype(70001)
    assert [d.tolist() for d in docs] == [[1, 70000, 3, 70000], [69999, 70000]]


def test_several_json_keys_and_list_values(tmp_path):
    rows = [
        {"text": "1 2 3", "title": "7"},
        {"text": "", "title": "8 9"},
        {"text": ["4 5", "6"], "title": None},
    ]
    src = tmp_path / "k.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    stats = run(str(src), null_factory(), tmp_path / "kv", json_keys=("text", "title"), append_eod=False)
    assert [d.tolist() for d in read_docs(str(tmp_path / "kv_text_document"))[1]] == [[1, 2, 3], [4, 5, 6]]
    assert [d.tolist() for d in read_docs(str(tmp_path / "kv_title_document"))[1]] == [[7], [8, 9]]
    assert stats.empty == {"text": 1, "title": 1}


def test_parquet_shards_equal_jsonl(tmp_path, bpe_dir):
    texts = make_texts(60, seed=1)
    for i, chunk in enumerate((texts[:25], texts[25:])):
        table = pa.table({
            "text": chunk,
            "timestamp": pa.array([0] * len(chunk), pa.timestamp("s")),
            "url": ["https://x"] * len(chunk),
            "source": ["mC4"] * len(chunk),
        })
        pq.write_table(table, str(tmp_path / f"de_part_{i:05d}.parquet"), row_group_size=7)
    src = write_jsonl(tmp_path / "same.jsonl", texts)
    run(str(tmp_path / "de_part_*.parquet"), hf_factory(bpe_dir), tmp_path / "pq", append_eod=True, workers=2)
    run(src, hf_factory(bpe_dir), tmp_path / "js", append_eod=True)
    for ext in (".bin", ".idx"):
        a = (tmp_path / f"pq_text_document{ext}").read_bytes()
        assert a == (tmp_path / f"js_text_document{ext}").read_bytes()


def test_gzip_and_text_inputs(tmp_path):
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write('{"text": "1 2"}\n{"text": "3"}\n')
    (tmp_path / "b.txt").write_text("4 5\n\n6\n")
    stats = run([str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.txt")], null_factory(), tmp_path / "gt")
    assert [d.tolist() for d in read_docs(str(tmp_path / "gt_text_document"))[1]] == [[1, 2], [3], [4, 5], [6]]
    assert stats.empty["text"] == 1


class StandInCodeswitcher:
    """Deterministic stand-in for ``Codeswitcher``: replaces some non-EOD tokens by two tokens."""

    def __init__(self, vocab_size, eod):
        self.vocab_size, self.eod = vocab_size, eod

    def apply(self, tokens, doc_index):
        assert tokens.dtype == np.int32
        out, mask = [], []
        for p, t in enumerate(tokens.tolist()):
            if t != self.eod and (doc_index * 31 + p * 7) % 5 == 0:
                out += [(t + 1) % self.vocab_size, (t + 2) % self.vocab_size]
                mask += [0, 0]
            else:
                out.append(t)
                mask.append(1)
        return np.array(out, dtype=np.int32), np.array(mask, dtype=np.uint8)


def test_codeswitch_hook_uses_output_document_index(tmp_path, bpe_dir):
    texts = make_texts(80, seed=2)
    src = write_jsonl(tmp_path / "c.jsonl", texts)
    tok = hf_factory(bpe_dir)()
    cs = StandInCodeswitcher(tok.vocab_size, tok.eod)
    stats = run(src, hf_factory(bpe_dir), tmp_path / "cs", append_eod=True, workers=2, batch_size=5, codeswitcher=cs)
    prefix = str(tmp_path / "cs_text_document")
    ds, docs = read_docs(prefix)
    mds, masks = read_docs(prefix + "_lossmask")
    assert mds.index.dtype == np.uint8
    np.testing.assert_array_equal(ds.sequence_lengths, mds.sequence_lengths)
    np.testing.assert_array_equal(ds.document_indices, mds.document_indices)
    expected = expected_docs(tok, texts)
    assert len(docs) == len(expected)
    for i, ids in enumerate(expected):  # i counts written documents only: empties take no index
        want_tokens, want_mask = cs.apply(np.array(ids, dtype=np.int32), i)
        assert docs[i].tolist() == want_tokens.tolist()
        assert masks[i].tolist() == want_mask.tolist()
    assert stats.tokens["text"] == int(ds.sequence_lengths.sum())
    assert sorted(stats.outputs) == sorted([prefix, prefix + "_lossmask"])
    # the pair is what MaskedGPTDataset reads: it accepts it and drops the substituted labels
    from megatron_prealign.data.masked_gpt_dataset import build_train_valid_test_datasets, masked_gpt_dataset_config

    cfg = masked_gpt_dataset_config(tok, seq_length=32, seed=1, blend=([prefix], None), split="1,0,0",
                                    data_cache_path=str(tmp_path / "cache"))
    train = build_train_valid_test_datasets(cfg, [20, 0, 0])[0]
    assert train.mask_dataset is not None
    dropped = sum(int((train[i]["loss_mask"] == 0).sum()) for i in range(len(train)))
    masked = sum(int((m == 0).sum()) for m in masks)
    # one epoch: every token but the first is a label once, except a tail shorter than a sample
    assert len(train) * 32 <= int(ds.sequence_lengths.sum()) < (len(train) + 1) * 32 + 1
    assert 0 <= masked - dropped <= 32, (masked, dropped)


def test_output_does_not_depend_on_workers_chunking_or_threads(tmp_path, bpe_dir):
    texts = make_texts(70, seed=3)
    src = write_jsonl(tmp_path / "c.jsonl", texts)
    tok = hf_factory(bpe_dir)()
    outputs = []
    for name, workers, batch, threads in (("a", 1, 64, 1), ("b", 2, 1, 3), ("c", 2, 7, 1)):
        cs = StandInCodeswitcher(tok.vocab_size, tok.eod)
        run(src, hf_factory(bpe_dir), tmp_path / name, append_eod=True, workers=workers, batch_size=batch,
            codeswitch_threads=threads, codeswitcher=cs)
        outputs.append({f: (tmp_path / f"{name}{f}").read_bytes() for f in (
            "_text_document.bin", "_text_document.idx", "_text_document_lossmask.bin", "_text_document_lossmask.idx")})
    assert outputs[0] == outputs[1] == outputs[2]


def test_max_tokens_keeps_the_crossing_document_whole(tmp_path):
    texts = ["1 2 3", "", "4 5 6 7", "8", "9 10 11 12 13", "14 15"]
    src = write_jsonl(tmp_path / "c.jsonl", texts)
    # documents with EOD: 4, (empty), 5, 2, 6, 3 tokens -> cumulative 4, 9, 11, 17, 20
    for budget, n_docs in ((1, 1), (4, 1), (5, 2), (11, 3), (12, 4), (20, 5), (21, 5)):
        stats = run(src, null_factory(), tmp_path / f"m{budget}", append_eod=True, max_tokens=budget, workers=2, batch_size=1)
        docs = read_docs(str(tmp_path / f"m{budget}_text_document"))[1]
        assert len(docs) == n_docs, budget
        assert stats.total_tokens == sum(len(d) for d in docs)
        assert stats.stopped_at_max_tokens == (budget <= 20)
        assert stats.total_tokens >= min(budget, 20)


def test_max_tokens_counts_codeswitched_tokens(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", [" ".join(["5"] * 9)] * 40)
    cs = StandInCodeswitcher(1001, 1000)
    stats = run(src, null_factory(), tmp_path / "m", append_eod=True, max_tokens=100, batch_size=3,
                codeswitch_threads=2, codeswitcher=cs)
    docs = read_docs(str(tmp_path / "m_text_document"))[1]
    masks = read_docs(str(tmp_path / "m_text_document_lossmask"))[1]
    want = [cs.apply(np.array([5] * 9 + [1000], dtype=np.int32), i)[0].tolist() for i in range(len(docs))]
    assert [d.tolist() for d in docs] == want and len(masks) == len(docs)
    totals = np.cumsum([len(d) for d in want])
    assert totals[-1] >= 100 > totals[-2] and stats.total_tokens == totals[-1]


def test_long_document_above_ten_million_tokens(tmp_path):
    n = 10_500_000
    (tmp_path / "long.txt").write_text("1 2\n" + "7 " * n + "\n3\n")
    run(str(tmp_path / "long.txt"), null_factory(), tmp_path / "long", append_eod=True, workers=2, batch_size=1)
    ds = IndexedDataset(str(tmp_path / "long_text_document"))
    assert ds.sequence_lengths.tolist() == [3, n + 1, 2]
    long_doc = ds[1]
    assert int(long_doc[-1]) == 1000 and bool(np.all(long_doc[:-1] == 7))
    assert ds[2].tolist() == [3, 1000]


def test_document_too_long_for_the_idx_format(tmp_path, monkeypatch):
    monkeypatch.setattr(ppd, "_INT32_MAX", 5)  # stand-in for 2**31 - 1
    src = write_jsonl(tmp_path / "c.jsonl", ["1 2", "1 2 3 4 5"])
    with pytest.raises(IndexedDatasetError, match=r"c\.jsonl:2: key 'text' has 6 tokens, more than a Megatron sequence"):
        run(src, null_factory(), tmp_path / "out" / "x", append_eod=True)
    assert files_in(tmp_path / "out") == []


def test_malformed_line_stops_and_writes_nothing(tmp_path):
    texts = [str(i) for i in range(1, 200)]
    src = write_jsonl(tmp_path / "c.jsonl", texts)
    lines = open(src).read().splitlines()
    lines[149] = '{"text": "150", oops}'
    open(src, "w").write("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        run(src, null_factory(), tmp_path / "out" / "x", workers=2, batch_size=4)
    assert str(err.value).startswith(f"{src}:150: malformed JSON")
    assert files_in(tmp_path / "out") == []  # no output, no temporary file
    stats = run(src, null_factory(), tmp_path / "out" / "y", skip_malformed=True, workers=2, batch_size=4)
    assert stats.malformed == 1 and stats.documents["text"] == 198
    assert [int(d[0]) for d in read_docs(str(tmp_path / "out" / "y_text_document"))[1]] == [i for i in range(1, 200) if i != 150]


def test_unreadable_input_midway_with_workers(tmp_path):
    data = gzip.compress(("".join(json.dumps({"text": str(i % 900)}) + "\n" for i in range(20000))).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.jsonl\.gz:\d+: cannot read"):
        run(str(tmp_path / "cut.jsonl.gz"), null_factory(), tmp_path / "out" / "x", workers=2, batch_size=16)
    assert files_in(tmp_path / "out") == []


class InterruptingTokenizer:
    """Raises KeyboardInterrupt (as Ctrl-C would) at the n-th document."""

    def __init__(self, n):
        self.inner = build_tokenizer("NullTokenizer", vocab_size=1000)
        self.vocab_size, self.eod, self.n, self.seen = self.inner.vocab_size, self.inner.eod, n, 0

    def tokenize(self, text):
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt
        return self.inner.tokenize(text)


def test_interrupt_or_failure_leaves_previous_outputs_untouched(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", [str(i) for i in range(1, 100)])
    run(src, null_factory(), tmp_path / "out" / "x")
    before = {f: (tmp_path / "out" / f).read_bytes() for f in files_in(tmp_path / "out")}
    src2 = write_jsonl(tmp_path / "d.jsonl", [str(i) for i in range(100, 200)])
    with pytest.raises(KeyboardInterrupt):
        run(src2, lambda: InterruptingTokenizer(60), tmp_path / "out" / "x", batch_size=1)
    assert {f: (tmp_path / "out" / f).read_bytes() for f in files_in(tmp_path / "out")} == before


def test_nothing_to_write_is_an_error(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", ["", ""])
    with pytest.raises(InputError, match=r"nothing to write: 2 record\(s\) read, 2 empty"):
        run(src, null_factory(), tmp_path / "out" / "x")
    assert files_in(tmp_path / "out") == []


def test_progress_lines(tmp_path, caplog):
    src = write_jsonl(tmp_path / "c.jsonl", [" ".join(["5"] * 20)] * 300)
    with caplog.at_level(logging.INFO, logger="megatron_prealign.data.preprocess_data"):
        run(src, null_factory(), tmp_path / "p", log_interval=100, max_tokens=10**9)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Processed")]
    assert len(lines) == 3
    assert all("docs/s" in l and "MB/s" in l and "tokens/s" in l and "ETA" in l for l in lines)
    assert any(r.getMessage().startswith("Done in") for r in caplog.records)


# --------------------------------------------------------------------------------------------- CLI


def cli_error(capsys, argv):
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err[-1] if err else ""


def test_cli_writes_megatron_names(tmp_path, bpe_dir, capsys):
    src = write_jsonl(tmp_path / "c.jsonl", make_texts(30, seed=4))
    rc = cli.main([
        "--input", src, "--output-prefix", str(tmp_path / "o" / "en"), "--tokenizer-type", "HuggingFaceTokenizer",
        "--tokenizer-model", bpe_dir, "--append-eod", "--workers", "2", "--log-interval", "10",
    ])
    assert rc == 0
    assert files_in(tmp_path / "o") == ["en_text_document.bin", "en_text_document.idx"]
    tok = hf_factory(bpe_dir)()
    assert [d.tolist() for d in read_docs(str(tmp_path / "o" / "en_text_document"))[1]] == expected_docs(
        tok, make_texts(30, seed=4)
    )


def test_cli_bad_inputs_are_one_line_errors(tmp_path, capsys):
    src = write_jsonl(tmp_path / "c.jsonl", ["1 2"])
    base = ["--output-prefix", str(tmp_path / "o" / "x"), "--tokenizer-type", "NullTokenizer", "--vocab-size", "10"]
    rc, line = cli_error(capsys, ["--input", str(tmp_path / "nope.jsonl")] + base)
    assert rc == 2 and line == f"preprocess_data.py: error: --input: no such file: {tmp_path / 'nope.jsonl'}"
    rc, line = cli_error(capsys, ["--input", src, "--json-keys", "content"] + base)
    assert rc == 2 and line.startswith(f"preprocess_data.py: error: {src}:1: key 'content' (--json-keys) not in the record")
    pq.write_table(pa.table({"text": ["1"]}), str(tmp_path / "p.parquet"))
    rc, line = cli_error(capsys, ["--input", str(tmp_path / "p.parquet"), "--json-keys", "content"] + base)
    assert rc == 2 and "--json-keys: column 'content' not in" in line
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--input", src, "--codeswitch"] + base)
    assert exit_.value.code == 2 and "--codeswitch needs --alignment-table" in capsys.readouterr().err
    assert files_in(tmp_path / "o") == []


def test_cli_ctrl_c_leaves_nothing(tmp_path):
    line = json.dumps({"text": " ".join(str(i % 1000) for i in range(300))})
    with open(tmp_path / "big.jsonl", "w") as f:
        f.write((line + "\n") * 40000)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-W", "ignore", TOOL, "--input", str(tmp_path / "big.jsonl"), "--output-prefix", str(out / "x"),
         "--tokenizer-type", "NullTokenizer", "--vocab-size", "1000", "--workers", "2", "--log-interval", "500"],
        stderr=subprocess.PIPE, text=True,
        # SIGINT as from a terminal even when pytest runs as a background job (which ignores it)
        preexec_fn=functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.time() + 120
        for err_line in proc.stderr:
            if "Processed" in err_line or time.time() > deadline:
                break
        assert files_in(out) and all(".tmp-" in f for f in files_in(out))  # writing, under temporary names
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest
    assert "interrupted; no output written" in rest
    assert files_in(out) == []


# --------------------------------------------------------------------------------------------- real codeswitcher


def test_cli_codeswitch_equals_codeswitching_the_binarized_corpus(tmp_path, capsys):
    codeswitch = pytest.importorskip("megatron_prealign.data.codeswitch")
    alignment = pytest.importorskip("megatron_prealign.alignment")
    Translation, AlignmentEntry, AlignmentTable = alignment.Translation, alignment.AlignmentEntry, alignment.AlignmentTable
    tok = build_tokenizer("NullTokenizer", vocab_size=100)
    entries = [
        AlignmentEntry(str(w), 0, [w], {"de": [Translation(str(w + 50), [w + 50])], "zh": [Translation("x", [w + 60, w + 61])]})
        for w in range(1, 20)
    ]
    table = AlignmentTable(["de", "zh"], entries, tok.vocab_size, tok.describe())
    table.save(str(tmp_path / "table.jsonl"))
    rng = np.random.default_rng(5)
    texts = [" ".join(str(int(x)) for x in rng.integers(0, 30, size=int(rng.integers(0, 40)))) for _ in range(150)]
    src = write_jsonl(tmp_path / "c.jsonl", texts)
    base = ["--input", src, "--tokenizer-type", "NullTokenizer", "--vocab-size", "100", "--append-eod"]
    cs = ["--codeswitch", "--prealign-table", str(tmp_path / "table.jsonl"), "--codeswitch-ratio", "0.3",
          "--codeswitch-mode", "input-only", "--codeswitch-languages", "de,zh", "--seed", "7"]
    assert cli.main(base + cs + ["--output-prefix", str(tmp_path / "one"), "--workers", "2", "--chunk-size", "3"]) == 0
    assert cli.main(base + ["--output-prefix", str(tmp_path / "plain")]) == 0
    config = codeswitch.CodeswitchConfig(ratio=0.3, mode="input-only", seed=7, languages=("de", "zh"))
    codeswitch.codeswitch_dataset(
        str(tmp_path / "plain_text_document"), str(tmp_path / "two_text_document"), AlignmentTable.load(str(tmp_path / "table.jsonl")),
        tok.word_start_mask(), config, special_ids=tok.special_ids,
    )
    for suffix in ("_text_document", "_text_document_lossmask"):
        for ext in (".bin", ".idx"):
            assert (tmp_path / f"one{suffix}{ext}").read_bytes() == (tmp_path / f"two{suffix}{ext}").read_bytes(), suffix + ext
    masks = read_docs(str(tmp_path / "one_text_document_lossmask"))[1]
    assert 0 < sum(int((m == 0).sum()) for m in masks)
    # a table built for another tokenizer is refused
    other = base[:]
    other[other.index("100")] = "120"
    rc = cli.main(other + cs + ["--output-prefix", str(tmp_path / "bad")])
    assert rc == 2 and "was built for another tokenizer" in capsys.readouterr().err
    assert not list(tmp_path.glob("bad*"))
