"""Tests for megatron_prealign/cli/tokenizer.py (Megatron flag names for every tool)."""

import argparse

import pytest

from megatron_prealign.cli.tokenizer import add_tokenizer_args, build_tokenizer_from_args
from megatron_prealign.tokenizer import EnCloneTokenizer, GPT2BPETokenizer, train_byte_level_bpe


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bpe_args")
    train_byte_level_bpe(["the bank of the river\n"] * 20, str(out), vocab_size=280, min_frequency=2)
    return out


def _parser():
    p = argparse.ArgumentParser(prog="tool.py")
    add_tokenizer_args(p)
    return p


def test_megatron_flag_names(bpe_dir):
    p = _parser()
    args = p.parse_args(["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", str(bpe_dir / "vocab.json"),
                         "--merge-file", str(bpe_dir / "merges.txt")])
    tok = build_tokenizer_from_args(args)
    assert isinstance(tok, GPT2BPETokenizer) and tok.tokenize(" bank") == tok.encode_word("bank")
    args = p.parse_args(["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", str(bpe_dir), "--en-clone"])
    clone = build_tokenizer_from_args(args)
    assert isinstance(clone, EnCloneTokenizer) and clone.vocab_size == 2 * tok.vocab_size
    args = p.parse_args(["--tokenizer-type", "NullTokenizer", "--vocab-size", "64"])
    assert build_tokenizer_from_args(args).vocab_size == 65


def test_bad_flags_exit_with_one_line(tmp_path, capsys):
    p = _parser()
    args = p.parse_args(["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", str(tmp_path / "v.json"),
                         "--merge-file", str(tmp_path / "m.txt")])
    with pytest.raises(SystemExit):
        build_tokenizer_from_args(args, p)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"tool.py: error: --vocab-file: no such file: {tmp_path / 'v.json'}"
    with pytest.raises(FileNotFoundError):
        build_tokenizer_from_args(args)  # no parser: the error is raised
    with pytest.raises(SystemExit):
        p.parse_args(["--tokenizer-type", "BertWordPieceCase"])  # not offered
    args = p.parse_args(["--tokenizer-type", "SentencePieceTokenizer"])
    with pytest.raises(ValueError, match="--tokenizer-model is required"):
        build_tokenizer_from_args(args)
