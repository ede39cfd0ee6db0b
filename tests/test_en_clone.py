"""Tests for megatron_prealign/tokenizer/en_clone.py and tools/make_en_clone.py."""

import importlib.util
import os

import numpy as np
import pytest
from tokenizer_helpers import bpe_fixtures
import torch

from megatron_prealign.alignment import AlignmentTable
from megatron_prealign.alignment.build import build_en_clone_table
from megatron_prealign.tokenizer import (
    EN_CLONE_LANGUAGE,
    EnCloneTokenizer,
    build_tokenizer,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = ["The bank of the river is near the bank, said the banker.\n",
        "Money in the bank is safe; the river bank is wet.\n"] * 30


base, bpe_dir = bpe_fixtures("base", "bpe_dir", TEXT, 300)


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tools", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_clone_ids_hand_computed():
    base = build_tokenizer("NullTokenizer", vocab_size=10)  # ids 0..9, EOD 10, V = 11
    tok = EnCloneTokenizer(base)
    assert tok.vocab_size == 22 and tok.eod == 10 and tok.pad == 10
    assert tok.clone_ids(np.array([0, 3, 9, 10])).tolist() == [11, 14, 20, 10]
    assert tok.tokenize_clone("0 3 9") == [11, 14, 20]
    assert tok.detokenize([14, 3, 10]) == "3 3 10"
    assert tok.is_clone([14, 3, 10]).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="outside the base vocabulary"):
        tok.clone_ids(np.array([11]))


def test_en_clone_wraps_real_tokenizer(base):
    tok = EnCloneTokenizer(base)
    v = base.vocab_size
    assert tok.vocab_size == 2 * v and tok.eod == base.eod and tok.pad == base.pad
    text = TEXT[0]
    ids = base.tokenize(text)
    clone = tok.tokenize_clone(text)
    assert clone == [i + v for i in ids]  # the text holds no special tokens
    assert tok.detokenize(clone) == text and tok.detokenize(ids + clone) == text + text
    assert tok.clone_ids(np.array([base.eod, base.pad, 5])).tolist() == [base.eod, base.pad, 5 + v]
    m = tok.word_start_mask()
    assert m.shape == (2 * v,) and np.array_equal(m[:v], base.word_start_mask())
    assert np.array_equal(m[v:], base.word_start_mask())
    assert tok.encode_word_clone("bank") == [i + v for i in base.encode_word("bank")]
    assert tok.describe()["base"] == base.describe() and tok.describe()["vocab_size"] == 2 * v
    with pytest.raises(ValueError):
        EnCloneTokenizer(tok)


def _write_dataset(prefix, docs, dtype):
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for doc in docs:  # a document of several sequences, as preprocess_data with sentence splitting
        builder.add_document(torch.tensor(np.concatenate(doc)), [len(s) for s in doc])
    builder.finalize(prefix + ".idx")


@pytest.mark.parametrize("n_base", [50, 40000])  # 2V < 65500 keeps uint16; else int32
def test_clone_indexed_dataset_against_megatron_reader(tmp_path, n_base):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from megatron_prealign.data.en_clone import clone_indexed_dataset

    tok = EnCloneTokenizer(build_tokenizer("NullTokenizer", vocab_size=n_base))
    rng = np.random.default_rng(0)
    docs = [[rng.integers(0, n_base, size=rng.integers(1, 9)) for _ in range(rng.integers(1, 4))]
            for _ in range(25)]
    for doc in docs:
        doc[-1] = np.append(doc[-1], tok.eod)
    src, dst = str(tmp_path / "en"), str(tmp_path / "clone")
    _write_dataset(src, docs, np.uint16 if n_base < 65500 else np.int32)
    info = clone_indexed_dataset(src, dst, tok, chunk_tokens=7)  # chunks cut through documents
    out, ref = IndexedDataset(dst), IndexedDataset(src)
    assert out.index.dtype == (np.uint16 if 2 * (n_base + 1) < 65500 else np.int32)
    assert info["documents"] == 25 and info["tokens"] == int(ref.sequence_lengths.sum())
    assert np.array_equal(out.document_indices, ref.document_indices)
    assert np.array_equal(out.sequence_lengths, ref.sequence_lengths)
    for i in range(len(ref)):
        e = ref[i].astype(np.int64)
        expect = np.where(e == tok.eod, e, e + n_base + 1)
        assert np.array_equal(out[i].astype(np.int64), expect)
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    # byte-identical to megatron-core's builder fed the cloned documents
    cloned = [[np.where(s == tok.eod, s, s + n_base + 1) for s in doc] for doc in docs]
    _write_dataset(str(tmp_path / "ref"), cloned, out.index.dtype)
    for ext in (".bin", ".idx"):
        assert open(dst + ext, "rb").read() == open(str(tmp_path / "ref") + ext, "rb").read()


