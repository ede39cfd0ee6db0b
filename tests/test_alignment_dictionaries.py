"""Tests for megatron_prealign/alignment/dictionaries.py (MUSE, TSV, PreAlign JSONL)."""

import pytest

from megatron_prealign.alignment.dictionaries import parse_dictionary_spec, read_dictionary


def test_muse_space_and_tab_separated(tmp_path):
    p = tmp_path / "en-de.txt"
    p.write_text("bank bank\nbank ufer\nriver\tfluss\n\nbank ufer\nthe die\nthe der\nbroken line here\nlonely\n",
                 encoding="utf-8")
    d = read_dictionary(str(p), "de")
    assert d.stats.format == "muse"
    assert d.entries == {"bank": ["bank", "ufer"], "river": ["fluss"], "the": ["die", "der"]}
    assert (d.stats.lines, d.stats.pairs, d.stats.duplicates, d.stats.malformed) == (8, 5, 1, 2)
    assert d.stats.malformed_examples[0] == (
        f"{p}:8: expected 'source translation' (2 fields), got 3: 'broken line here'")
    assert d.stats.malformed_examples[1].startswith(f"{p}:9:")
    with pytest.raises(ValueError, match=rf"^malformed dictionary line: {p}:8: "):
        read_dictionary(str(p), "de", strict=True)


def test_tsv_with_and_without_header(tmp_path):
    p = tmp_path / "en-zh.tsv"
    p.write_text("\ufeffsrc\ttgt\nbank\t银行\nbank\t河岸\nice cream\t冰淇淋\t0.9\nriver\n", encoding="utf-8")
    d = read_dictionary(str(p), "zh", fmt="tsv")
    assert d.stats.header_skipped and d.stats.malformed == 1
    assert d.entries == {"bank": ["银行", "河岸"], "ice cream": ["冰淇淋"]}
    p2 = tmp_path / "plain.tsv"
    p2.write_text("bank\tBank\nhouse\tHaus\n", encoding="utf-8")
    d2 = read_dictionary(str(p2), "de")
    assert not d2.stats.header_skipped and d2.entries == {"bank": ["Bank"], "house": ["Haus"]}
    p3 = tmp_path / "lang-header.tsv"
    p3.write_text("en\tde\nbank\tBank\n", encoding="utf-8")
    assert read_dictionary(str(p3), "de").entries == {"bank": ["Bank"]}


def test_prealign_jsonl_both_shapes(tmp_path):
    p = tmp_path / "en-zh.jsonl"
    p.write_text(
        '{"words": "bank $ 银行 $ 水岸"}\n'
        '{"words": "river$河流$ 河 $"}\n'
        '{"src_text": "money", "tgt_text": "钱"}\n'
        '{"src_text": "money", "tgt_text": ["金钱", "钱"]}\n'
        '{"words": "lonely"}\n'
        'not json\n'
        '{"other": 1}\n'
        '[1, 2]\n',
        encoding="utf-8",
    )
    d = read_dictionary(str(p), "zh")
    assert d.stats.format == "prealign-jsonl"
    assert d.entries == {"bank": ["银行", "水岸"], "river": ["河流", "河"], "money": ["钱", "金钱"]}
    assert d.stats.malformed == 4 and d.stats.duplicates == 1
    assert [e.split(": ")[0] for e in d.stats.malformed_examples] == [f"{p}:{i}" for i in (5, 6, 7, 8)]


def test_lookup_case_fallback(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text("bank Bank\nBank Bankhaus\nthe die\n", encoding="utf-8")
    d = read_dictionary(str(p), "de")
    assert d.lookup("bank") == ["Bank"]
    assert d.lookup("Bank") == ["Bankhaus"]  # exact form first
    assert d.lookup("The") == ["die"] and d.lookup("The", case_fallback=False) == []
    assert d.lookup("BANK") == ["Bank"]  # its lower case exactly, not case-insensitively (issue 11)


def test_spec_and_errors(tmp_path):
    assert parse_dictionary_spec("de:a/b:c.txt") == ("de", "a/b:c.txt")
    with pytest.raises(ValueError, match="expected LANG:PATH"):
        parse_dictionary_spec("dicts/en-de.txt")
    with pytest.raises(FileNotFoundError, match=r"^--dictionary de:.*nope\.txt: no such file$"):
        read_dictionary(str(tmp_path / "nope.txt"), "de")
    (tmp_path / "x.txt").write_text("a b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="--dictionary-format"):
        read_dictionary(str(tmp_path / "x.txt"), "de", fmt="csv")


def test_non_utf8_line_names_file_and_line(tmp_path):
    # regression: a Latin-1 line raised a bare "'utf-8' codec can't decode byte 0xfc" naming
    # neither the file nor the line
    p = tmp_path / "en-de.txt"
    p.write_bytes("bank Bank\r\nover ".encode("utf-8") + b"\xfcber\r\nriver Fluss\r\n")
    d = read_dictionary(str(p), "de")
    assert d.entries == {"bank": ["Bank"], "river": ["Fluss"]}
    assert (d.stats.lines, d.stats.malformed) == (3, 1)
    assert d.stats.malformed_examples == [f"{p}:2: invalid UTF-8 (invalid start byte at byte 5); dictionaries must be UTF-8"]
    with pytest.raises(ValueError, match=rf"^malformed dictionary line: {p}:2: invalid UTF-8"):
        read_dictionary(str(p), "de", strict=True)
