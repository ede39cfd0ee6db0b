"""The pre-alignment attachment to GPTModel, in one process (TP=PP=DP=1).

Distributed equivalence (TP/SP/PP/DP) is in tests/distributed/test_prealign_parallel.py.
"""

from __future__ import annotations

import pytest
import torch

from megatron_prealign.model import prealign as pa
from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model
from megatron_prealign.model.supcon import supcon_loss
from megatron_prealign.model.word_batches import pack_words

WORDS = [[5, 6, 7], [8], [9, 10], [11, 12, 13, 14], [15, 16], [17, 18, 19], [20]]
LABELS = [0, 0, 1, 1, 2, 2, 3]


@pytest.fixture
def make_model(single_process_parallel_state):
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    def make(**overrides):
        fields = dict(num_layers=2, hidden_size=32, num_attention_heads=4, vocab_size=128,
                      max_sequence_length=16, hidden_dropout=0.0, attention_dropout=0.0)
        fields.update(overrides)
        torch.manual_seed(3)
        model_parallel_cuda_manual_seed(3)
        return build_gpt_model(GPTModelConfig(**fields))

    return make


def packed():
    return pack_words(WORDS, LABELS, micro_batch_size=2, seq_length=10, max_words=8)


def naive_word_features(model, ids):
    """Run one word alone with a plain causal mask; hooks written here; mean over subwords."""
    outs = {}
    hooks = [layer.register_forward_hook(lambda m, a, o, n=layer.layer_number: outs.__setitem__(n, o[0]))
             for layer in model.decoder.layers]
    tokens = torch.tensor([ids])
    n = len(ids)
    try:
        model(input_ids=tokens, position_ids=torch.arange(n)[None],
              attention_mask=torch.triu(torch.ones(1, 1, n, n, dtype=torch.bool), 1))
    finally:
        for h in hooks:
            h.remove()
    emb = model.embedding.word_embeddings.weight[ids].mean(0)
    out_w = model.shared_embedding_or_output_weight() if model.share_embeddings_and_output_weights \
        else model.output_layer.weight
    layers = [outs[k][:, 0].mean(0) for k in sorted(outs)]
    return torch.stack([emb, *layers, out_w[ids].mean(0)])


@pytest.mark.parametrize("position_embedding_type", ["learned_absolute", "rope"])
def test_packed_words_equal_words_encoded_alone(make_model, position_embedding_type):
    model = make_model(position_embedding_type=position_embedding_type, untie_embeddings_and_output_weights=True)
    batch = packed()
    assert batch["num_skipped_words"] == 0
    with torch.no_grad():
        features, _ = pa.pooled_level_features(model, batch, [0, 1, 2, 3])
        for slot, ids in enumerate(WORDS):
            torch.testing.assert_close(features[:, slot], naive_word_features(model, ids), rtol=1e-5, atol=1e-5)
    assert features[:, len(WORDS):].abs().max() == 0  # empty slots


def test_the_block_mask_is_what_isolates_words(make_model, monkeypatch):
    """Negative control: with an ordinary causal mask, words after the first in a row change."""
    model = make_model()
    batch = packed()
    s = batch["tokens"].shape[1]
    monkeypatch.setattr(pa, "word_attention_mask",
                        lambda seg: torch.triu(torch.ones(1, 1, s, s, dtype=torch.bool), 1))
    with torch.no_grad():
        features, _ = pa.pooled_level_features(model, batch, [2])
        second = batch["segment_ids"][0].unique()[1].item()  # the second word of row 0
        alone = naive_word_features(model, WORDS[second])[2]
    assert (features[0, second] - alone).abs().max() > 1e-3


def test_word_attention_mask_by_hand():
    mask = pa.word_attention_mask(torch.tensor([[0, 0, 1, -1]]))
    allowed = ~mask[0, 0]
    assert allowed.tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [False, False, True, False],
        [False, False, False, True],
    ]


def test_tied_embeddings_make_levels_zero_and_last_equal(make_model):
    model = make_model()
    with torch.no_grad():
        features, _ = pa.pooled_level_features(model, packed(), [0, 3])
    torch.testing.assert_close(features[0], features[1])


def test_level_losses_single_replica_equal_supcon(make_model):
    model = make_model()
    batch = packed()
    features, _ = pa.pooled_level_features(model, batch, [0, 1, 2, 3])
    ours = pa.alignment_level_losses(features, batch["word_labels"], 0.1)
    ref = supcon_loss(features, batch["word_labels"], 0.1)
    torch.testing.assert_close(ours, ref)


def _lm_batch(seed):
    gen = torch.Generator().manual_seed(seed)
    stream = torch.randint(0, 128, (2, 11), generator=gen)
    loss_mask = torch.ones(2, 10)
    loss_mask[1, 6:] = 0
    return {"kind": "lm", "tokens": stream[:, :-1], "labels": stream[:, 1:], "loss_mask": loss_mask,
            "position_ids": torch.arange(10).expand(2, 10),
            "attention_mask": torch.triu(torch.ones(1, 1, 10, 10, dtype=torch.bool), 1)}


