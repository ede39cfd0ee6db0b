"""The pre-alignment attachment to GPTModel, in one process (TP=PP=DP=1).

Distributed equivalence (TP/SP/PP/DP) is in tests/distributed/test_prealign_parallel.py.
"""

from __future__ import annotations

import pytest
import torch

from megatron_prealign.model import prealign as pa
from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model
from megatron_prealign.model.supcon import supcon_loss
from megatron_prealign.model.word_batches import pad_word_batch, word_rows

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
    """The words one per row, with one padding row and two padding columns beyond the longest."""
    return word_rows(WORDS, LABELS, num_rows=8, length=6)


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


@pytest.mark.parametrize("max_buckets", [1, 8])  # 1: the padded [8, 6] pass that PP uses
@pytest.mark.parametrize("position_embedding_type", ["learned_absolute", "rope"])
def test_words_in_a_batch_equal_words_encoded_alone(make_model, monkeypatch, position_embedding_type, max_buckets):
    monkeypatch.setattr(pa, "MAX_LENGTH_BUCKETS", max_buckets)
    model = make_model(position_embedding_type=position_embedding_type, untie_embeddings_and_output_weights=True)
    calls = []
    model.register_forward_pre_hook(lambda m, a, kw: calls.append(kw["input_ids"].shape), with_kwargs=True)
    batch = packed()
    assert batch["tokens"].shape == (8, 6)
    with torch.no_grad():
        features, _ = pa.pooled_level_features(model, batch, [0, 1, 2, 3])
        for slot, ids in enumerate(WORDS):
            torch.testing.assert_close(features[:, slot], naive_word_features(model, ids), rtol=1e-6, atol=1e-6)
    assert features[:, len(WORDS):].abs().max() == 0  # the padding row
    # lengths 1 (2 words + the padding row), 2 (2), 3 (2), 4 (1): one call per length, or one padded call
    expected = [(3, 1), (2, 2), (2, 3), (1, 4)] if max_buckets == 8 else [(8, 6)]
    assert [tuple(shape) for shape in calls[: len(expected)]] == expected


def test_pooling_ignores_right_padding(make_model, monkeypatch):
    """Negative control: averaging over the padded row instead of the word changes the feature."""
    monkeypatch.setattr(pa, "MAX_LENGTH_BUCKETS", 1)  # one padded pass
    model = make_model()
    batch = packed()
    with torch.no_grad():
        features, _ = pa.pooled_level_features(model, batch, [2])
        wider, _ = pa.pooled_level_features(model, pad_word_batch(batch, 9, 9), [2])
        torch.testing.assert_close(wider[:, :8], features, rtol=1e-6, atol=1e-6)
        fake = dict(batch, lengths=torch.where(batch["lengths"] > 0, 6, 0))
        with_pads, _ = pa.pooled_level_features(model, fake, [2])
    assert (with_pads[0, 1] - features[0, 1]).abs().max() > 1e-3  # word [8] padded to 6 tokens


def test_the_model_sees_no_attention_mask(make_model):
    """Pre-alignment uses the model's own causal attention: nothing a TE spec would ignore."""
    model = make_model()
    seen = []
    core = model.decoder.layers[0].self_attention.core_attention
    handle = core.register_forward_pre_hook(lambda m, args, kwargs: seen.append(args[3] if len(args) > 3
                                            else kwargs.get("attention_mask")), with_kwargs=True)
    try:
        pa.pooled_level_features(model, packed(), [1])
    finally:
        handle.remove()
    assert seen and all(mask is None for mask in seen)


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


