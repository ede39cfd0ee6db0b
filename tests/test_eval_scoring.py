"""megatron_prealign.eval.scoring against hand-computed bigram/uniform models."""

import math

import pytest
import torch

import reference_models as rm
from megatron_prealign.eval import scoring
from megatron_prealign.platform import seed_all

V = 8


@pytest.fixture(scope="module")
def model(single_process_parallel_state):
    seed_all()
    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model

    cfg = GPTModelConfig(num_layers=1, hidden_size=16, num_attention_heads=2, vocab_size=V, max_sequence_length=12,
                         hidden_dropout=0.0, attention_dropout=0.0, untie_embeddings_and_output_weights=True)
    m = build_gpt_model(cfg).eval()
    yield m


def test_token_logprobs_matches_bigram_table(model):
    table = torch.randn(V, V, generator=torch.Generator().manual_seed(1)) * 2
    rm.set_bigram_weights(model, table)
    tokens = torch.tensor([[0, 3, 5, 1, 7], [2, 2, 4, 6, 0]])
    with torch.no_grad():
        lp = scoring.token_logprobs(model, tokens)
    ref = torch.log_softmax(table, -1)[tokens[:, :-1], tokens[:, 1:]]
    assert lp.shape == (2, 4)
    assert torch.allclose(lp, ref, atol=1e-4)


def test_score_sequences_sums_continuation_only(model):
    table = torch.randn(V, V, generator=torch.Generator().manual_seed(2)) * 2
    rm.set_bigram_weights(model, table)
    logp = torch.log_softmax(table.double(), -1)
    contexts = [[1], [4, 2], [7]]
    conts = [[2, 3], [5], [0, 0, 6, 1]]
    scores = scoring.score_sequences(model, contexts, conts, batch_size=2, pad_id=0)
    for ctx, cont, sc in zip(contexts, conts, scores):
        seq = ctx + cont
        want = sum(float(logp[seq[i - 1], seq[i]]) for i in range(len(ctx), len(seq)))
        assert sc.num_tokens == len(cont)
        assert sc.logprob == pytest.approx(want, abs=1e-4)
        assert sc.mean_logprob == pytest.approx(want / len(cont), abs=1e-4)


@pytest.mark.gpu
def test_cuda_fast_path_matches_bigram_table(model):
    """On a GPU machine the model is built on CUDA (no CPU patch) and scores as on the CPU."""
    from megatron_prealign.platform import cpu_support_active, device

    assert not cpu_support_active()
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    table = torch.randn(V, V, generator=torch.Generator().manual_seed(3)) * 2
    rm.set_bigram_weights(model, table)
    tokens = torch.tensor([[0, 3, 5, 1, 7], [2, 2, 4, 6, 0]])
    with torch.no_grad():
        lp = scoring.token_logprobs(model, tokens.to(device())).cpu()
    ref = torch.log_softmax(table, -1)[tokens[:, :-1], tokens[:, 1:]]
    assert torch.allclose(lp, ref, atol=1e-3)
    logp = torch.log_softmax(table.double(), -1)
    sc = scoring.score_sequences(model, [[1, 4]], [[2, 3]])[0]
    assert sc.logprob == pytest.approx(float(logp[4, 2] + logp[2, 3]), abs=1e-3)


def test_score_sequences_rejects_too_long(model):
    with pytest.raises(ValueError, match="max sequence length"):
        scoring.score_sequences(model, [[0] * 10], [[1] * 5])


def test_uniform_model_logprob_is_minus_log_vocab(model):
    rm.set_uniform_weights(model)
    sc = scoring.score_sequences(model, [[3]], [[1, 2, 5]])[0]
    assert sc.logprob == pytest.approx(-3 * math.log(V), abs=1e-5)


def test_greedy_generation_follows_bigram_argmax(model):
    # Deterministic chain 0->1->2->...->7->0, EOD = 5 stops a row.
    table = torch.full((V, V), -10.0)
    for i in range(V):
        table[i, (i + 1) % V] = 10.0
    rm.set_bigram_weights(model, table)
    out = scoring.generate(model, [[0], [6, 7], [3]], max_new_tokens=4, eod_id=5)
    assert out == [[1, 2, 3, 4], [0, 1, 2, 3], [4]]
    # vocab_limit forbids ids >= limit: from 2 the best allowed after 3 is masked -> not 3.
    out = scoring.generate(model, [[2]], max_new_tokens=1, vocab_limit=3)
    assert out[0][0] in (0, 1, 2)


def test_last_token_hidden_picks_real_last_position(model):
    tokens = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    lengths = torch.tensor([3, 2])
    with torch.no_grad():
        full = scoring.final_hidden_states(model, tokens)
        last = scoring.last_token_hidden(model, tokens, lengths)
    assert full.shape == (2, 4, 16)
    assert torch.equal(last[0], full[0, 2]) and torch.equal(last[1], full[1, 1])


_TP2_SCRIPT = r"""
import json, sys, torch
from megatron_prealign.eval.runtime import is_main_rank
from megatron_prealign.platform import initialize
from megatron_prealign.eval import scoring
from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model
initialize(tensor_model_parallel_size=2, seed=0)
cfg = GPTModelConfig(**json.loads(sys.argv[2]))
m = build_gpt_model(cfg).eval()
x = torch.tensor([[1, 5, 9, 3, 7, 2], [4, 4, 8, 15, 0, 11]])
with torch.no_grad():
    out = {"lp": scoring.token_logprobs(m, x).tolist(), "logits": scoring.next_token_logits(m, x).tolist(),
           "gen": scoring.generate(m, [[1, 2], [3]], 3)}
if is_main_rank():
    json.dump(out, open(sys.argv[1], "w"))
"""


@pytest.mark.distributed
def test_tensor_parallel_scores_equal_tp1(model, tmp_path):
    """TP=2 (vocab-parallel CE, gathered logits) reproduces TP=1 with the same CPU-initialised weights."""
    import json
    import os
    import socket
    import subprocess
    import sys

    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model

    cfg = dict(num_layers=1, hidden_size=16, num_attention_heads=2, vocab_size=16, max_sequence_length=12,
               hidden_dropout=0.0, attention_dropout=0.0, use_cpu_initialization=True)
    script = tmp_path / "tp2.py"
    script.write_text(_TP2_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
                    str(script), str(tmp_path / "out.json"), json.dumps(cfg)],
                   check=True, timeout=180, env=env, capture_output=True)
    got = json.loads((tmp_path / "out.json").read_text())
    seed_all(0)
    ref = build_gpt_model(GPTModelConfig(**cfg)).eval()
    x = torch.tensor([[1, 5, 9, 3, 7, 2], [4, 4, 8, 15, 0, 11]])
    with torch.no_grad():
        assert torch.allclose(torch.tensor(got["lp"]), scoring.token_logprobs(ref, x), atol=1e-5)
        assert torch.allclose(torch.tensor(got["logits"]), scoring.next_token_logits(ref, x), atol=1e-5)
    assert got["gen"] == scoring.generate(ref, [[1, 2], [3]], 3)
