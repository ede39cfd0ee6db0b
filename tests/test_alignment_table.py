"""Tests for megatron_prealign/alignment/table.py (the JSONL file format)."""

import json

import pytest

from megatron_prealign.alignment import AlignmentEntry, AlignmentTable, Translation
from megatron_prealign.alignment.table import FORMAT_NAME


def _table():
    return AlignmentTable(
        languages=["de", "zh"],
        entries=[
            AlignmentEntry("bank", 12, [5], {"de": [Translation("Bank", [7, 8]), Translation("Ufer", [9])],
                                             "zh": [Translation("银行", [3, 4, 2])]}, aliases=["Bank"]),
            AlignmentEntry("river", 3, [6, 1], {"de": [Translation("Fluss", [11])]}),
        ],
        vocab_size=12,
        tokenizer={"type": "NullTokenizer", "vocab_size": 12},
        meta={"min_count": 1},
    )


def test_save_load_roundtrip_and_file_layout(tmp_path):
    path = tmp_path / "sub" / "table.jsonl"
    t = _table()
    t.save(str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["format"] == FORMAT_NAME and header["version"] == 1
    assert header["languages"] == ["de", "zh"] and header["num_entries"] == 2 and header["vocab_size"] == 12
    assert json.loads(lines[1]) == {
        "word": "bank", "count": 12, "ids": [5], "aliases": ["Bank"],
        "translations": {"de": [{"text": "Bank", "ids": [7, 8]}, {"text": "Ufer", "ids": [9]}],
                         "zh": [{"text": "银行", "ids": [3, 4, 2]}]},
    }
    assert "银行" in lines[1]  # UTF-8, not \\u escapes
    loaded = AlignmentTable.load(str(path))
    assert loaded.entries == t.entries and loaded.languages == t.languages
    assert loaded.tokenizer == t.tokenizer and loaded.meta == t.meta and loaded.path == str(path)
    assert [(e.word, lang, tr.text) for e, lang, tr in loaded.pairs()] == [
        ("bank", "de", "Bank"), ("bank", "de", "Ufer"), ("bank", "zh", "银行"), ("river", "de", "Fluss")]
    assert [tr.text for _, _, tr in loaded.pairs("zh")] == ["银行"]
    assert [p.name for p in path.parent.iterdir()] == ["table.jsonl"]


def test_validate_names_file_word_and_id(tmp_path):
    t = _table()
    t.validate()
    with pytest.raises(ValueError, match=r"table built for vocab_size 12, tokenizer has 10"):
        t.validate(10)
    t.entries[1].translations["de"][0].ids = [12]
    t.path = "x.jsonl"
    with pytest.raises(ValueError, match=r"^x\.jsonl: word 'river' \(de 'Fluss'\): id 12 outside vocab_size 12$"):
        t.validate()
    t.entries[1].translations["de"][0].ids = [1]
    t.entries[0].ids = [-1]
    with pytest.raises(ValueError, match="word 'bank': id -1"):
        t.validate()
    t.entries[0].ids = [1]
    t.entries[0].translations["fr"] = [Translation("banque", [1])]
    with pytest.raises(ValueError, match="language 'fr' not in header"):
        t.validate()


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        AlignmentTable.load(str(tmp_path / "none.jsonl"))
    p = tmp_path / "t.jsonl"
    p.write_text('{"format": "something-else"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"t\.jsonl:1: not an alignment table"):
        AlignmentTable.load(str(p))
    _table().save(str(p))
    lines = p.read_text(encoding="utf-8").splitlines()
    p.write_text("\n".join(lines[:2]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header says 2 entries, file has 1"):
        AlignmentTable.load(str(p))
    p.write_text(lines[0] + "\n" + '{"word": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"t\.jsonl:2: malformed table entry"):
        AlignmentTable.load(str(p))
    header = json.loads(lines[0])
    header["version"] = 99
    p.write_text(json.dumps(header) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="newer than supported"):
        AlignmentTable.load(str(p))


def test_failed_save_leaves_nothing(tmp_path):
    t = _table()
    t.entries[0].count = object()  # not serialisable
    with pytest.raises(TypeError):
        t.save(str(tmp_path / "t.jsonl"))
    assert list(tmp_path.iterdir()) == []


def test_check_table_tokenizer_refuses_another_tokenizer():
    from megatron_prealign.alignment import check_table_tokenizer
    from megatron_prealign.tokenizer import build_tokenizer

    t = _table()
    t.path = "t.jsonl"
    same = build_tokenizer("NullTokenizer", vocab_size=11)  # NullTokenizer: vocab_size + 1 ids (EOD)
    t.tokenizer = same.describe()
    check_table_tokenizer(t, same, "--prealign-table")
    other = build_tokenizer("NullTokenizer", vocab_size=20)
    with pytest.raises(ValueError, match=r"^--prealign-table t\.jsonl: was built for another tokenizer \(NullTokenizer, vocab 12\)"):
        check_table_tokenizer(t, other, "--prealign-table")
    t.tokenizer = {}  # tables without a tokenizer record pass (their ids are validated instead)
    check_table_tokenizer(t, other, "--prealign-table")
