"""Tests for megatron_prealign/tokenizer/tokenizer.py (and the word-start rule of base.py)."""

import io
import json
import math

import numpy as np
import pytest
from tokenizer_helpers import bpe_fixtures
import regex

from megatron_prealign.tokenizer import (
    GPT2BPETokenizer,
    HuggingFaceTokenizer,
    NullTokenizer,
    build_tokenizer,
    same_tokenizer,
)
from megatron_prealign.tokenizer.base import starts_word_bytes, starts_word_text

TEXT = [
    "The bank of the river is near the bank, isn't it? The riverbank's café is naïve.\n",
    "Money in the bank: 1984 dollars; well-known U.S. banks (and \"quotes\"), bank--river.\n",
    "银行在河边，银行很大。 Zürich über alles — “fancy” quotes.\n",
] * 40


gpt2, bpe_dir = bpe_fixtures("gpt2", "bpe_dir", TEXT, 420)


@pytest.fixture(scope="session")
def sp_model(tmp_path_factory):
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([t.strip() for t in TEXT]), model_writer=buf, vocab_size=330,
        model_type="bpe", byte_fallback=True, minloglevel=2,
    )
    path = tmp_path_factory.mktemp("sp") / "sp.model"
    path.write_bytes(buf.getvalue())
    return str(path)


# ---------------------------------------------------------------- an independent GPT-2 BPE
def _reference_bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


