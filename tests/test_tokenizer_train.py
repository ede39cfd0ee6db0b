"""Tests for megatron_prealign/tokenizer/train.py and tools/train_tokenizer.py (its corpus reader:
tests/test_readers.py, ``iter_documents``)."""

import importlib.util
import json
import os

import pytest

from megatron_prealign.tokenizer import build_tokenizer, train_byte_level_bpe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["The bank of the river.\nSecond line of the bank.", "Money in the bank is safe.", "Zürich café 银行"]


def test_trained_files_load_in_both_forms(tmp_path):
    paths = train_byte_level_bpe(DOCS * 10, str(tmp_path / "tok"), vocab_size=300, min_frequency=2)
    assert sorted(os.listdir(tmp_path / "tok")) == ["merges.txt", "tokenizer.json", "tokenizer_config.json", "vocab.json"]
    vocab = json.loads(open(paths["vocab_file"], encoding="utf-8").read())
    assert vocab["<|endoftext|>"] == 0 and vocab["<|pad|>"] == 1 and len(vocab) <= 300
    assert len(vocab) == len(set(vocab.values())) == max(vocab.values()) + 1  # dense ids
    assert open(paths["merge_file"], encoding="utf-8").readline() == "#version: 0.2\n"
    g = build_tokenizer("GPT2BPETokenizer", vocab_file=paths["vocab_file"], merge_file=paths["merge_file"])
    h = build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(tmp_path / "tok"))
    for d in DOCS:
        assert g.tokenize(d) == h.tokenize(d) and g.detokenize(g.tokenize(d)) == d
    assert g.tokenize(" bank") != [g.vocab[c] for c in "Ġbank"]  # merges were learned
    no_pad = train_byte_level_bpe(DOCS, str(tmp_path / "nopad"), vocab_size=280, add_pad=False)
    t = build_tokenizer("HuggingFaceTokenizer", tokenizer_model=os.path.dirname(no_pad["tokenizer_json"]))
    assert t.eod == 0 and t.pad == 0


def test_train_tokenizer_tool(tmp_path, capsys):
    src = tmp_path / "en.jsonl"
    src.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS * 5), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("train_tokenizer", os.path.join(ROOT, "tools", "train_tokenizer.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["--input", str(src), "--vocab-size", "290", "--output-dir", str(tmp_path / "out")])
    assert "15 documents" in capsys.readouterr().out
    tok = build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(tmp_path / "out"))
    assert tok.detokenize(tok.tokenize(DOCS[0])) == DOCS[0]
    assert tool.main(["--input", str(tmp_path / "none.jsonl"), "--output-dir", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "train_tokenizer.py: error: --input: no such file" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o2").exists()
