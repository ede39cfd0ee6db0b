"""XNLI fine-tuning: pair encoding, accuracy bookkeeping, and learning a trivial task."""

import pytest
import torch

from megatron_prealign.eval import xnli
from megatron_prealign.eval.nli_formats import NLIExample


def test_encode_pair_layout_and_truncation():
    enc = lambda s: [int(t) for t in s.split()]  # noqa: E731
    assert xnli.encode_pair(enc, "1 2 3", "4 5", 0, 10) == [1, 2, 3, 0, 4, 5, 0]
    # budget 6-2=4: premise cut to 4-2=2 tokens
    assert xnli.encode_pair(enc, "1 2 3", "4 5", 0, 6) == [1, 2, 0, 4, 5, 0]
    # hypothesis longer than the budget: premise keeps 1, hypothesis the rest
    assert xnli.encode_pair(enc, "1 2 3", "4 5 6 7 8", 0, 6) == [1, 0, 4, 5, 6, 0]


class _Stub(torch.nn.Module):
    """Predicts class = first token id mod 3."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens, lengths):
        return torch.nn.functional.one_hot(tokens[:, 0] % 3, 3).float()


def test_evaluate_accuracy_and_confusion():
    enc = lambda s: [int(s)]  # noqa: E731
    ex = [NLIExample("0", "9", 0), NLIExample("1", "9", 1), NLIExample("2", "9", 1), NLIExample("5", "9", 2)]
    res = xnli.evaluate(_Stub(), ex, enc, sep_id=0, max_length=8, batch_size=3)
    assert res.accuracy == 75.0 and res.examples == 4
    assert res.confusion == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


@pytest.fixture(scope="module")
def tiny_model(single_process_parallel_state):
    from megatron_prealign.platform import seed_all
    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model

    seed_all(3)
    m = build_gpt_model(GPTModelConfig(num_layers=1, hidden_size=32, num_attention_heads=2, vocab_size=16, max_sequence_length=16,
                                       hidden_dropout=0.0, attention_dropout=0.0))
    yield m


def test_finetune_learns_and_keeps_best_dev(tiny_model):
    # label = which of tokens 1/2/3 closes the hypothesis (visible to the last position).
    enc = lambda s: [int(t) for t in s.split()]  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    train = []
    for i in range(96):
        lab = i % 3
        prem = " ".join(str(int(x)) for x in torch.randint(4, 16, (3,), generator=gen))
        train.append(NLIExample(prem, f"{int(torch.randint(4, 16, (1,), generator=gen))} {lab + 1}", lab))
    torch.manual_seed(0)
    clf = xnli.NLIClassifier(tiny_model, 32)
    cfg = xnli.XNLIConfig(max_length=12, epochs=4, batch_size=16, lr=3e-3, warmup_ratio=0.0, seed=0)
    out = xnli.finetune(clf, train, enc, sep_id=0, config=cfg, dev=train[:30])
    assert out["steps"] == 24 and len(out["history"]) == 4
    assert out["history"][-1]["loss"] < out["history"][0]["loss"]
    accs = [h["dev_accuracy"] for h in out["history"]]
    assert out["best_dev_accuracy"] == max(accs) >= 90.0
    # the classifier holds the best weights
    assert xnli.evaluate(clf, train[:30], enc, 0, 12).accuracy == pytest.approx(max(accs))
