"""The training log's embedding-alignment probe (one process) against a naive computation."""

from __future__ import annotations

import pytest
import torch

from megatron_prealign.model.alignment_metrics import alignment_stats
from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model
from megatron_prealign.training.alignment_log import EmbeddingAlignmentProbe

PAIRS = [([5], [70]), ([6, 7], [71]), ([8], [72, 73, 74]), ([9, 10], [75, 76])]


@pytest.fixture
def model(single_process_parallel_state):
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    torch.manual_seed(5)
    model_parallel_cuda_manual_seed(5)
    return build_gpt_model(GPTModelConfig(num_layers=1, hidden_size=16, num_attention_heads=2, vocab_size=128,
                                          max_sequence_length=8, untie_embeddings_and_output_weights=True))


def naive(weight, pairs, src_mean, tgt_mean):
    src = torch.stack([weight[s].double().mean(0) for s, _ in pairs])
    tgt = torch.stack([weight[t].double().mean(0) for _, t in pairs])
    return alignment_stats(src, tgt, src_mean, tgt_mean)


@pytest.mark.parametrize("clone_base", [None, 64])
def test_probe_matches_naive_per_level(model, clone_base):
    stats = EmbeddingAlignmentProbe(PAIRS, clone_base_vocab=clone_base).stats(model)
    for level, weight in (("emb", model.embedding.word_embeddings.weight), ("out", model.output_layer.weight)):
        w = weight.detach()
        if clone_base is None:  # language means over the table's distinct ids of each side
            src_mean = w[sorted({i for s, _ in PAIRS for i in s})].double().mean(0)
            tgt_mean = w[sorted({i for _, t in PAIRS for i in t})].double().mean(0)
        else:  # En-Clone: all English rows vs all clone rows
            src_mean, tgt_mean = w[:64].double().mean(0), w[64:128].double().mean(0)
        ref = naive(w, PAIRS, src_mean, tgt_mean)
        assert stats[f"align {level} raw cos"] == pytest.approx(ref["raw_cosine"], abs=1e-6)
        assert stats[f"align {level} centred cos"] == pytest.approx(ref["centred_cosine"], abs=1e-6)
        assert stats[f"align {level} norm ratio"] == pytest.approx(ref["norm_ratio"], abs=1e-6)


def test_probe_without_pairs_raises():
    with pytest.raises(ValueError, match="no word pair"):
        EmbeddingAlignmentProbe([([], [1])])
