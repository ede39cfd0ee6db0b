"""Tests for megatron_prealign/alignment/build.py and tools/build_alignment_table.py."""

import importlib.util
import json
import os
import re

import pytest
from tokenizer_helpers import bpe_fixtures

from megatron_prealign.alignment import AlignmentTable
from megatron_prealign.alignment.build import AlignmentBuildConfig, build_alignment_table, format_coverage
from megatron_prealign.alignment.dictionaries import read_dictionary
from megatron_prealign.tokenizer import build_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = ["The bank of the river is near the bank, said the banker in Berlin.\n",
        "Money in the bank is safe; the river bank is wet. 银行 河流 Ufer Fluss die Bank\n"] * 30


tok, bpe_dir = bpe_fixtures("tok", "bpe_dir", TEXT, 320)


@pytest.fixture()
def dicts(tmp_path):
    de = tmp_path / "en-de.txt"
    de.write_text("bank Bank\nbank Ufer\nthe die\nriver Fluss\nberlin Berlin\nBerlin Berlin\n", encoding="utf-8")
    zh = tmp_path / "en-zh.tsv"
    zh.write_text("bank\t银行\nriver\t河流\nriver\t河流\n", encoding="utf-8")
    return {"de": read_dictionary(str(de), "de"), "zh": read_dictionary(str(zh), "zh")}


WORDS = [("bank", 10), ("The", 6), ("river", 4), ("Berlin", 3), ("zebra", 2)]


def test_translations_and_coverage_hand_computed(tok, dicts):
    counts = dict(WORDS, the=50)  # "the" more frequent than "The": a common word (case policy)
    table, rep = build_alignment_table(WORDS, dicts, tok, words_counted=9, total_occurrences=40, counts=counts)
    by = {e.word: e for e in table}
    assert list(by) == ["bank", "The", "river"]  # Berlin only had an identical translation; zebra none
    assert [t.text for t in by["bank"].translations["de"]] == ["Bank", "Ufer"]
    assert [t.text for t in by["bank"].translations["zh"]] == ["银行"]
    assert [t.text for t in by["The"].translations["de"]] == ["Die"]  # lower-case fallback, capital kept
    assert "zh" not in by["The"].translations
    assert by["river"].translations["zh"][0].ids == tok.encode_word("河流")
    assert by["bank"].ids == tok.encode_word("bank") and by["bank"].count == 10
    assert (rep["words_counted"], rep["words_kept"], rep["words_with_translation"], rep["entries"]) == (9, 5, 3, 3)
    assert rep["fraction_with_translation"] == pytest.approx(0.6)
    assert (rep["occurrences_kept"], rep["occurrences_translated"]) == (25, 20)
    de, zh = rep["per_language"]["de"], rep["per_language"]["zh"]
    assert (de["words_with_translation"], de["translations"], de["identical_skipped"]) == (3, 4, 1)
    assert de["fraction_of_occurrences"] == pytest.approx(20 / 40)
    assert (zh["words_with_translation"], zh["translations"], zh["occurrences_covered"]) == (2, 2, 14)
    assert table.tokenizer == tok.describe() and table.vocab_size == tok.vocab_size
    text = format_coverage(rep)
    assert "with >= 1 translation: 3 (60.0%)" in text and "de: 3 words (60.0% of kept)" in text


def test_build_options(tok, dicts):
    cfg = AlignmentBuildConfig(keep_identical=True, keep_untranslated=True, max_translations=1,
                               case_fallback=False)
    table, rep = build_alignment_table(WORDS, dicts, tok, cfg)
    by = {e.word: e for e in table}
    assert list(by) == ["bank", "The", "river", "Berlin", "zebra"]
    assert [t.text for t in by["bank"].translations["de"]] == ["Bank"]
    assert by["Berlin"].translations["de"][0].text == "Berlin"
    assert by["The"].translations == {} and by["zebra"].translations == {}
    assert rep["words_with_translation"] == 3


def test_same_ids_merge_into_aliases(tmp_path):
    null = build_tokenizer("NullTokenizer", vocab_size=20)  # "1" and "01" both encode to [1]
    d = tmp_path / "d.txt"
    d.write_text("1 7\n01 8\n01 7\n2 9\n", encoding="utf-8")
    table, rep = build_alignment_table([("1", 5), ("2", 4), ("01", 3)], {"xx": read_dictionary(str(d), "xx")}, null)
    assert [(e.word, e.count, e.aliases) for e in table] == [("1", 8, ["01"]), ("2", 4, [])]
    assert [t.ids for t in table.entries[0].translations["xx"]] == [[7], [8]]
    assert rep["aliases_merged"] == 1 and rep["entries"] == 2


