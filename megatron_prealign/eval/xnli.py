"""Zero-shot cross-lingual transfer on XNLI (paper §4.2, Tables 1, 3, 6).

Method (what a user of a decoder-only GPT expects; the paper's code builds on HF transformers,
whose ``GPT2ForSequenceClassification`` does exactly this): full fine-tuning of the pretrained
``GPTModel`` plus a linear classification head (hidden -> 3) on the final-norm hidden state of
the **last token** of ``premise <eod> hypothesis <eod>``. Training uses only English data
(MultiNLI / XNLI-MT English); the checkpoint with the best English dev accuracy is kept and
evaluated on every target language's test set, with no target-language training. For En-Clone
the target test set is the English test set cloned token by token.

Sequences longer than ``max_length`` are truncated from the end of the premise first, then of
the hypothesis. Fine-tuning and evaluation run with TP=1, PP=1 (the classification head reads
the full hidden state).

Dropout: :func:`finetune` trains in ``train()`` mode, so the dropout the model was built with
applies (``tools/eval_xnli.py`` loads it with ``for_training=True``: the checkpoint's pretraining
dropout, or ``--hidden-dropout``/``--attention-dropout``); :func:`evaluate` runs in ``eval()``
mode and is deterministic.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch
from megatron.core import parallel_state

from megatron_prealign.eval.nli_formats import LABELS, NLIExample
from megatron_prealign.eval.scoring import last_token_hidden, model_device, pad_batch


@dataclass
class XNLIConfig:
    """Fine-tuning hyper-parameters."""

    max_length: int = 128
    """Tokens per example, separators included (premise truncated first)."""
    epochs: int = 2
    """Passes over the English training set."""
    batch_size: int = 32
    """Training examples per optimizer step."""
    lr: float = 2e-5
    """Peak AdamW learning rate (linear warmup, then linear decay to 0)."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and norms)."""
    warmup_ratio: float = 0.1
    """Share of steps spent in linear warmup."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (0 disables)."""
    eval_batch_size: int = 64
    """Examples per forward pass when evaluating."""
    eval_every: int = 0
    """Evaluate on English dev every N steps as well as after each epoch (0: per epoch only)."""
    max_train_examples: Optional[int] = None
    """Use only the first N training examples (after shuffling with ``seed``)."""
    seed: int = 1234
    """Seed of the head initialisation, shuffling and dropout."""


def encode_pair(encode: Callable[[str], List[int]], premise: str, hypothesis: str, sep_id: int, max_length: int) -> List[int]:
    """``premise <sep> hypothesis <sep>`` token ids, truncated to ``max_length``.

    Truncation removes tokens from the end of the premise first, then from the end of the
    hypothesis (each keeps at least one token while possible).
    """
    if max_length < 4:
        raise ValueError(f"max_length must be >= 4, got {max_length}")
    p, h = list(encode(premise)), list(encode(hypothesis))
    budget = max_length - 2
    if len(p) + len(h) > budget:
        keep_p = max(1, budget - len(h))
        p = p[:keep_p]
        h = h[: budget - len(p)]
    return p + [sep_id] + h + [sep_id]