GPT2_PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def reference_gpt2_encode(text, encoder, ranks):
    """GPT-2's published algorithm: regex pieces, bytes -> unicode, lowest-rank merges."""
    b2u = _reference_bytes_to_unicode()
    ids = []
    for piece in GPT2_PAT.findall(text):
        word = [b2u[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: ranks.get(p, math.inf))
            if best not in ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        ids.extend(encoder[t] for t in word)
    return ids


def test_gpt2_bpe_matches_reference_algorithm(gpt2, bpe_dir):
    encoder = json.loads((bpe_dir / "vocab.json").read_text(encoding="utf-8"))
    lines = (bpe_dir / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    ranks = {tuple(line.split(" ")): r for r, line in enumerate(lines) if line}
    samples = [t for t in TEXT[:3]] + ["  two  spaces\n\nand tabs\there 123abc ÿ ☃ 🙂 <|endoftext|>"]
    for s in samples:
        assert gpt2.tokenize(s) == reference_gpt2_encode(s, encoder, ranks)
        assert gpt2.detokenize(gpt2.tokenize(s)) == s
    assert gpt2.vocab_size == len(encoder)
    assert gpt2.eod == encoder["<|endoftext|>"] == 0
    assert gpt2.pad == encoder["<|pad|>"] == 1


def test_huggingface_dir_and_file_equal_gpt2(gpt2, bpe_dir):
    hf_dir = build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(bpe_dir))
    hf_file = HuggingFaceTokenizer(str(bpe_dir / "tokenizer.json"))
    for s in TEXT[:3]:
        assert hf_dir.tokenize(s) == gpt2.tokenize(s) == hf_file.tokenize(s)
    assert (hf_dir.vocab_size, hf_dir.eod, hf_dir.pad) == (gpt2.vocab_size, gpt2.eod, gpt2.pad)
    assert np.array_equal(hf_dir.word_start_mask(), gpt2.word_start_mask())


def test_huggingface_eod_without_config(tmp_path, bpe_dir):
    (tmp_path / "tokenizer.json").write_bytes((bpe_dir / "tokenizer.json").read_bytes())
    tok = HuggingFaceTokenizer(str(tmp_path))  # no tokenizer_config.json: falls back to <|endoftext|>
    assert tok.eod == 0 and tok.pad == 1


def _expected_text_start(piece):
    """The word-start rule restated for text pieces (space marker / punctuation, not hyphen+alnum)."""
    if piece.startswith("\u2581"):
        return True
    if piece[0] == "-" and (piece[1:] == "" or piece[1:].isalnum()):
        return False
    return not piece[0].isalnum()


def _ids_of(tok, token_string):
    i = tok.vocab.get(token_string)
    assert i is not None, f"{token_string!r} not in the test vocabulary"
    return i


def test_word_start_mask_hand_cases(gpt2):
    m = gpt2.word_start_mask()
    assert m.shape == (gpt2.vocab_size,) and m.dtype == bool
    b2u = _reference_bytes_to_unicode()
    expected = {
        "Ġbank": True, "Ġthe": True, ",": True, "'s": True, "Ċ": True, "Ġ": True, "(": True,
        "<|endoftext|>": True, "<|pad|>": True,
        "a": False, "bank": False, "5": False, "-": False, "--": True,
        b2u[0xA9]: False,  # UTF-8 continuation byte
        b2u[0xC3]: False,  # lead byte of a 2-byte char, incomplete
    }
    for token, starts in expected.items():
        assert bool(m[_ids_of(gpt2, token)]) is starts, token
    # multi-byte characters: CJK letters continue a word, fullwidth/typographic punctuation starts one
    assert not m[gpt2.tokenize("银行在河边")].any()
    for punct in ("，", "。"):  # merged into whole-character tokens by training
        ids = gpt2.tokenize(punct)
        assert len(ids) == 1 and m[ids[0]], punct
    # "—" never occurs without a space in TEXT: its bytes stay separate, and an incomplete
    # character is conservatively not a word start
    assert len(gpt2.tokenize("—")) > 1 and not m[gpt2.tokenize("—")].any()
    assert m[gpt2.tokenize(" —")[0]]
    # words are runs from one start token to the next: "bank," -> [Ġbank][,]
    ids = gpt2.tokenize(" bank, bank's well-known riverbank")
    words, cur = [], []
    for i in ids:
        if m[i] and cur:
            words.append(gpt2.detokenize(cur))
            cur = []
        cur.append(i)
    words.append(gpt2.detokenize(cur))
    assert words[:5] == [" bank", ",", " bank", "'s", " well-known"]  # NLTK keeps well-known whole
    assert words[-1] == " riverbank"


def test_starts_word_helpers():
    assert starts_word_bytes(b" x") and starts_word_bytes(b"\n") and starts_word_bytes(b".")
    assert not starts_word_bytes(b"x") and not starts_word_bytes(b"7") and not starts_word_bytes(b"\x80")
    assert not starts_word_bytes("é".encode()) and starts_word_bytes("«".encode())
    assert not starts_word_bytes("é".encode()[:1])
    assert starts_word_text("\u2581bank") and starts_word_text(",") and not starts_word_text("ing")
    assert starts_word_text("<0x20>") and not starts_word_text("<0xC3>")
    assert not starts_word_bytes(b"-") and not starts_word_bytes(b"-based") and starts_word_bytes(b"-.")
    assert starts_word_bytes(b" -") and starts_word_text("\u2581-")
    assert not starts_word_text("-") and not starts_word_text("-19") and starts_word_text("--")
    assert not starts_word_text("\u0301")  # combining mark continues a word


def test_encode_word_is_word_initial(gpt2):
    ids = gpt2.encode_word("bank")
    assert ids == gpt2.tokenize(" bank") and gpt2.word_start_mask()[ids[0]]
    assert gpt2.encode_word("  bank ") == ids
    assert gpt2.detokenize(gpt2.encode_word("银行")) == " 银行"
    with pytest.raises(ValueError):
        gpt2.encode_word("   ")


def test_describe_and_same_tokenizer(gpt2, bpe_dir, tmp_path):
    d = gpt2.describe()
    assert d["type"] == "GPT2BPETokenizer" and d["vocab_size"] == gpt2.vocab_size
    assert len(d["vocab_file_sha256"]) == 64
    json.dumps(d)
    # same files elsewhere -> same tokenizer; a changed merges file -> different
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((bpe_dir / name).read_bytes())
    other = GPT2BPETokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert same_tokenizer(d, other.describe())
    lines = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    (tmp_path / "merges.txt").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    changed = GPT2BPETokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert not same_tokenizer(d, changed.describe())


def test_missing_files_one_line_errors(bpe_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^--vocab-file: no such file: .*nope\.json$"):
        build_tokenizer("GPT2BPETokenizer", vocab_file=str(tmp_path / "nope.json"),
                        merge_file=str(bpe_dir / "merges.txt"))
    with pytest.raises(FileNotFoundError, match=r"^--merge-file: no such file"):
        build_tokenizer("GPT2BPETokenizer", vocab_file=str(bpe_dir / "vocab.json"), merge_file="/nope/m.txt")
    with pytest.raises(FileNotFoundError, match=r"^--tokenizer-model: no such file: .*tokenizer\.json$"):
        build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"^--tokenizer-model: no such file"):
        build_tokenizer("SentencePieceTokenizer", tokenizer_model=str(tmp_path / "x.model"))
    with pytest.raises(ValueError, match="--tokenizer-type 'Bogus'"):
        build_tokenizer("Bogus")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="--vocab-file"):
        build_tokenizer("GPT2BPETokenizer", vocab_file=str(bad), merge_file=str(bpe_dir / "merges.txt"))