def test_forward_backward_step_implements_eq4(make_model):
    """Two pre-alignment microbatches of different shapes and one LM microbatch (weights 0.7 / 0.3)
    through Megatron's schedule: grads of 0.7*mean_A(sum levels) + 0.3*CE(L)."""
    model = make_model()
    second = word_rows(WORDS[::-1][:5], [x + 10 for x in LABELS[::-1][:5]])
    assert second["tokens"].shape != packed()["tokens"].shape
    align = [packed(), second]
    lm = _lm_batch(0)
    loss_cfg = pa.PreAlignLossConfig(temperature=0.1, align_weight=0.7, lm_weight=0.3)
    tracker = pa.LevelLossTracker(2, (0, 1, 2, 3))
    losses = pa.forward_backward_step([model], loss_cfg, iter([lm]), 1, seq_length=10, micro_batch_size=2,
                                      align_batches=align, tracker=tracker)
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    logged = tracker.reduce()
    assert [sorted(d) for d in losses] == [["lm loss"]] * 3

    model.zero_grad()
    per_level = []
    for b in align:
        f, _ = pa.pooled_level_features(model, b, [0, 1, 2, 3])
        real = b["word_labels"] >= 0
        per_level.append(supcon_loss(f[:, real], b["word_labels"][real], 0.1))
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


def test_forward_backward_step_runs_one_schedule_call_per_kind(make_model, monkeypatch):
    """Alignment microbatches get their own shape (words x longest word) in one call; grads are
    reduced once (no_sync held and finalize hidden during the first call)."""
    import megatron.core.pipeline_parallel as pp_mod

    model = make_model()
    calls, events = [], []
    real = pp_mod.get_forward_backward_func()

    def spy(**kw):
        calls.append((kw["num_microbatches"], kw["micro_batch_size"], kw["seq_length"],
                      model.config.finalize_model_grads_func is not None))
        return real(**kw)

    monkeypatch.setattr(pp_mod, "get_forward_backward_func", lambda: spy)

    @__import__("contextlib").contextmanager
    def no_sync():
        events.append("enter")
        yield
        events.append("exit")

    model.config.no_sync_func = no_sync
    model.config.finalize_model_grads_func = lambda *a, **k: events.append("finalize")
    try:
        pa.forward_backward_step([model], pa.PreAlignLossConfig(), iter([_lm_batch(0), _lm_batch(1)]), 2, 10, 2,
                                 align_batches=[packed(), word_rows(WORDS[:3], LABELS[:3])])
    finally:
        model.config.no_sync_func = model.config.finalize_model_grads_func = None
    assert calls == [(2, 8, 6, False), (2, 2, 10, True)]
    # first call: held open throughout; second: the schedule's own no_sync for microbatch 1, then finalize
    assert events == ["enter", "exit", "enter", "exit", "finalize"]


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
    with pytest.raises(ValueError, match="num_align_microbatches"):
        pa.PreAlignForwardStep(pa.PreAlignLossConfig(), num_microbatches=2, num_align_microbatches=3)
    with pytest.raises(ValueError, match="temperature"):
        pa.PreAlignLossConfig(temperature=0)


def test_batch_without_positive_pair_raises(make_model):
    model = make_model()
    batch = word_rows([[5], [6], [7]], [0, 1, 2])
    features, _ = pa.pooled_level_features(model, batch, [1])
    with pytest.raises(ValueError, match="no positive pair"):
        pa.alignment_level_losses(features, batch["word_labels"], 0.1)


def test_kinds_switch_under_ddp_overlapped_grad_reduce(make_model):
    """Megatron DDP (overlap_grad_reduce) records which params get grads in the first step and
    waits for the same set later: a pre-alignment step that skips the LM head and leaves the
    untied output layer out of the levels must still touch every parameter."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads

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
        if num_align:
            pa.forward_backward_step([ddp], loss_cfg, None, 0, 10, 2, align_batches=[batch])
        else:
            pa.forward_backward_step([ddp], loss_cfg, iter([batch]), 1, 10, 2)
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
                                    num_microbatches=1, seq_length=6, micro_batch_size=8, forward_only=False)
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
    with pytest.raises(ValueError, match="level-reduction"):
        pa.PreAlignLossConfig(level_reduction="max")