def _tool():
    spec = importlib.util.spec_from_file_location("build_alignment_table",
                                                  os.path.join(ROOT, "tools", "build_alignment_table.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tool_end_to_end_parquet(tmp_path, bpe_dir, tok, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = ["The bank. The bank, the river!", "A bank is a bank; the river flows.", "Zebra."] * 10
    pq.write_table(pa.table({"text": docs, "url": ["u"] * len(docs)}), str(tmp_path / "en_part_00000.parquet"))
    (tmp_path / "en-de.txt").write_text("bank Bank\nriver Fluss\nthe die\na ein\nbad line x\n", encoding="utf-8")
    (tmp_path / "en-zh.jsonl").write_text('{"words": "bank $ 银行 $ 河岸"}\n', encoding="utf-8")
    out = tmp_path / "table.jsonl"
    tok_args = ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", str(bpe_dir)]
    # naive reference counts: The 20, bank 40, the 20, river 20, A 10, is 10, a 10, flows 10, Zebra 10
    _tool().main(["--input", str(tmp_path / "en_part_00000.parquet"), "--min-count", "15",
                  "--dictionary", f"de:{tmp_path / 'en-de.txt'}", "--dictionary", f"zh:{tmp_path / 'en-zh.jsonl'}",
                  "--save-word-counts", str(tmp_path / "counts.tsv"), "--output", str(out),
                  "--log-interval", "0"] + tok_args)
    printed = capsys.readouterr().out
    assert "1 malformed lines, e.g." in printed and "en-de.txt:5:" in printed
    table = AlignmentTable.load(str(out))
    table.validate(tok.vocab_size)
    assert [(e.word, e.count) for e in table] == [("bank", 40), ("The", 20), ("river", 20), ("the", 20)]
    assert [t.text for t in table.entries[0].translations["zh"]] == ["银行", "河岸"]
    rep = json.loads((tmp_path / "table.jsonl.coverage.json").read_text(encoding="utf-8"))
    assert (rep["words_counted"], rep["words_kept"], rep["words_with_translation"]) == (9, 4, 4)
    assert rep["occurrences_total"] == 150 and rep["per_language"]["zh"]["words_with_translation"] == 1
    assert rep["dictionaries"][0]["malformed"] == 1
    # re-use the counts with the top 50%: ceil(0.5 * 4) = 2 words
    _tool().main(["--word-counts", str(tmp_path / "counts.tsv"), "--min-count", "15", "--top-fraction", "0.5",
                  "--dictionary", f"de:{tmp_path / 'en-de.txt'}", "--output", str(out)] + tok_args)
    assert [e.word for e in AlignmentTable.load(str(out))] == ["bank", "The"]
    # En-Clone table
    _tool().main(["--word-counts", str(tmp_path / "counts.tsv"), "--min-count", "15", "--en-clone",
                  "--output", str(tmp_path / "clone.jsonl")] + tok_args)
    clone = AlignmentTable.load(str(tmp_path / "clone.jsonl"))
    assert clone.languages == ["en_clone"] and clone.vocab_size == 2 * tok.vocab_size and len(clone) == 4
    # --strict: the malformed line is an error naming file:line
    assert _tool().main(["--word-counts", str(tmp_path / "counts.tsv"), "--strict",
                         "--dictionary", f"de:{tmp_path / 'en-de.txt'}", "--output", str(out)] + tok_args) == 2
    assert re.search(r"en-de\.txt:5: expected 'source translation'", capsys.readouterr().err)


def test_unknown_token_words_and_translations_are_skipped(tmp_path):
    # regression: with a tokenizer without byte fallback, translations (and words) holding the
    # unknown token went into the table; preprocess_data.py --codeswitch then rejected the
    # whole table ("contains special token id 0") instead of the build leaving them out
    import io

    import sentencepiece as spm

    from megatron_prealign.data.codeswitch import CodeswitchConfig, Codeswitcher

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter([t.split(" 银行")[0] for t in TEXT]), model_writer=buf,
                                   vocab_size=60, model_type="bpe", byte_fallback=False, minloglevel=2)
    (tmp_path / "sp.model").write_bytes(buf.getvalue())
    tok = build_tokenizer("GPTSentencePieceTokenizer", tokenizer_model=str(tmp_path / "sp.model"))
    unk = tok._sp.unk_id()
    assert unk in tok.special_ids and unk in tok.encode_word("银行") and unk not in tok.encode_word("Berlin")
    (tmp_path / "en-zh.txt").write_text("bank\t银行\nriver\t河流\nriver\tBerlin\n", encoding="utf-8")
    zh = read_dictionary(str(tmp_path / "en-zh.txt"), "zh")
    table, rep = build_alignment_table([("bank", 9), ("river", 5), ("Zürich", 4)], {"zh": zh}, tok)
    assert [(e.word, [t.text for t in e.translations["zh"]]) for e in table] == [("river", ["Berlin"])]
    assert rep["per_language"]["zh"]["unencodable_skipped"] == 2 and rep["words_unencodable"] == 1
    assert "unencodable (unknown/special token) skipped: 2" in format_coverage(rep)
    Codeswitcher(table, tok.word_start_mask(), CodeswitchConfig(ratio=1.0), special_ids=tok.special_ids)


def test_tool_writes_side_files_into_new_directories(tmp_path, bpe_dir):
    # regression: --save-word-counts / --coverage-report in a directory that does not exist yet
    # crashed with a traceback after counting the whole corpus
    (tmp_path / "en.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXT), encoding="utf-8")
    (tmp_path / "en-de.txt").write_text("bank Bank\n", encoding="utf-8")
    _tool().main(["--input", str(tmp_path / "en.jsonl"), "--min-count", "2", "--log-interval", "0",
                  "--dictionary", f"de:{tmp_path / 'en-de.txt'}", "--output", str(tmp_path / "t" / "table.jsonl"),
                  "--save-word-counts", str(tmp_path / "c" / "counts.tsv"),
                  "--coverage-report", str(tmp_path / "r" / "cov.json"),
                  "--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", str(bpe_dir)])
    assert (tmp_path / "c" / "counts.tsv").read_text(encoding="utf-8").startswith("the\t")
    assert json.loads((tmp_path / "r" / "cov.json").read_text(encoding="utf-8"))["entries"] == 1
    assert [e.word for e in AlignmentTable.load(str(tmp_path / "t" / "table.jsonl"))] == ["bank"]
