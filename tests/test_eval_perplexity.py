"""Perplexity windows, word split and values on uniform/bigram models (hand-computed)."""

import math

import numpy as np
import pytest
import torch

from megatron_prealign.eval import perplexity as ppl
import reference_models as rm

V = 8


def test_document_windows_exact():
    assert ppl.document_windows(10, 4) == [(0, 5), (4, 9), (8, 10)]
    assert ppl.document_windows(5, 4) == [(0, 5)]
    assert ppl.document_windows(6, 4) == [(0, 5), (4, 6)]
    assert ppl.document_windows(1, 4) == []
    # every token but the first is predicted exactly once
    covered = [t for s, e in ppl.document_windows(23, 5) for t in range(s + 1, e)]
    assert covered == list(range(1, 23))


def test_segment_words_splits_punctuation():
    ws = np.array([0, 1, 0, 1, 0, 1, 0, 0], dtype=bool)   # 1,3,5 open words
    other = np.array([0, 0, 0, 0, 0, 0, 1, 0], dtype=bool)  # 6 is punctuation
    toks = np.array([1, 2, 6, 3, 5, 4, 6, 6])
    assert ppl.segment_words(toks, ws, other) == [(0, 2, True), (2, 3, False), (3, 4, True), (4, 6, True), (6, 7, False), (7, 8, False)]
    # token 7 is a lone space marker: it opens the word "7 2" and alone is no word
    ws[7] = True
    space = np.zeros(8, dtype=bool)
    space[7] = True
    toks = np.array([1, 7, 2, 7, 6, 7])
    assert ppl.segment_words(toks, ws, other, space) == [(0, 1, True), (1, 3, True), (3, 4, False), (4, 5, False), (5, 6, False)]


def test_token_classes_from_decoded_text():
    class Tok:
        vocab_size = 6
        eod = 4
        special_ids = [4]

        def detokenize(self, ids):
            return ["a", " ", ",", " b", "", "\ufffd"][ids[0]]

    other, space = ppl.token_classes(Tok())
    assert other.tolist() == [False, False, True, False, True, False]
    assert space.tolist() == [False, True, False, False, False, False]


def test_seen_sequences_per_language():
    from types import SimpleNamespace as NS

    table = NS(entries=[NS(ids=[1, 2], translations={"de": [NS(text="a", ids=[3]), NS(text="b", ids=[4, 5])]}),
                        NS(ids=[6], translations={})])
    assert ppl.seen_sequences(table, "en") == {(1, 2), (6,)}
    assert ppl.seen_sequences(table, "de") == {(3,), (4, 5)}
    assert ppl.seen_sequences(table, "en_clone", clone_offset=10) == {(11, 12), (16,)}
    table.entries[1].translations["en_clone"] = [NS(text="c", ids=[26])]
    assert ppl.seen_sequences(table, "en-clone", clone_offset=10) == {(11, 12), (26,)}


@pytest.fixture(scope="module")
def model(single_process_parallel_state):
    from megatron_prealign.platform import seed_all
    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model

    seed_all()
    m = build_gpt_model(GPTModelConfig(num_layers=1, hidden_size=16, num_attention_heads=2, vocab_size=V, max_sequence_length=8,
                                       hidden_dropout=0.0, attention_dropout=0.0, untie_embeddings_and_output_weights=True)).eval()
    yield m


def test_uniform_model_perplexity_is_vocab_size(model, tmp_path):
    from megatron_prealign.synthetic.clka import write_token_documents

    rm.set_uniform_weights(model)
    docs = [[1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3], [4, 5], [6]]
    write_token_documents(str(tmp_path / "d"), docs, vocab_size=V)
    res = ppl.evaluate_perplexity(model, ppl.iter_documents(str(tmp_path / "d")), ppl.PerplexityConfig(seq_length=4, batch_size=2), "en")
    assert res.overall["ppl"] == pytest.approx(V, rel=1e-5)
    assert res.overall["tokens"] == 10 + 1 + 0 and res.documents == 3 and res.windows == 3 + 1


def test_bigram_perplexity_and_seen_split(model):
    table = torch.randn(V, V, generator=torch.Generator().manual_seed(5)) * 2
    rm.set_bigram_weights(model, table)
    logp = torch.log_softmax(table.double(), -1).numpy()
    doc = np.array([1, 2, 3, 1, 2, 6, 4, 5, 3, 1, 2, 6])
    ws = np.array([0, 1, 0, 1, 1, 0, 0, 0], dtype=bool)   # 1, 3, 4 open words
    other = np.zeros(V, dtype=bool)
    other[6] = True
    seen = {(1, 2), (4, 5)}
    res = ppl.evaluate_perplexity(model, [doc], ppl.PerplexityConfig(seq_length=5), "en", word_start=ws, other_mask=other, seen=seen)
    nll = [-logp[doc[i - 1], doc[i]] for i in range(1, len(doc))]
    assert res.overall["ppl"] == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-4)
    # pieces: [1,2](first token unpredicted: dropped) [3] [1,2] [6] [4,5] [3] [1,2] [6]
    t = lambda i: -logp[doc[i - 1], doc[i]]  # noqa: E731
    seen_nll = t(3) + t(4) + t(6) + t(7) + t(9) + t(10)
    unseen_nll = t(2) + t(8)
    assert res.seen["tokens"] == 6 and res.seen["words"] == 3
    assert res.seen["ppl"] == pytest.approx(math.exp(seen_nll / 6), rel=1e-4)
    assert res.unseen["tokens"] == 2 and res.unseen["ppl"] == pytest.approx(math.exp(unseen_nll / 2), rel=1e-4)
    assert res.other["tokens"] == 2


def test_missing_dataset_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Megatron dataset"):
        list(ppl.iter_documents(str(tmp_path / "nothing")))