class NLIClassifier(torch.nn.Module):
    """A ``GPTModel`` with a linear 3-way head on the last token's final hidden state."""

    def __init__(self, model: torch.nn.Module, hidden_size: int, num_labels: int = len(LABELS)) -> None:
        super().__init__()
        self.model = model
        self.head = torch.nn.Linear(hidden_size, num_labels)
        std = getattr(getattr(model, "config", None), "init_method_std", 0.02)
        torch.nn.init.normal_(self.head.weight, std=std)
        torch.nn.init.zeros_(self.head.bias)
        self.head.to(model_device(model))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class logits ``[b, num_labels]`` for right-padded ``tokens`` with real ``lengths``."""
        hidden = last_token_hidden(self.model, tokens, lengths)
        return self.head(hidden.to(self.head.weight.dtype))


def _check_tp1() -> None:
    if parallel_state.model_parallel_is_initialized() and parallel_state.get_tensor_model_parallel_world_size() != 1:
        raise RuntimeError("XNLI fine-tuning runs with tensor-model-parallel size 1")


@dataclass
class NLIAccuracy:
    """Accuracy on one test set."""

    accuracy: float
    """Percent correct."""
    examples: int
    """Examples evaluated."""
    confusion: List[List[int]] = field(default_factory=list)
    """``confusion[gold][pred]`` counts."""


@torch.no_grad()
def evaluate(classifier: torch.nn.Module, examples: Sequence[NLIExample], encode: Callable[[str], List[int]], sep_id: int,
             max_length: int, batch_size: int = 64, pad_id: int = 0, progress: bool = False, desc: str = "eval") -> NLIAccuracy:
    """Accuracy of ``classifier`` on ``examples`` (eval mode restored afterwards)."""
    if not examples:
        raise ValueError(f"{desc}: no examples to evaluate")
    was_training = classifier.training
    classifier.eval()
    device = model_device(classifier)
    confusion = [[0] * len(LABELS) for _ in LABELS]
    rng = range(0, len(examples), batch_size)
    if progress:
        from tqdm import tqdm

        rng = tqdm(rng, desc=desc, unit="batch")
    for start in rng:
        batch = examples[start : start + batch_size]
        seqs = [encode_pair(encode, e.premise, e.hypothesis, sep_id, max_length) for e in batch]
        tokens, lengths = pad_batch(seqs, pad_id, device)
        pred = classifier(tokens, lengths).argmax(-1).tolist()
        for e, p in zip(batch, pred):
            confusion[e.label][p] += 1
    classifier.train(was_training)
    correct = sum(confusion[i][i] for i in range(len(LABELS)))
    return NLIAccuracy(accuracy=100.0 * correct / len(examples), examples=len(examples), confusion=confusion)


def _param_groups(module: torch.nn.Module, weight_decay: float) -> list:
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() < 2 or "norm" in name.lower() or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def finetune(classifier: NLIClassifier, train: Sequence[NLIExample], encode: Callable[[str], List[int]], sep_id: int,
             config: XNLIConfig, dev: Optional[Sequence[NLIExample]] = None, pad_id: int = 0,
             progress: bool = False) -> Dict[str, object]:
    """Fine-tune on English ``train``; keep the weights with the best English ``dev`` accuracy.

    Returns:
        ``{"steps", "history": [{"step", "epoch", "loss", "dev_accuracy"}], "best_dev_accuracy", "best_step"}``;
        ``classifier`` holds the best weights on return (the last ones when ``dev`` is None).
    """
    _check_tp1()
    if not train:
        raise ValueError("no English training examples")
    rng = random.Random(config.seed)
    order = list(range(len(train)))
    rng.shuffle(order)
    if config.max_train_examples is not None:
        order = order[: config.max_train_examples]
    steps_per_epoch = math.ceil(len(order) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = int(total * config.warmup_ratio)
    opt = torch.optim.AdamW(_param_groups(classifier, config.weight_decay), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    device = model_device(classifier)
    history: List[dict] = []
    best_acc, best_step, best_state = -1.0, 0, None
    step = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="xnli finetune", unit="step")

    def check_dev(epoch: int, loss: float) -> None:
        nonlocal best_acc, best_step, best_state
        acc = evaluate(classifier, dev, encode, sep_id, config.max_length, config.eval_batch_size, pad_id).accuracy if dev else None
        history.append({"step": step, "epoch": epoch, "loss": loss, "dev_accuracy": acc})
        if acc is not None and acc > best_acc:
            best_acc, best_step = acc, step
            best_state = {k: v.detach().clone() for k, v in classifier.named_parameters()}

    classifier.train()
    for epoch in range(config.epochs):
        rng.shuffle(order)
        running, count = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            batch = [train[i] for i in order[start : start + config.batch_size]]
            seqs = [encode_pair(encode, e.premise, e.hypothesis, sep_id, config.max_length) for e in batch]
            tokens, lengths = pad_batch(seqs, pad_id, device)
            labels = torch.tensor([e.label for e in batch], device=device)
            loss = torch.nn.functional.cross_entropy(classifier(tokens, lengths).float(), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(classifier.parameters(), config.grad_clip)
            opt.step()
            sched.step()
            step += 1
            running += float(loss)
            count += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{running / count:.4f}")
            if config.eval_every and step % config.eval_every == 0 and dev:
                check_dev(epoch, running / count)  # (evaluate restores train mode)
        check_dev(epoch, running / max(count, 1))
    if bar is not None:
        bar.close()
    if best_state is not None:
        with torch.no_grad():
            for k, v in classifier.named_parameters():
                v.copy_(best_state[k])
    classifier.eval()
    return {"steps": step, "history": history, "best_dev_accuracy": best_acc if dev else None, "best_step": best_step if dev else step}