def test_clone_rejects_ids_outside_vocab(tmp_path):
    from megatron_prealign.data.en_clone import clone_indexed_dataset

    src = str(tmp_path / "en")
    _write_dataset(src, [[np.array([1, 2, 60])]], np.uint16)
    tok = EnCloneTokenizer(build_tokenizer("NullTokenizer", vocab_size=50))
    with pytest.raises(ValueError, match=r"en\.bin tokens \[0, 3\): clone_ids: id 60"):
        clone_indexed_dataset(src, str(tmp_path / "out"), tok)
    assert sorted(os.listdir(tmp_path)) == ["en.bin", "en.idx"]  # nothing half-written
    with pytest.raises(FileNotFoundError, match="--input: no such file"):
        clone_indexed_dataset(str(tmp_path / "missing"), str(tmp_path / "out"), tok)


def test_make_en_clone_tool(tmp_path, base, bpe_dir, capsys):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    src = str(tmp_path / "en_text_document")
    _write_dataset(src, [[np.array(base.tokenize(t) + [base.eod])] for t in TEXT[:4]], np.uint16)
    tool = _load_tool("make_en_clone")
    tool.main(["--input", src, "--output-prefix", str(tmp_path / "clone_text_document"),
               "--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", str(bpe_dir / "vocab.json"),
               "--merge-file", str(bpe_dir / "merges.txt")])
    assert "4 documents" in capsys.readouterr().out
    out = IndexedDataset(str(tmp_path / "clone_text_document"))
    tok = EnCloneTokenizer(base)
    assert tok.detokenize(out[0][:-1]) == TEXT[0] and out[0][-1] == base.eod
    assert (out[1][:-1] >= base.vocab_size).all()


def test_build_en_clone_table(base):
    tok = EnCloneTokenizer(base)
    table = build_en_clone_table(tok, [("bank", 90), ("river", 40), "the"])
    assert table.languages == [EN_CLONE_LANGUAGE] and table.vocab_size == 2 * base.vocab_size
    assert [e.word for e in table] == ["bank", "river", "the"]
    for e in table:
        (t,) = e.translations[EN_CLONE_LANGUAGE]
        assert e.ids == base.encode_word(e.word)
        assert t.text == e.word and t.ids == [i + base.vocab_size for i in e.ids]
    assert table.entries[0].count == 90
    with pytest.raises(TypeError):
        build_en_clone_table(base, ["bank"])


def test_en_clone_table_roundtrip(base, tmp_path):
    table = build_en_clone_table(EnCloneTokenizer(base), ["bank", "river"])
    table.save(str(tmp_path / "t.jsonl"))
    loaded = AlignmentTable.load(str(tmp_path / "t.jsonl"))
    assert loaded.entries == table.entries
    loaded.validate(2 * base.vocab_size)
    with pytest.raises(ValueError, match="vocab_size"):
        loaded.validate(base.vocab_size)  # the English-only tokenizer cannot hold clone ids


def test_clone_truncated_index_is_one_line_error(tmp_path):
    # regression: a truncated .idx raised megatron-core's "buffer is smaller than requested size"
    # (plus an AttributeError traceback from IndexedDataset.__del__)
    from megatron_prealign.data.indexed import IndexedDatasetError
    from megatron_prealign.data.en_clone import clone_indexed_dataset

    src = str(tmp_path / "en")
    _write_dataset(src, [[np.array([1, 2, 3, 50])], [np.array([4, 5, 50])]], np.uint16)
    tok = EnCloneTokenizer(build_tokenizer("NullTokenizer", vocab_size=50))
    idx = (tmp_path / "en.idx").read_bytes()
    (tmp_path / "en.idx").write_bytes(idx[:-5])
    with pytest.raises(IndexedDatasetError, match=r"en\.idx: truncated or corrupt index"):
        clone_indexed_dataset(src, str(tmp_path / "out"), tok)
    (tmp_path / "en.idx").write_bytes(idx)
    data = (tmp_path / "en.bin").read_bytes()
    (tmp_path / "en.bin").write_bytes(data[:-2])
    with pytest.raises(IndexedDatasetError, match=r"en\.bin: size 12 bytes does not match"):
        clone_indexed_dataset(src, str(tmp_path / "out"), tok)
    assert sorted(os.listdir(tmp_path)) == ["en.bin", "en.idx"]


def test_en_clone_table_skips_unknown_token_words(tmp_path):
    # regression: a word holding the unknown token got itself (unk is special, never cloned) as
    # its "clone", a table the codeswitcher rejects ("contains special token id")
    import io

    import sentencepiece as spm

    from megatron_prealign.data.codeswitch import CodeswitchConfig, Codeswitcher

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter([t.strip() for t in TEXT]), model_writer=buf,
                                   vocab_size=40, model_type="bpe", byte_fallback=False, minloglevel=2)
    (tmp_path / "sp.model").write_bytes(buf.getvalue())
    tok = EnCloneTokenizer(build_tokenizer("GPTSentencePieceTokenizer", tokenizer_model=str(tmp_path / "sp.model")))
    assert tok.base.tokenize("bank") and 0 in tok.encode_word("Zürich")  # 'ü' is unknown
    table = build_en_clone_table(tok, [("bank", 5), ("Zürich", 4), ("river", 3)])
    assert [e.word for e in table] == ["bank", "river"]
    Codeswitcher(table, tok.word_start_mask(), CodeswitchConfig(ratio=1.0), special_ids=tok.special_ids)
