"""Aligned-word similarity: perfect En-Clone alignment gives 1.0 at every level."""

import pytest
import torch

from megatron_prealign.eval import similarity as sim

V = 12


def _table():
    from megatron_prealign.alignment import AlignmentEntry, AlignmentTable, Translation

    words = [[1, 2], [3], [4, 5, 6], [7], [8, 9], [10], [11, 1]]
    entries = [AlignmentEntry(word=f"w{i}", count=1, ids=ids, translations={"en_clone": [Translation(text=f"w{i}", ids=[t + V for t in ids])]})
               for i, ids in enumerate(words)]
    return AlignmentTable(languages=["en_clone"], entries=entries, vocab_size=2 * V, tokenizer={})


@pytest.fixture(scope="module")
def model(single_process_parallel_state):
    from megatron_prealign.platform import seed_all
    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model

    seed_all(0)
    return build_gpt_model(GPTModelConfig(num_layers=2, hidden_size=16, num_attention_heads=2, vocab_size=2 * V,
                                          max_sequence_length=32, hidden_dropout=0.0, attention_dropout=0.0)).eval()


def test_cloned_embeddings_are_perfectly_aligned(model):
    cfg = sim.SimilarityConfig(num_batches=3, words_per_batch=3, micro_batch_size=2, seq_length=16)
    with torch.no_grad():
        w = model.embedding.word_embeddings.weight
        w[V:] = w[:V]
    out = sim.mean_aligned_similarity(model, _table(), cfg)
    levels = [k for k in out if "/" not in k]
    assert levels == ["emb", "layer1", "layer2", "out"]
    for k in levels:
        assert out[k] == pytest.approx(1.0, abs=1e-5)
        assert out[f"{k}/unaligned"] < 0.999
    with torch.no_grad():
        w[V:] = torch.randn(V, 16, generator=torch.Generator().manual_seed(1))
    out2 = sim.mean_aligned_similarity(model, _table(), cfg)
    assert out2["emb"] < 0.9


def test_constant_offset_is_centred_aligned_but_not_raw(model):
    """Clone rows = English rows + one offset: centred cosine 1 (input and tied output), raw < 1."""
    from megatron_prealign.model.alignment_metrics import alignment_stats

    cfg = sim.SimilarityConfig(num_batches=3, words_per_batch=3, micro_batch_size=2, seq_length=16)
    offset = torch.randn(16, generator=torch.Generator().manual_seed(2)) * 0.5
    with torch.no_grad():
        w = model.embedding.word_embeddings.weight
        w[:V] = torch.randn(V, 16, generator=torch.Generator().manual_seed(3)) * 0.1
        w[V:] = w[:V] + offset
    english = list(range(1, V))
    out = sim.mean_aligned_similarity(model, _table(), cfg, language_ids=(english, [i + V for i in english]))
    for level in ("emb", "out"):
        assert out[f"{level}/centred_cosine"] == pytest.approx(1.0, abs=1e-6)
        assert out[f"{level}/raw_cosine"] < 0.95
    # hand check of the input-embedding level on one word (ids [3] <-> [15]): raw cosine of the rows
    raw = torch.nn.functional.cosine_similarity(w[3], w[3 + V], dim=0).item()
    one = alignment_stats(w[3:4].detach(), w[3 + V:4 + V].detach(), w[1:V].mean(0).detach(), w[V + 1:].mean(0).detach())
    assert one["raw_cosine"] == pytest.approx(raw) and one["centred_cosine"] == pytest.approx(1.0)
    assert {"layer1/centred_cosine", "layer2/norm_ratio"} <= set(out)
    # without the language rows, the measured words' means are removed: still 1 at the embedding
    out2 = sim.mean_aligned_similarity(model, _table(), cfg)
    assert out2["emb/centred_cosine"] == pytest.approx(1.0, abs=1e-6)
    # a real misalignment (shuffled clone rows) is not centred-aligned
    with torch.no_grad():
        w[V:] = w[:V][torch.randperm(V, generator=torch.Generator().manual_seed(4))] + offset
    out3 = sim.mean_aligned_similarity(model, _table(), cfg, language_ids=(english, [i + V for i in english]))
    assert out3["emb/centred_cosine"] < 0.9


def test_list_iterations_and_plot(tmp_path):
    for it in (500, 250, 1000):
        (tmp_path / f"iter_{it:07d}").mkdir()
    (tmp_path / "iter_x").mkdir()
    assert sim.list_iterations(str(tmp_path)) == [250, 500, 1000]
    with pytest.raises(FileNotFoundError, match="no iter_"):
        sim.list_iterations(str(tmp_path / "iter_x"))
    png = tmp_path / "plots" / "s.png"
    sim.plot_curves({"emb": {250: 0.5, 500: 0.7}, "out": {250: 0.4, 500: 0.6}}, str(png), "cosine")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in png.parent.iterdir()) == ["s.png"]
