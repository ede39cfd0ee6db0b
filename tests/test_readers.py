"""Streaming corpus readers: JSONL[.gz], CulturaX-shaped parquet, plain text, input expansion."""

from __future__ import annotations

import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from megatron_prealign.data.readers import (
    CorpusReader,
    InputError,
    MalformedRecordError,
    ReaderConfig,
    decode_record,
    detect_format,
    expand_inputs,
    iter_documents,
)


def read_all(inputs, **kw):
    cfg = ReaderConfig(**kw)
    reader = CorpusReader(inputs if isinstance(inputs, list) else [inputs], cfg)
    return [(r.where, decode_record(r, cfg.json_keys)) for r in reader]


def write_jsonl(path, rows, opener=open):
    with opener(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False))
            f.write("\n")
    return str(path)


ROWS = [
    {"text": "Hello world.", "title": "a"},
    {"text": "Grüße aus Köln – 你好", "title": "b"},
    {"text": "", "title": "c"},
    {"text": None, "title": "d"},
    {"text": ["pre-split", " sentences"], "title": "e"},
]


def test_jsonl_plain_and_gzip_give_the_same_records(tmp_path):
    plain = write_jsonl(tmp_path / "a.jsonl", ROWS)
    gz = write_jsonl(tmp_path / "a.jsonl.gz", ROWS, opener=gzip.open)
    got_plain = read_all(plain, json_keys=("text", "title"))
    got_gz = read_all(gz, json_keys=("text", "title"))
    assert [v for _, v in got_plain] == [(r["text"], r["title"]) for r in ROWS]
    assert [v for _, v in got_gz] == [v for _, v in got_plain]
    assert [w for w, _ in got_plain] == [f"{plain}:{i}" for i in range(1, 6)]


