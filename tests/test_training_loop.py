"""One training step: masked targets contribute exactly zero loss and zero gradient.

Reference: the same GPTModel's logits, ``torch.nn.functional.cross_entropy`` per token, masked
mean over the unmasked targets, ``torch.autograd.grad`` — independent of Megatron's schedule,
vocab-parallel cross entropy, DDP grad buffers and the PreAlign forward step.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from megatron_prealign.model.gpt import GPTModelConfig

V, S, B = 128, 16, 2


@pytest.fixture()
def model(single_process_parallel_state):
    from megatron.core import tensor_parallel

    from megatron_prealign.training.loop import build_model

    torch.manual_seed(3)
    tensor_parallel.model_parallel_cuda_manual_seed(3)
    cfg = GPTModelConfig(num_layers=2, hidden_size=32, num_attention_heads=4, vocab_size=V, max_sequence_length=S,
                         hidden_dropout=0.0, attention_dropout=0.0)
    return build_model(cfg)


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (B, S + 1), generator=g)
    mask = torch.ones(B, S)
    mask[0, 3] = mask[0, 4] = mask[1, 10] = 0.0
    return {
        "tokens": tokens[:, :-1].contiguous(),
        "labels": tokens[:, 1:].contiguous(),
        "loss_mask": mask,
        "position_ids": torch.arange(S).expand(B, S).contiguous(),
        "attention_mask": ~torch.ones(S, S, dtype=torch.bool).tril().view(1, 1, S, S),
    }


def _schedule_loss_and_grads(model, batch):
    """Loss and gradients the way the training loop computes them."""
    from megatron.core.distributed import finalize_model_grads
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from megatron_prealign.model.prealign import PreAlignForwardStep, PreAlignLossConfig

    for chunk in model:
        chunk.zero_grad_buffer()
    out = get_forward_backward_func()(
        forward_step_func=PreAlignForwardStep(PreAlignLossConfig(), 1, 0), data_iterator=iter([batch]),
        model=model, num_microbatches=1, seq_length=S, micro_batch_size=B, forward_only=False)
    finalize_model_grads(model)
    total, count = out[0]["lm loss"].tolist()
    params = [p for p in model[0].module.parameters()]
    return total / max(count, 1.0), [p.main_grad.detach().clone() for p in params]


def _reference(model, batch):
    gpt = model[0].module
    params = list(gpt.parameters())
    logits = gpt(batch["tokens"], batch["position_ids"], batch["attention_mask"])  # [b, s, V]
    per_token = F.cross_entropy(logits.float().reshape(-1, V), batch["labels"].reshape(-1), reduction="none")
    mask = batch["loss_mask"].reshape(-1)
    keep = mask > 0
    loss = per_token[keep].mean()  # only the unmasked targets exist for the reference
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.item(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def test_lm_loss_is_masked_token_mean_and_gradient_matches(model):
    batch = _batch()
    loss, grads = _schedule_loss_and_grads(model, batch)
    ref_loss, ref_grads = _reference(model, batch)
    assert abs(loss - ref_loss) < 1e-6
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)


def test_masked_targets_contribute_zero_loss_and_zero_gradient(model):
    batch = _batch()
    loss, grads = _schedule_loss_and_grads(model, batch)
    changed = dict(batch)
    labels = batch["labels"].clone()
    labels[batch["loss_mask"] == 0] = (labels[batch["loss_mask"] == 0] + 17) % V  # other targets
    changed["labels"] = labels
    loss2, grads2 = _schedule_loss_and_grads(model, changed)
    assert loss2 == loss  # bit-identical: the masked targets are not in the loss at all
    for g, g2 in zip(grads, grads2):
        assert torch.equal(g, g2)
    nothing = dict(batch)
    nothing["loss_mask"] = torch.zeros(B, S)
    loss0, grads0 = _schedule_loss_and_grads(model, nothing)
    assert loss0 == 0.0
    assert all(torch.count_nonzero(g) == 0 for g in grads0)


def test_train_step_updates_weights_and_schedule(model):
    from megatron_prealign.training.config import OptimConfig
    from megatron_prealign.training.loop import build_optimizer_and_scheduler, train_step
    from megatron_prealign.training.stages import Stage

    opt, sched = build_optimizer_and_scheduler(OptimConfig(lr=1e-2, lr_warmup_iters=2, min_lr=1e-3), model,
                                               train_iters=10, bf16=False)
    before = [p.detach().clone() for p in model[0].module.parameters()]
    lrs = []
    for i in range(3):
        losses, norm, skipped = train_step(Stage("lm", 1.0, 0.0), model, opt, sched, iter([_batch(i)]), 1, S, B)
        lrs.append(sched.get_lr(opt.param_groups[0]))
        assert not skipped and norm > 0 and losses["lm loss"] > 0
    assert lrs[0] == pytest.approx(1e-2 * 1 / 2) and lrs[1] == pytest.approx(1e-2)
    assert lrs[2] < 1e-2  # cosine decay after warm-up
    after = list(model[0].module.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


def test_clone_perfect_init_copies_embedding_rows(model):
    from megatron_prealign.training.loop import clone_perfect_init_

    clone_perfect_init_(model, base_vocab=V // 2)
    w = model[0].module.embedding.word_embeddings.weight
    assert torch.equal(w[V // 2:], w[: V // 2])
    with pytest.raises(ValueError, match="--clone-perfect-init"):
        clone_perfect_init_(model, base_vocab=V)


def test_evaluate_is_the_token_weighted_masked_mean_and_leaves_train_mode(model):
    """Validation: token-weighted over microbatches and iterations, forward only, no gradient."""
    import math

    from megatron_prealign.training.loop import evaluate

    batches = [_batch(i) for i in range(4)]  # 2 iterations x 2 microbatches
    gpt = model[0].module
    with torch.no_grad():
        total = count = 0.0
        for b in batches:
            logits = gpt.eval()(b["tokens"], b["position_ids"], b["attention_mask"])
            per_token = F.cross_entropy(logits.float().reshape(-1, V), b["labels"].reshape(-1), reduction="none")
            keep = b["loss_mask"].reshape(-1) > 0
            total += per_token[keep].sum().item()
            count += keep.sum().item()
    gpt.train()
    for chunk in model:
        chunk.zero_grad_buffer()
    out = evaluate(model, iter(batches), eval_iters=2, num_lm_microbatches=2, seq_length=S, micro_batch_size=B)
    assert out["lm loss"] == pytest.approx(total / count, abs=1e-6)
    assert out["lm loss PPL"] == pytest.approx(math.exp(total / count), rel=1e-6)
    assert gpt.training
    assert all(torch.count_nonzero(p.main_grad) == 0 for p in gpt.parameters())
