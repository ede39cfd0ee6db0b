"""megatron_prealign.model.gpt / norm: spec choice, SP-aware norms, tied embeddings, config mapping.

Runs in the pytest process at TP=PP=1 (conftest's ``single_process_parallel_state``); the TP=2,
SP and PP=2 builds are checked against TP=1 in tests/distributed/test_foundation.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_prealign.model import gpt
from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model, layer_spec_for, make_transformer_config
from megatron_prealign.model.norm import SequenceParallelTorchNorm

TINY = GPTModelConfig(
    num_layers=2,
    hidden_size=64,
    num_attention_heads=4,
    vocab_size=1000,
    max_sequence_length=32,
    hidden_dropout=0.0,
    attention_dropout=0.0,
)


@pytest.fixture
def seeded(single_process_parallel_state):
    """TP=PP=1 parallel state, Megatron's RNG seeded; the global RNG state restored afterwards."""
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker, model_parallel_cuda_manual_seed

    cpu_state = torch.get_rng_state()
    tracker_states = get_cuda_rng_tracker().get_states()

    def seed(value: int = 1234) -> None:
        torch.manual_seed(value)
        model_parallel_cuda_manual_seed(value)

    seed()
    yield seed
    get_cuda_rng_tracker().set_states(tracker_states)
    torch.set_rng_state(cpu_state)


def _sp_config(sequence_parallel: bool, normalization: str = "LayerNorm", **extra) -> TransformerConfig:
    return TransformerConfig(
        num_layers=1,
        hidden_size=8,
        num_attention_heads=2,
        tensor_model_parallel_size=2,
        sequence_parallel=sequence_parallel,
        normalization=normalization,
        **extra,
    )


def _batch(cfg: GPTModelConfig, batch: int = 2):
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (batch, cfg.max_sequence_length + 1), generator=gen)
    seq = cfg.max_sequence_length
    return dict(
        input_ids=tokens[:, :-1],
        labels=tokens[:, 1:],
        position_ids=torch.arange(seq).expand(batch, seq),
        attention_mask=torch.triu(torch.ones(1, 1, seq, seq, dtype=torch.bool), diagonal=1),
    )


# --------------------------------------------------------------------------- spec choice


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU machines have no TransformerEngine")
def test_auto_chooses_the_local_spec_without_transformer_engine(single_process_parallel_state, caplog):
    assert not gpt.transformer_engine_available()
    cfg = dataclasses.replace(TINY, transformer_impl="auto")
    with caplog.at_level(logging.INFO, logger=gpt.__name__):
        spec = layer_spec_for(cfg, make_transformer_config(cfg))
    assert "local spec" in caplog.text
    if gpt.apex_available():  # pragma: no cover - apex is not installable from PyPI
        pytest.skip("apex present: Megatron's own local spec is used unchanged")
    assert isinstance(spec, TransformerBlockSubmodules)
    assert len(spec.layer_specs) == cfg.num_layers
    assert spec.layer_norm is SequenceParallelTorchNorm
    for layer in spec.layer_specs:
        assert layer.submodules.input_layernorm is SequenceParallelTorchNorm
        assert layer.submodules.pre_mlp_layernorm is SequenceParallelTorchNorm


@pytest.mark.parametrize("impl", ["te", "Local", ""])
def test_unknown_transformer_impl_is_rejected(single_process_parallel_state, impl):
    cfg = dataclasses.replace(TINY, transformer_impl=impl)
    with pytest.raises(ValueError, match="transformer_impl must be"):
        layer_spec_for(cfg, make_transformer_config(cfg))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU machines have no TransformerEngine")
def test_transformer_engine_default_falls_back_to_local_with_one_line(single_process_parallel_state, caplog):
    """Megatron-LM's default ``transformer_engine`` is ours; without TE/CUDA: local, said once."""
    assert GPTModelConfig.__dataclass_fields__["transformer_impl"].default == "transformer_engine"
    cfg = dataclasses.replace(TINY, transformer_impl="transformer_engine")
    with caplog.at_level(logging.INFO, logger=gpt.__name__):
        spec = layer_spec_for(cfg, make_transformer_config(cfg))
    lines = [r.getMessage() for r in caplog.records if r.name == gpt.__name__]
    assert len(lines) == 1 and "local spec" in lines[0] and "transformer_engine: no CUDA device" in lines[0]
    if not gpt.apex_available():
        assert isinstance(spec, TransformerBlockSubmodules)
    assert make_transformer_config(cfg).masked_softmax_fusion is False  # no fused kernels on the fallback


@pytest.mark.parametrize("normalization,kind", [("LayerNorm", torch.nn.LayerNorm), ("RMSNorm", torch.nn.RMSNorm)])
def test_built_model_uses_torch_norms_on_cpu(seeded, normalization, kind):
    if gpt.transformer_engine_available() or gpt.apex_available():  # pragma: no cover
        pytest.skip("fused norms available")
    model = build_gpt_model(dataclasses.replace(TINY, normalization=normalization))
    assert isinstance(model.decoder.layers[0].input_layernorm, kind)
    assert isinstance(model.decoder.final_layernorm, kind)
    assert all(p.device.type == model_device().type for p in model.parameters())


