"""Tokenizer fixtures in the real formats, shared by the test modules."""

from __future__ import annotations


def train_gpt2_bpe(out_dir, texts, vocab_size: int):
    """A tiny byte-level BPE trained on ``texts`` into ``out_dir``, loaded as ``GPT2BPETokenizer``
    (the tests' real-format tokenizer fixture: vocab.json + merges.txt)."""
    from megatron_prealign.tokenizer import build_tokenizer, train_byte_level_bpe

    train_byte_level_bpe(texts, str(out_dir), vocab_size=vocab_size, min_frequency=2)
    return build_tokenizer("GPT2BPETokenizer", vocab_file=str(out_dir / "vocab.json"),
                           merge_file=str(out_dir / "merges.txt"))


def bpe_fixtures(tokenizer_name: str, dir_name: str, texts, vocab_size: int):
    """Two session fixtures for a test module: ``tokenizer_name`` (the trained GPT2BPETokenizer)
    and ``dir_name`` (its folder: vocab.json + merges.txt, for CLI tests).

    Use as ``tok, bpe_dir = bpe_fixtures("tok", "bpe_dir", TEXT, 320)`` at module level.
    """
    import pytest
    from pathlib import Path

    @pytest.fixture(scope="session", name=tokenizer_name)
    def _tokenizer(tmp_path_factory):
        return train_gpt2_bpe(tmp_path_factory.mktemp(tokenizer_name), texts, vocab_size)

    @pytest.fixture(scope="session", name=dir_name)
    def _folder(request):
        return Path(request.getfixturevalue(tokenizer_name).vocab_file).parent

    return _tokenizer, _folder


def bpe_folder_fixture(name: str, texts, vocab_size: int, scope: str = "session"):
    """A fixture ``name``: the folder (str) of a byte-level BPE trained on ``texts`` with
    ``min_frequency=1`` (the HuggingFace tokenizer format the preprocessing CLI loads).

    Use as ``bpe_dir = bpe_folder_fixture("bpe_dir", TEXTS * 20, 350)`` at module level.
    """
    import pytest

    from megatron_prealign.tokenizer import train_byte_level_bpe

    @pytest.fixture(scope=scope, name=name)
    def _folder(tmp_path_factory):
        out = tmp_path_factory.mktemp(name)
        train_byte_level_bpe(texts, str(out), vocab_size=vocab_size, min_frequency=1)
        return str(out)

    return _folder
