"""Issue 11 (2): the case policy of the alignment table (lower-case fallback, proper nouns)."""

import pytest
from tokenizer_helpers import train_gpt2_bpe

from megatron_prealign.alignment.build import (
    AlignmentBuildConfig,
    build_alignment_table,
    recase,
    use_case_fallback,
)
from megatron_prealign.alignment.dictionaries import read_dictionary

TEXT = ["The Windows of the house face the wall. Tom saw the cat. US law applies to us.\n"] * 30


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_gpt2_bpe(tmp_path_factory.mktemp("bpe_case"), TEXT, 300)


@pytest.fixture()
def dicts(tmp_path):
    de = tmp_path / "en-de.txt"
    de.write_text("the die\nwindows Fenster\ntom Kater\nwall Wand\nus uns\nUS USA\ncat Katze\n", encoding="utf-8")
    zh = tmp_path / "en-zh.txt"
    zh.write_text("the 这\nwindows 窗户\ncat 猫\n", encoding="utf-8")
    return {"de": read_dictionary(str(de), "de"), "zh": read_dictionary(str(zh), "zh")}


# corpus counts as real English has them: "The" is a sentence-initial "the"; "Windows" (the OS)
# and "Tom" (a name) are mostly capitalised; "Wall" (Wall Street) rarer than "wall"
COUNTS = {"the": 1000, "The": 300, "Windows": 80, "windows": 20, "Tom": 50, "tom": 1, "Wall": 10, "wall": 40,
          "US": 30, "us": 60, "cat": 20, "THE": 5}


def build(tok, dicts, policy="auto"):
    words = sorted(COUNTS.items(), key=lambda wc: -wc[1])
    table, report = build_alignment_table(words, dicts, tok, AlignmentBuildConfig(case_fallback=policy), counts=COUNTS)
    return {e.word: {lang: [t.text for t in ts] for lang, ts in e.translations.items()} for e in table}, report


def test_common_words_fall_back_with_their_capital_proper_nouns_stay(tok, dicts):
    by, report = build(tok, dicts)
    assert by["The"] == {"de": ["Die"], "zh": ["这"]}  # capital kept in Latin script, zh unchanged
    assert by["THE"]["de"] == ["DIE"]
    assert by["Wall"]["de"] == ["Wand"]  # "wall" is the more frequent form: a common word
    assert "Windows" not in by and "Tom" not in by  # proper nouns by the counts: untranslated
    assert by["windows"]["de"] == ["Fenster"]
    assert report["words_translated_via_lower_case"] == 3  # The, THE, Wall


def test_lookup_uses_the_lower_case_not_case_insensitive(tok, dicts):
    by, _ = build(tok, dicts)
    assert by["us"]["de"] == ["uns"]  # the line "US USA" does not make us -> USA
    assert by["US"]["de"] == ["USA"]
    assert dicts["de"].lookup("Us") == ["uns"] and dicts["de"].lookup("uS") == ["uns"]
    assert dicts["de"].lookup("us") == ["uns"]


def test_case_fallback_off(tok, dicts):
    by, report = build(tok, dicts, "off")
    assert "The" not in by and "Wall" not in by and "THE" not in by
    assert by["the"]["de"] == ["die"] and report["words_translated_via_lower_case"] == 0
    with pytest.raises(ValueError, match="--case-fallback"):
        AlignmentBuildConfig(case_fallback="sometimes")


def test_rules_by_hand():
    assert use_case_fallback("The", {"the": 5, "The": 5})
    assert not use_case_fallback("Tom", {"Tom": 5})
    assert not use_case_fallback("Windows", {"Windows": 9, "windows": 2})
    assert not use_case_fallback("the", {"the": 5})
    assert recase("The", "die") == "Die" and recase("THE", "die") == "DIE"
    assert recase("The", "这") == "这" and recase("The", "ال") == "ال"
    assert recase("The", "это") == "Это"