def test_blank_jsonl_line_is_an_empty_document(tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", [ROWS[0], "   ", ROWS[1]])
    assert [v for _, v in read_all(path)] == [("Hello world.",), (None,), (ROWS[1]["text"],)]


@pytest.mark.parametrize(
    "line, why",
    [
        ('{"text": "unterminated', "malformed JSON"),
        ('["a list"]', "a JSON object is expected"),
        ('{"body": "no text key"}', "key 'text' (--json-keys) not in the record"),
        ('{"text": 42}', "holds int, not a string"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, line, why):
    path = write_jsonl(tmp_path / "m.jsonl", [ROWS[0], ROWS[1], line])
    with pytest.raises(MalformedRecordError) as err:
        read_all(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:3: ") and why in msg and "\n" not in msg


def test_invalid_utf8_is_malformed(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "\xff\xfe"}\n')
    with pytest.raises(MalformedRecordError, match=r"u\.jsonl:2: invalid UTF-8"):
        read_all(str(path))


def culturax_table(n_rows, start=0, text_len=20):
    texts = [f"doc {start + i} " + "x" * text_len for i in range(n_rows)]
    return pa.table(
        {
            "text": texts,
            "timestamp": pa.array([1_600_000_000 + i for i in range(n_rows)], pa.timestamp("s")),
            "url": [f"https://example.org/{start + i}" for i in range(n_rows)],
            "source": ["mC4" if i % 2 else "OSCAR-2301" for i in range(n_rows)],
        }
    )


def test_parquet_columns_and_rows(tmp_path):
    path = str(tmp_path / "en_part_00000.parquet")
    table = culturax_table(10)
    table = table.set_column(0, "text", pa.array([None if i == 4 else t for i, t in enumerate(table["text"].to_pylist())]))
    pq.write_table(table, path, row_group_size=3)
    got = read_all(path, json_keys=("text", "source"))
    assert [v for _, v in got] == list(zip(table["text"].to_pylist(), table["source"].to_pylist()))
    assert got[4][1][0] is None and got[4][0] == f"{path}:row 5"


def test_parquet_is_streamed_by_row_group(tmp_path, monkeypatch):
    path = str(tmp_path / "big.parquet")
    rows_per_group, groups = 250, 16
    tables = [culturax_table(rows_per_group, start=g * rows_per_group, text_len=2000) for g in range(groups)]
    with pq.ParquetWriter(path, tables[0].schema) as writer:
        for t in tables:
            writer.write_table(t)
    data_bytes = sum(t["text"].nbytes for t in tables)
    del tables, t
    baseline = pa.total_allocated_bytes()

    def forbidden(*args, **kwargs):
        raise AssertionError("the whole file must not be read at once")

    monkeypatch.setattr(pq.ParquetFile, "read", forbidden)
    monkeypatch.setattr(pq, "read_table", forbidden)
    reader = CorpusReader([path], ReaderConfig(parquet_batch_rows=128))
    peak, n, fractions = 0, 0, []
    for rec in reader:
        n += 1
        peak = max(peak, pa.total_allocated_bytes() - baseline)
        fractions.append(reader.progress())
    assert n == rows_per_group * groups
    assert peak < data_bytes / 3, (peak, data_bytes)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len(set(fractions)) >= groups  # progress moves as row groups are read


def test_parquet_bad_json_keys(tmp_path):
    path = str(tmp_path / "p.parquet")
    pq.write_table(culturax_table(3), path)
    with pytest.raises(InputError, match=r"--json-keys: column 'content' not in .*columns: text, timestamp, url, source"):
        CorpusReader([path], ReaderConfig(json_keys=("content",)))
    with pytest.raises(InputError, match=r"column 'timestamp' .* not a string column"):
        CorpusReader([path], ReaderConfig(json_keys=("timestamp",)))


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match=r"broken\.parquet: not a readable parquet file"):
        CorpusReader([str(path)], ReaderConfig())


def test_plain_text_units(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("first line\nsecond line\n\n\nthird\nstill third\n", encoding="utf-8")
    lines = read_all(str(path))
    assert [v for _, v in lines] == [("first line",), ("second line",), ("",), ("",), ("third",), ("still third",)]
    paragraphs = read_all(str(path), text_unit="paragraph")
    assert [v for _, v in paragraphs] == [("first line\nsecond line",), ("third\nstill third",)]
    assert [w for w, _ in paragraphs] == [f"{path}:1", f"{path}:5"]
    whole = read_all(str(path), text_unit="file")
    assert whole[0][1] == (path.read_text(encoding="utf-8"),)
    with pytest.raises(InputError, match="plain-text input .* has one field"):
        CorpusReader([str(path)], ReaderConfig(json_keys=("body",)))


def test_expand_inputs(tmp_path):
    for name in ["b.jsonl", "a.jsonl", "c.parquet", "notes.md"]:
        (tmp_path / name).write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.txt").write_text("")
    globbed = expand_inputs([str(tmp_path / "*.jsonl")])
    assert globbed == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    assert expand_inputs([str(tmp_path)]) == [str(tmp_path / n) for n in ("a.jsonl", "b.jsonl", "c.parquet")]
    assert expand_inputs([str(tmp_path / "**" / "*.txt")]) == [str(tmp_path / "sub" / "d.txt")]
    # order as given, duplicates dropped
    both = expand_inputs([str(tmp_path / "b.jsonl"), str(tmp_path / "*.jsonl")])
    assert both == [str(tmp_path / "b.jsonl"), str(tmp_path / "a.jsonl")]
    with pytest.raises(InputError, match=r"--input: no such file: .*missing\.jsonl"):
        expand_inputs([str(tmp_path / "missing.jsonl")])
    with pytest.raises(InputError, match="--input: no file matches"):
        expand_inputs([str(tmp_path / "*.zst")])


def test_format_detection():
    assert detect_format("x/en_part_00000.parquet") == "parquet"
    assert detect_format("a.JSONL.gz") == "jsonl"
    assert detect_format("a.txt.gz") == "text"
    assert detect_format("a.dat", "jsonl") == "jsonl"
    with pytest.raises(InputError, match="--input-format"):
        detect_format("a.dat")


def test_reader_config_validation():
    with pytest.raises(InputError, match="duplicate key"):
        ReaderConfig(json_keys=("text", "text"))
    with pytest.raises(InputError, match="--text-unit"):
        ReaderConfig(text_unit="sentence")


def test_several_files_in_order_with_progress(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": f"a{i}"} for i in range(5)])
    b = str(tmp_path / "b.parquet")
    pq.write_table(culturax_table(4), b)
    reader = CorpusReader([a, b], ReaderConfig())
    assert reader.total_bytes == os.path.getsize(a) + os.path.getsize(b)
    out = [decode_record(r, ("text",))[0] for r in reader]
    assert out == [f"a{i}" for i in range(5)] + culturax_table(4)["text"].to_pylist()
    assert reader.progress() == 1.0


DOCS = ["The bank of the river.\nSecond line of the bank.", "Money in the bank is safe.", "Zürich café 银行"]


def test_iter_documents_all_formats(tmp_path):
    """The documents word counting and tokenizer training read: every format, strings only."""
    jl = write_jsonl(tmp_path / "a.jsonl", [{"text": d, "title": f"t{i}"} for i, d in enumerate(DOCS)] + [""])
    assert list(iter_documents([jl])) == DOCS  # the blank line is an empty document, skipped
    assert list(iter_documents([jl], ["title"])) == ["t0", "t1", "t2"]
    gz = write_jsonl(tmp_path / "b.jsonl.gz", [{"text": DOCS[1]}], opener=gzip.open)
    assert list(iter_documents([gz])) == [DOCS[1]]
    pqf = tmp_path / "en_part_00000.parquet"
    pq.write_table(pa.table({"text": DOCS, "url": ["u"] * 3}), str(pqf))
    assert list(iter_documents([str(pqf), jl])) == DOCS + DOCS
    with pytest.raises(InputError, match=r"column 'body' not in"):
        list(iter_documents([str(pqf)], ["body"]))
    (tmp_path / "c.txt").write_bytes(b"one\r\n\ntwo\n")
    assert list(iter_documents([str(tmp_path / "c.txt")])) == ["one", "two"]  # as preprocess_data reads it
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok"}, "{broken"])
    with pytest.raises(MalformedRecordError, match=r"bad\.jsonl:2: malformed JSON"):
        list(iter_documents([bad]))
    with pytest.raises(InputError, match="--input: no such file"):
        list(iter_documents([str(tmp_path / "none.jsonl")]))


def test_iter_documents_expands_like_preprocess_data(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    write_jsonl(d / "a.ndjson", [{"text": DOCS[0]}])
    write_jsonl(d / "b.JSONL", [{"text": [DOCS[1], "", DOCS[2]]}])
    (d / "notes.md").write_text("ignored by directory expansion\n", encoding="utf-8")
    expected = [DOCS[0], DOCS[1], DOCS[2]]  # a list value: Megatron's pre-split sentences
    assert list(iter_documents([str(d / "a.ndjson"), str(d / "b.JSONL")])) == expected
    assert list(iter_documents([str(d)])) == expected
    assert list(iter_documents([str(d / "[ab].*")])) == expected
    with pytest.raises(InputError, match="no file matches"):
        list(iter_documents([str(d / "*.parquet")]))
    with pytest.raises(InputError, match="cannot tell the format of"):
        list(iter_documents([str(d / "notes.md")]))
    assert list(iter_documents([str(d / "notes.md")], input_format="text")) == ["ignored by directory expansion"]


def test_iter_documents_invalid_utf8_names_file_and_line(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(MalformedRecordError, match=r"a\.jsonl:2: invalid UTF-8"):
        list(iter_documents([str(tmp_path / "a.jsonl")]))
    with gzip.open(tmp_path / "b.txt.gz", "wb") as f:
        f.write(b"one\r\ntwo \xff\n")
    with pytest.raises(MalformedRecordError, match=r"b\.txt\.gz:2: invalid UTF-8"):
        list(iter_documents([str(tmp_path / "b.txt.gz")]))
    (tmp_path / "d.txt.gz").write_bytes(b"not gzip")
    with pytest.raises(InputError, match=r"d\.txt\.gz:1: cannot read"):
        list(iter_documents([str(tmp_path / "d.txt.gz")]))
