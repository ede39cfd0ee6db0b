"""Issue 11 (3): compressed dictionaries are read; empty results are one-line errors naming the file."""

import bz2
import gzip
import lzma
import os
import subprocess
import sys

import numpy as np
import pytest

from megatron_prealign.alignment import AlignmentEntry, AlignmentTable, Translation
from megatron_prealign.alignment.build import build_alignment_table
from megatron_prealign.alignment.dictionaries import read_dictionary
from megatron_prealign.data.codeswitch import CodeswitchConfig, Codeswitcher, codeswitch_dataset
from megatron_prealign.tokenizer import build_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRS = "bank Bank\nbank Ufer\nriver Fluss\n"


@pytest.mark.parametrize(
    "name, opener",
    [("en-de.txt.gz", gzip.open), ("en-de.txt.bz2", bz2.open), ("en-de.txt.xz", lzma.open),
     ("en-de.txt", gzip.open)],  # a gzip file without the extension: found by its magic bytes
)
def test_compressed_dictionaries_are_read(tmp_path, name, opener):
    p = tmp_path / name
    with opener(p, "wt", encoding="utf-8") as f:
        f.write(PAIRS)
    d = read_dictionary(str(p), "de")
    assert d.lookup("bank") == ["Bank", "Ufer"] and d.lookup("river") == ["Fluss"]
    assert d.stats.pairs == 3 and d.stats.malformed == 0


def test_compressed_tsv_format_from_the_inner_extension(tmp_path):
    p = tmp_path / "en-de.tsv.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write("ice cream\tSpeiseeis\n")
    d = read_dictionary(str(p), "de")
    assert d.stats.format == "tsv" and d.lookup("ice cream") == ["Speiseeis"]


@pytest.mark.parametrize(
    "content",
    [b"", b"\n\n", bytes(range(256)) * 8, b"one column too many\nthree words here\n", b"\x1f\x8b\x08garbage-gzip"],
)
def test_dictionary_without_a_usable_line_is_an_error(tmp_path, content):
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    with pytest.raises(ValueError) as e:
        read_dictionary(str(p), "de")
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg


def test_zero_entry_table_is_an_error(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text(PAIRS, encoding="utf-8")
    tok = build_tokenizer("NullTokenizer", vocab_size=50)
    with pytest.raises(ValueError, match=r"0 entries.*de:.*d\.txt"):
        build_alignment_table([("7", 3), ("8", 2)], {"de": read_dictionary(str(p), "de")}, tok)


def test_min_count_no_word_is_a_one_line_error(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("a bank by the river\n", encoding="utf-8")
    (tmp_path / "d.txt").write_text(PAIRS, encoding="utf-8")
    r = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "build_alignment_table.py"), "--input", str(corpus),
         "--dictionary", f"de:{tmp_path / 'd.txt'}", "--min-count", "5", "--output", str(tmp_path / "t.jsonl"),
         "--tokenizer-type", "NullTokenizer", "--vocab-size", "50", "--log-interval", "0"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=REPO),
    )
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "no word reaches --min-count 5" in last and str(corpus) in last
    assert not (tmp_path / "t.jsonl").exists()


def _table(src_ids, tr_ids):
    return AlignmentTable(["de"], [AlignmentEntry("w", 1, src_ids, {"de": [Translation("t", tr_ids)]})], 20, {})


def _write(mcore, prefix, docs):
    b = mcore.IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for d in docs:
        b.add_item(__import__("torch").tensor(d, dtype=__import__("torch").int64))
        b.end_document()
    b.finalize(prefix + ".idx")


@pytest.fixture()
def mcore():
    from megatron.core.datasets import indexed_dataset

    return indexed_dataset


def test_codeswitch_that_substitutes_nothing_is_an_error(tmp_path, mcore, caplog):
    ws = np.ones(20, bool)
    ws[2] = False
    table = _table([1, 2], [9])  # the corpus has "1 3": eligible (starts like the source) but never a match
    src = str(tmp_path / "in")
    _write(mcore, src, [[1, 3] * 50] * 4)
    with pytest.raises(ValueError, match=r"in\.bin: codeswitching substituted nothing"):
        codeswitch_dataset(src, str(tmp_path / "out"), table, ws, CodeswitchConfig(ratio=0.5), special_ids=[0])
    assert sorted(os.listdir(tmp_path)) == ["in.bin", "in.idx"]  # nothing written
    # ratio 0 is what the user asked for: a warning with the counts, outputs written
    with caplog.at_level("WARNING"):
        stats = codeswitch_dataset(src, str(tmp_path / "out"), table, ws, CodeswitchConfig(ratio=0.0), special_ids=[0])
    assert stats.substituted == 0 and "substituted nothing" in caplog.text
    assert os.path.exists(tmp_path / "out.bin")


def test_every_run_reports_count_and_ratio(tmp_path, mcore):
    ws = np.ones(20, bool)
    table = _table([1], [9])
    src = str(tmp_path / "in")
    _write(mcore, src, [[1, 3] * 200] * 5)
    stats = codeswitch_dataset(src, str(tmp_path / "out"), table, ws, CodeswitchConfig(ratio=0.25), special_ids=[0])
    line = stats.describe()
    assert f"{stats.substituted} substituted" in line and "ratio 0.2" in line
    assert abs(stats.substitution_ratio - 0.25) < 0.05
    cs = Codeswitcher(table, ws, CodeswitchConfig(ratio=0.25), [0])
    out, mask = cs.apply(np.array([1, 3] * 200, np.int32), 0)
    s = cs.applied_stats()
    assert s.documents == 1 and s.substituted == int((out == 9).sum()) > 0