def test_null_tokenizer_matches_megatron():
    tok = build_tokenizer("NullTokenizer", vocab_size=100)
    assert isinstance(tok, NullTokenizer)
    assert tok.vocab_size == 101 and tok.eod == 100
    assert tok.tokenize("3 1 4") == [3, 1, 4] and tok.detokenize([3, 1, 4]) == "3 1 4"
    assert tok.word_start_mask().all() and tok.encode_word("7") == [7]
    with pytest.raises(ValueError, match="--vocab-size"):
        build_tokenizer("NullTokenizer")


def test_sentencepiece_megatron_flavour(sp_model):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=sp_model)
    n = sp.get_piece_size()
    tok = build_tokenizer("SentencePieceTokenizer", tokenizer_model=sp_model)
    # Megatron appends <CLS> <SEP> <EOD> <MASK> and <PAD> (the model has no pad piece)
    assert [tok.id_to_token(i) for i in range(n, tok.vocab_size)] == ["<CLS>", "<SEP>", "<EOD>", "<MASK>", "<PAD>"]
    assert tok.eod == n + 2 and tok.pad == n + 4 and tok.bos == sp.bos_id()
    text = "the bank, river"
    assert tok.tokenize(text + "<EOD>") == sp.encode(text) + [tok.eod]
    assert tok.detokenize(tok.tokenize(text + "<EOD>")) == text + "<EOD>"
    m = tok.word_start_mask()
    for i in sp.encode(text):
        piece = sp.id_to_piece(i)
        assert m[i] == _expected_text_start(piece), piece
    assert m[[tok.eod, tok.pad, sp.unk_id()]].all()
    gpt = build_tokenizer("GPTSentencePieceTokenizer", tokenizer_model=sp_model)
    assert gpt.vocab_size == n and gpt.eod == sp.eos_id() and gpt.tokenize(text) == sp.encode(text)
    assert gpt.encode_word("bank") == sp.encode("bank")


def test_usable_as_gpt_dataset_tokenizer(gpt2, tmp_path):
    """megatron-core's GPTDataset builds and yields samples with our tokenizer."""
    import torch
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder
    from megatron.core.datasets.utils import Split

    prefix = str(tmp_path / "docs")
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for t in TEXT[:9]:
        builder.add_document(torch.tensor(gpt2.tokenize(t) + [gpt2.eod]), [len(gpt2.tokenize(t)) + 1])
    builder.finalize(prefix + ".idx")
    cfg = GPTDatasetConfig(
        random_seed=1, sequence_length=16, blend=None, blend_per_split=None, split="1,0,0",
        path_to_cache=str(tmp_path / "cache"), tokenizer=gpt2, reset_position_ids=False,
        reset_attention_mask=False, eod_mask_loss=False,
    )
    ds = GPTDataset(IndexedDataset(prefix), prefix, np.arange(9), 8, Split.train, cfg)
    sample = ds[0]
    assert sample["tokens"].shape == (16,) and int(sample["tokens"].max()) < gpt2.vocab_size
    assert int(sample["loss_mask"].sum()) == 16  # pad (1) differs from eod (0): nothing masked


@pytest.fixture(scope="session")
def metaspace_json(tmp_path_factory):
    from tokenizers import SentencePieceBPETokenizer

    t = SentencePieceBPETokenizer()  # Metaspace pre-tokenizer/decoder, NFKC normalizer
    t.train_from_iterator([s.strip() for s in TEXT], vocab_size=200, min_frequency=2,
                          special_tokens=["<unk>", "</s>"], show_progress=False)
    path = tmp_path_factory.mktemp("metaspace") / "tokenizer.json"
    t.save(str(path))
    return str(path)