def model_device() -> torch.device:
    from megatron_prealign.platform import device

    return device()


# --------------------------------------------------------------------------- SP-aware norm


@pytest.mark.parametrize("normalization", ["LayerNorm", "RMSNorm"])
@pytest.mark.parametrize("sequence_parallel", [True, False])
def test_norm_params_carry_the_sequence_parallel_flag(normalization, sequence_parallel):
    norm = SequenceParallelTorchNorm(_sp_config(sequence_parallel, normalization), hidden_size=8, eps=1e-6)
    params = list(norm.parameters())
    assert params, "a norm without parameters cannot be checked"
    # finalize_model_grads all-reduces over TP exactly the params flagged True.
    assert all(getattr(p, "sequence_parallel") is sequence_parallel for p in params)
    assert norm.eps == 1e-6 and tuple(params[0].shape) == (8,)


def test_norm_rejects_what_torch_norms_cannot_do():
    with pytest.raises(ValueError, match="zero-centered gamma"):
        SequenceParallelTorchNorm(_sp_config(False, layernorm_zero_centered_gamma=True), hidden_size=8)


def test_sequence_parallel_is_off_at_tp1(seeded):
    """SP needs TP > 1: at TP=1 the flag is dropped and no parameter is marked."""
    cfg = dataclasses.replace(TINY, sequence_parallel=True)
    assert make_transformer_config(cfg).sequence_parallel is False
    model = build_gpt_model(cfg)
    assert not any(getattr(p, "sequence_parallel", False) for p in model.parameters())


# --------------------------------------------------------------------------- embeddings


def test_tied_and_untied_embeddings(seeded):
    tied = build_gpt_model(TINY)
    seeded()
    untied = build_gpt_model(dataclasses.replace(TINY, untie_embeddings_and_output_weights=True))

    word = tied.embedding.word_embeddings.weight
    assert tied.share_embeddings_and_output_weights
    assert tied.output_layer.weight is None  # the LM head reads the embedding
    assert tied.shared_embedding_or_output_weight() is word

    assert not untied.share_embeddings_and_output_weights
    head = untied.output_layer.weight
    assert head is not None and head is not untied.embedding.word_embeddings.weight
    assert tuple(head.shape) == (TINY.vocab_size, TINY.hidden_size)
    n_tied = sum(p.numel() for p in tied.parameters())
    n_untied = sum(p.numel() for p in untied.parameters())
    assert n_untied - n_tied == TINY.vocab_size * TINY.hidden_size

    # Tied: the LM head gradient lands on the embedding; untied: on the separate head.
    batch = _batch(TINY)
    for model, lm_head in ((tied, word), (untied, head)):
        losses = model(**batch)
        assert tuple(losses.shape) == (2, TINY.max_sequence_length)
        assert torch.isfinite(losses).all()
        losses.mean().backward()
        assert lm_head.grad is not None and lm_head.grad.abs().sum() > 0


def test_same_seed_builds_the_same_weights(seeded):
    first = build_gpt_model(TINY).state_dict()
    seeded()
    second = build_gpt_model(TINY).state_dict()
    assert first.keys() == second.keys()
    for key, value in first.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, second[key]), key


# --------------------------------------------------------------------------- config


def test_config_round_trips_through_json():
    cfg = dataclasses.replace(
        TINY, normalization="RMSNorm", position_embedding_type="rope", untie_embeddings_and_output_weights=True
    )
    restored = GPTModelConfig(**json.loads(json.dumps(cfg.to_dict())))
    assert restored == cfg
    assert set(cfg.to_dict()) == {f.name for f in dataclasses.fields(GPTModelConfig)}


def test_transformer_config_mapping(single_process_parallel_state):
    cfg = dataclasses.replace(TINY, hidden_dropout=0.2, attention_dropout=0.3, normalization="RMSNorm")
    config = make_transformer_config(cfg)
    assert (config.num_layers, config.hidden_size, config.num_attention_heads) == (2, 64, 4)
    assert config.ffn_hidden_size == 4 * cfg.hidden_size  # GPT-2 default
    assert (config.hidden_dropout, config.attention_dropout) == (0.2, 0.3)
    assert config.normalization == "RMSNorm"
    assert config.params_dtype == torch.float32 and not config.bf16
    assert (config.tensor_model_parallel_size, config.pipeline_model_parallel_size) == (1, 1)
    assert config.use_cpu_initialization
    # Fusions that need CUDA kernels stay off.
    assert not (config.gradient_accumulation_fusion or config.apply_rope_fusion or config.masked_softmax_fusion)

    bf16 = make_transformer_config(dataclasses.replace(cfg, bf16=True, ffn_hidden_size=96))
    assert bf16.params_dtype == torch.bfloat16 and bf16.bf16 and bf16.ffn_hidden_size == 96
