"""Checkpoint loading for evaluation: round trip and one-line errors."""

import json
import os

import pytest
import torch

from megatron_prealign.eval import loading


def test_missing_paths_are_one_line_errors(tmp_path):
    with pytest.raises(loading.EvalLoadError, match="no such directory"):
        loading.resolve_checkpoint_dir(str(tmp_path / "none"))
    with pytest.raises(loading.EvalLoadError, match="not a checkpoint directory"):
        loading.resolve_checkpoint_dir(str(tmp_path))
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("5\n")
    with pytest.raises(loading.EvalLoadError, match="no checkpoint for iteration 5"):
        loading.resolve_checkpoint_dir(str(tmp_path))
    (tmp_path / "iter_0000005").mkdir()
    assert loading.resolve_checkpoint_dir(str(tmp_path)) == (str(tmp_path / "iter_0000005"), 5)
    assert loading.resolve_checkpoint_dir(str(tmp_path / "iter_0000005")) == (str(tmp_path / "iter_0000005"), 5)
    # No prealign_meta.json: read as a Megatron-LM checkpoint, and this folder is none.
    with pytest.raises(loading.EvalLoadError, match=r"iter_0000005: not a torch_dist checkpoint \(no metadata.json\)"):
        loading.read_meta(str(tmp_path / "iter_0000005"))


def test_tokenizer_mismatch_is_one_line_error():
    from megatron_prealign.tokenizer import build_tokenizer

    tok = build_tokenizer("NullTokenizer", vocab_size=20)  # vocabulary 21
    meta = {"tokenizer": build_tokenizer("NullTokenizer", vocab_size=30).describe()}
    with pytest.raises(loading.EvalLoadError, match=r"^ck: tokenizer vocab_size 21 != 31 recorded in the checkpoint$"):
        loading.check_tokenizer_matches(tok, 64, meta, where="ck")
    with pytest.raises(loading.EvalLoadError, match="exceeds the model's vocabulary 16"):
        loading.check_tokenizer_matches(tok, 16, {}, where="ck")
    loading.check_tokenizer_matches(tok, 32, {"tokenizer": tok.describe()}, where="ck")
    rebuilt = loading.tokenizer_from_meta({"tokenizer": tok.describe()})
    assert rebuilt.vocab_size == 21 and rebuilt.eod == tok.eod


def test_roundtrip_loads_same_weights(tmp_path, single_process_parallel_state):
    from megatron.core import dist_checkpointing

    from megatron_prealign.eval.scoring import token_logprobs
    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model
    from megatron_prealign.tokenizer import build_tokenizer

    tok = build_tokenizer("NullTokenizer", vocab_size=31)  # vocabulary 32
    cfg = GPTModelConfig(num_layers=1, hidden_size=16, num_attention_heads=2, vocab_size=32, max_sequence_length=8,
                         hidden_dropout=0.0, attention_dropout=0.0)
    from megatron_prealign.platform import seed_all

    seed_all(0)
    model = build_gpt_model(cfg).eval()
    ck = tmp_path / "iter_0000007"
    ck.mkdir()
    dist_checkpointing.save({"model": model.sharded_state_dict()}, str(ck))
    (ck / "prealign_meta.json").write_text(json.dumps({"model": cfg.to_dict(), "tokenizer": tok.describe(), "iteration": 7}))
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("7\n")
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    get_cuda_rng_tracker().reset()  # parallel state up, RNG tracker unseeded: the loader seeds it
    loaded, cfg2, meta, tok2 = loading.load_checkpoint_for_eval(str(tmp_path))
    assert "model-parallel-rng" in get_cuda_rng_tracker().get_states()
    assert meta["iteration"] == 7 and tok2.vocab_size == 32 and cfg2.vocab_size == 32
    x = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert torch.allclose(token_logprobs(model, x), token_logprobs(loaded, x), atol=1e-6)
    # fine-tuning (XNLI): the checkpoint's dropout unless overridden, train mode
    tuned, cfg3, _, _ = loading.load_checkpoint_for_eval(str(tmp_path), for_training=True, attention_dropout=0.25)
    assert tuned.training and (cfg3.hidden_dropout, cfg3.attention_dropout) == (0.0, 0.25)
    assert not loaded.training and (cfg2.hidden_dropout, cfg2.attention_dropout) == (0.0, 0.0)
    wrong = build_tokenizer("NullTokenizer", vocab_size=20)
    with pytest.raises(loading.EvalLoadError, match="tokenizer vocab_size 21 != 32"):
        loading.load_checkpoint_for_eval(str(tmp_path), tokenizer=wrong)
    assert sorted(os.listdir(tmp_path)) == ["iter_0000007", "latest_checkpointed_iteration.txt"]