def test_forward_step_implements_eq4_under_megatron_schedule(make_model):
    """Microbatches A L A (weights 0.7 / 0.3): grads of 0.7*mean_A(sum levels) + 0.3*CE(L)."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    model = make_model()
    second = pack_words(WORDS[::-1], [x + 10 for x in LABELS[::-1]], 2, 10, max_words=8)
    micro = [packed(), _lm_batch(0), second]
    loss_cfg = pa.PreAlignLossConfig(temperature=0.1, align_weight=0.7, lm_weight=0.3)
    step = pa.PreAlignForwardStep(loss_cfg, num_microbatches=3, num_align_microbatches=2)
    stream = pa.interleave_microbatches(iter([micro[0], micro[2]]), iter([micro[1]]), 2, 1)
    losses = get_forward_backward_func()(
        forward_step_func=step, data_iterator=stream, model=[model], num_microbatches=3,
        seq_length=10, micro_batch_size=2, forward_only=False,
    )
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    logged = step.tracker.reduce()
    assert [sorted(d) for d in losses] == [["lm loss"]] * 3

    model.zero_grad()
    per_level = []
    for b in (micro[0], micro[2]):
        f, _ = pa.pooled_level_features(model, b, [0, 1, 2, 3])
        per_level.append(supcon_loss(f, b["word_labels"], 0.1))
    lm = micro[1]
    ce = model(input_ids=lm["tokens"], position_ids=lm["position_ids"], attention_mask=lm["attention_mask"],
               labels=lm["labels"])
    ce = (ce * lm["loss_mask"]).sum() / lm["loss_mask"].sum()
    (0.7 * (per_level[0].sum() + per_level[1].sum()) / 2 + 0.3 * ce).backward()
    ref = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert ours.keys() == ref.keys() and len(ref) > 10
    for name in ref:
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-5, atol=1e-6, msg=name)
    mean_levels = (per_level[0] + per_level[1]).detach() / 2
    assert logged == pytest.approx({"emb": mean_levels[0].item(), "layer1": mean_levels[1].item(),
                                    "layer2": mean_levels[2].item(), "out": mean_levels[3].item(),
                                    "total": mean_levels.sum().item()}, rel=1e-6)


def test_interleave_spreads_kinds_evenly():
    a = iter([{"kind": "prealign", "i": i} for i in range(100)])
    lm = iter([{"i": i} for i in range(100)])
    stream = pa.interleave_microbatches(a, lm, 2, 4)
    kinds = [next(stream)["kind"] for _ in range(12)]
    assert kinds == ["lm", "lm", "prealign", "lm", "lm", "prealign"] * 2
    only = pa.interleave_microbatches(iter([{"kind": "prealign"}] * 3), None, 3, 0)
    assert [next(only)["kind"] for _ in range(3)] == ["prealign"] * 3
    with pytest.raises(ValueError, match="needs lm_batches"):
        next(pa.interleave_microbatches(a, None, 1, 1))


def test_aligned_cosine_similarity_matches_naive(make_model):
    model = make_model()
    batch = packed()
    sims = pa.aligned_cosine_similarity(model, batch, [1, 3])
    with torch.no_grad():
        feats = torch.stack([naive_word_features(model, ids) for ids in WORDS], dim=1)  # [levels, W, h]
    for level, name in ((1, "layer1"), (3, "out")):
        pos, neg = [], []
        for i in range(len(WORDS)):
            for j in range(len(WORDS)):
                if i == j:
                    continue
                c = torch.nn.functional.cosine_similarity(feats[level, i], feats[level, j], dim=0).item()
                (pos if LABELS[i] == LABELS[j] else neg).append(c)
        assert sims[name] == pytest.approx(sum(pos) / len(pos), abs=1e-5)
        assert sims[f"{name}/unaligned"] == pytest.approx(sum(neg) / len(neg), abs=1e-5)
    assert set(sims) == {"layer1", "layer1/unaligned", "out", "out/unaligned"}


def test_levels_resolve_and_name():
    assert pa.resolve_levels(None, 2) == (0, 1, 2, 3)
    assert pa.resolve_levels([3, 0, 0], 2) == (0, 3)
    assert [pa.level_name(x, 2) for x in range(4)] == ["emb", "layer1", "layer2", "out"]
    with pytest.raises(ValueError, match="outside 0..3"):
        pa.resolve_levels([4], 2)


def test_unsupported_setups_raise(make_model):
    model = make_model()
    model.config.recompute_granularity = "full"
    with pytest.raises(NotImplementedError, match="recompute"):
        pa.pooled_level_features(model, packed(), [1])
    fused = make_model()  # the fused causal softmax kernel (fp16/bf16 on GPU) ignores explicit masks
    softmax = fused.decoder.layers[0].self_attention.core_attention.scale_mask_softmax
    softmax.scaled_masked_softmax_fusion, softmax.input_in_float16 = True, True
    with pytest.raises(NotImplementedError, match="fused causal softmax"):
        pa.pooled_level_features(fused, packed(), [1])
    with pytest.raises(ValueError, match="num_align_microbatches"):
        pa.PreAlignForwardStep(pa.PreAlignLossConfig(), num_microbatches=2, num_align_microbatches=3)
    with pytest.raises(ValueError, match="temperature"):
        pa.PreAlignLossConfig(temperature=0)


def test_batch_without_positive_pair_raises(make_model):
    model = make_model()
    batch = pack_words([[5], [6], [7]], [0, 1, 2], 1, 8)
    features, _ = pa.pooled_level_features(model, batch, [1])
    with pytest.raises(ValueError, match="no positive pair"):
        pa.alignment_level_losses(features, batch["word_labels"], 0.1)


def test_kinds_switch_under_ddp_overlapped_grad_reduce(make_model):
    """Megatron DDP (overlap_grad_reduce) records which params get grads in the first step and
    waits for the same set later: a pre-alignment step that skips the LM head and leaves the
    untied output layer out of the levels must still touch every parameter."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
    from megatron.core.pipeline_parallel import get_forward_backward_func

    model = make_model(untie_embeddings_and_output_weights=True)
    ddp = DistributedDataParallel(
        config=model.config,
        ddp_config=DistributedDataParallelConfig(overlap_grad_reduce=True, use_distributed_optimizer=False),
        module=model,
    )
    model.config.no_sync_func = ddp.no_sync
    model.config.finalize_model_grads_func = finalize_model_grads
    loss_cfg = pa.PreAlignLossConfig(levels=[1])
    for batch, num_align in ((_lm_batch(1), 0), (packed(), 1), (_lm_batch(2), 0)):
        ddp.zero_grad_buffer()
        get_forward_backward_func()(
            forward_step_func=pa.PreAlignForwardStep(loss_cfg, 1, num_align), data_iterator=iter([batch]),
            model=[ddp], num_microbatches=1, seq_length=10, micro_batch_size=2, forward_only=False,
        )
    assert model.output_layer.weight.main_grad.abs().sum() > 0  # the last (LM) step reached it


