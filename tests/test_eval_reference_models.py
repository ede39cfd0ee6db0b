"""Reference models: the bigram construction needs untied embeddings and hidden > vocab."""

import pytest
import torch

import reference_models as rm


def _build(**kw):
    from megatron_prealign.platform import seed_all
    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model

    seed_all(0)
    base = dict(num_layers=1, hidden_size=16, num_attention_heads=2, vocab_size=8, max_sequence_length=8,
                hidden_dropout=0.0, attention_dropout=0.0)
    base.update(kw)
    return build_gpt_model(GPTModelConfig(**base)).eval()


def test_bigram_rejects_tied_and_small_hidden(single_process_parallel_state):
    with pytest.raises(ValueError, match="untied embeddings"):
        rm.set_bigram_weights(_build(), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="hidden size 8 must exceed the vocabulary 8"):
        rm.set_bigram_weights(_build(hidden_size=8, untie_embeddings_and_output_weights=True), torch.zeros(8, 8))


def test_bigram_ignores_context_beyond_previous_token(single_process_parallel_state):
    from megatron_prealign.eval.scoring import token_logprobs

    m = _build(untie_embeddings_and_output_weights=True)
    rm.set_bigram_weights(m, torch.randn(8, 8, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        a = token_logprobs(m, torch.tensor([[1, 2, 3, 4]]))[0, -1]
        b = token_logprobs(m, torch.tensor([[5, 6, 3, 4]]))[0, -1]
    assert a == pytest.approx(float(b), abs=1e-5)