def test_huggingface_metaspace(metaspace_json):
    tok = build_tokenizer("HuggingFaceTokenizer", tokenizer_model=metaspace_json)
    assert tok.eod == tok.vocab["</s>"] and tok.pad == tok.eod  # no pad token: pad = eod
    m = tok.word_start_mask()
    for i in range(tok.vocab_size):
        piece = tok.id_to_token(i)
        expected = _expected_text_start(piece) or i in (0, 1)
        assert m[i] == expected, piece
    assert tok.detokenize(tok.tokenize("the bank of the river")) == "the bank of the river"


@pytest.mark.parametrize("kind", ["gpt2", "hf-metaspace", "sp", "gpt-sp"])
def test_encode_word_equals_ids_inside_running_text(kind, gpt2, metaspace_json, sp_model):
    tok = {
        "gpt2": lambda: gpt2,
        "hf-metaspace": lambda: build_tokenizer("HuggingFaceTokenizer", tokenizer_model=metaspace_json),
        "sp": lambda: build_tokenizer("SentencePieceTokenizer", tokenizer_model=sp_model),
        "gpt-sp": lambda: build_tokenizer("GPTSentencePieceTokenizer", tokenizer_model=sp_model),
    }[kind]()
    m = tok.word_start_mask()
    for word in ["bank", "river", "riverbank", "Zürich", "银行", "naïve"]:
        ids = tok.encode_word(word)
        left = tok.tokenize("in the")
        running = tok.tokenize("in the " + word + " is")
        assert running[: len(left)] == left and running[len(left): len(left) + len(ids)] == ids, word
        assert m[ids[0]] and tok.detokenize(ids).strip() == word


def test_huggingface_wordpiece(tmp_path):
    from tokenizers import BertWordPieceTokenizer

    t = BertWordPieceTokenizer(lowercase=True)
    t.train_from_iterator([s.strip() for s in TEXT], vocab_size=200, min_frequency=2, show_progress=False)
    t.save(str(tmp_path / "tokenizer.json"))
    tok = build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(tmp_path))
    assert tok.eod == tok.vocab["[SEP]"] and tok.pad == tok.vocab["[PAD]"]
    m = tok.word_start_mask()
    for i in range(tok.vocab_size):
        piece = tok.id_to_token(i)
        assert m[i] == (not piece.startswith("##")), piece
    pieces = [tok.id_to_token(i) for i in tok.encode_word("Riverbanks")]  # lower-cased, ## pieces
    assert len(pieces) > 1 and not pieces[0].startswith("##") and all(p.startswith("##") for p in pieces[1:])
    assert "".join(p.lstrip("#") for p in pieces) == "riverbanks"


def test_same_tokenizer_compares_en_clone_base(gpt2, bpe_dir, tmp_path):
    # regression: only top-level hashes were compared, so an En-Clone table built with one base
    # tokenizer passed the check against the En-Clone of another base of the same size
    from megatron_prealign.tokenizer import EnCloneTokenizer

    for name in ("vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((bpe_dir / name).read_bytes())
    lines = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    (tmp_path / "merges.txt").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    changed = GPT2BPETokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    a, b = EnCloneTokenizer(gpt2).describe(), EnCloneTokenizer(changed).describe()
    assert a["vocab_size"] == b["vocab_size"] and not same_tokenizer(a, b)
    assert same_tokenizer(a, EnCloneTokenizer(gpt2).describe())


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
def test_huggingface_unknown_token_is_special(tmp_path, kind):
    # regression: a tokenizer.json whose model names an unknown token that is not among the
    # added special tokens (converted SentencePiece Unigram models) did not list it in
    # special_ids, so alignment tables and the codeswitcher accepted translations holding <unk>
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    pieces = ["<unk>", "</s>", "▁", "▁a", "▁bank", "a", "b", "n", "k"]
    if kind == "unigram":
        model = models.Unigram([(p, -1.0 - i) for i, p in enumerate(pieces)], unk_id=0, byte_fallback=False)
    else:
        model = models.BPE({p: i for i, p in enumerate(pieces)}, [], unk_token="<unk>")
    t = Tokenizer(model)
    t.pre_tokenizer = pre_tokenizers.Metaspace()
    t.decoder = decoders.Metaspace()
    t.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}), encoding="utf-8")
    tok = build_tokenizer("HuggingFaceTokenizer", tokenizer_model=str(tmp_path))
    assert tok.eod == 1 and 0 in tok.special_ids and tok.word_start_mask()[0]
    assert 0 in tok.encode_word("银行")