def test_embedding_level_similarity_does_not_run_the_model(make_model):
    model = make_model()
    calls = []
    handle = model.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        sims = pa.aligned_cosine_similarity(model, packed(), [0])
    finally:
        handle.remove()
    assert calls == [] and set(sims) == {"emb", "emb/unaligned"}
    w = model.embedding.word_embeddings.weight.detach()
    feats = [w[ids].mean(0) for ids in WORDS]
    pos = [torch.nn.functional.cosine_similarity(feats[i], feats[j], dim=0).item()
           for i in range(len(WORDS)) for j in range(len(WORDS)) if i != j and LABELS[i] == LABELS[j]]
    assert sims["emb"] == pytest.approx(sum(pos) / len(pos), abs=1e-6)


@pytest.mark.parametrize("levels", [None, [0, 3]])
def test_level_reduction_mean_is_sum_over_number_of_levels(make_model, levels):
    """--prealign-level-reduction mean: the gradient is that of mean_levels SupCon (the authors'
    code), i.e. the summed objective (Eq. 3) divided by the number of aligned levels."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    model = make_model(untie_embeddings_and_output_weights=True)
    grads = {}
    for reduction in ("sum", "mean"):
        model.zero_grad()
        loss_cfg = pa.PreAlignLossConfig(temperature=0.1, levels=levels, align_weight=0.1,
                                         level_reduction=reduction)
        step = pa.PreAlignForwardStep(loss_cfg, num_microbatches=1, num_align_microbatches=1)
        get_forward_backward_func()(forward_step_func=step, data_iterator=iter([packed()]), model=[model],
                                    num_microbatches=1, seq_length=10, micro_batch_size=2, forward_only=False)
        grads[reduction] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    used = [0, 1, 2, 3] if levels is None else levels
    model.zero_grad()
    f, _ = pa.pooled_level_features(model, packed(), used)
    (0.1 * supcon_loss(f, packed()["word_labels"], 0.1).mean()).backward()
    ref = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(ref) <= set(grads["mean"]) and len(ref) >= 2
    for name in set(grads["mean"]) - set(ref):  # the zero-weighted terms that keep params in the graph
        assert not grads["mean"][name].any(), name
    for name in ref:
        torch.testing.assert_close(grads["mean"][name], ref[name], rtol=1e-5, atol=1e-7, msg=name)
        torch.testing.assert_close(grads["mean"][name] * len(used), grads["sum"][name], rtol=1e-5, atol=1e-7,
                                   msg=name)


def test_level_reduction_rejects_unknown():
    with pytest.raises(ValueError, match="level_reduction"):
        pa.PreAlignLossConfig(level_reduction="max")
