"""Export to Hugging Face: the exported model's logits equal Megatron-Core's on the same input.

Tiny random models (every parameter perturbed, so biases and norm weights matter) are saved
through the project's own ``training.checkpointing.save_checkpoint``, exported with
``megatron_prealign.export``, and loaded back with ``transformers`` (offline, local dir). The
reference is transformers' own GPT-2 / GPT-NeoX / Arcee implementation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers not installed (pip install transformers==5.23.0)")

from megatron_prealign.export import ExportError, HFExportConfig, export_hf  # noqa: E402
from megatron_prealign.export import hf as hf_export  # noqa: E402
from megatron_prealign.model.gpt import GPTModelConfig  # noqa: E402
from megatron_prealign.training import checkpointing  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQ = 16
NULL_VOCAB = 100  # NullTokenizer: ids 0..99, EOD 100 -> 101 ids, padded to 128
NULL_TOKENIZER = {"type": "NullTokenizer", "vocab_size": NULL_VOCAB + 1, "eod": NULL_VOCAB, "pad": NULL_VOCAB}
TEXT = ["the bank of the river is green and the river is long",
        "a model reads the text and the text reads the model", "green banks, long rivers."] * 20


def _cfg(**kw) -> GPTModelConfig:
    base = dict(num_layers=2, hidden_size=64, num_attention_heads=4, vocab_size=128, max_sequence_length=SEQ,
                hidden_dropout=0.0, attention_dropout=0.0, transformer_impl="local")
    base.update(kw)
    return GPTModelConfig(**base)


def _build(cfg: GPTModelConfig, seed: int) -> torch.nn.Module:
    from megatron.core import tensor_parallel

    from megatron_prealign.model.gpt import build_gpt_model

    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)
    model = build_gpt_model(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # zero biases / unit norms would hide a wrong mapping of them
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def _save(root, model, cfg: GPTModelConfig, tokenizer: dict) -> str:
    meta = {"model": cfg.to_dict(), "tokenizer": tokenizer, "args": {"seed": 1}}
    checkpointing.save_checkpoint(str(root), 3, [model], None, None, {"iteration": 3}, meta)
    return str(root)


def _megatron_logits(model, ids: torch.Tensor) -> torch.Tensor:
    b, s = ids.shape
    mask = ~torch.ones(s, s, dtype=torch.bool).tril().view(1, 1, s, s)
    with torch.no_grad():
        return model(ids, torch.arange(s).expand(b, s), mask).float()


def _hf_logits(path: str, ids: torch.Tensor):
    model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    with torch.no_grad():
        return model, model(input_ids=ids).logits.float()


def _ids(vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (2, SEQ), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def saved(tmp_path_factory, single_process_parallel_state):
    """name -> (checkpoint root, Megatron model, cfg) for the exportable shapes."""
    out = {}
    for i, (name, kw) in enumerate({
        "gpt2-tied": {},
        "gpt2-untied": {"untie_embeddings_and_output_weights": True},
        "neox-untied": {"position_embedding_type": "rope", "untie_embeddings_and_output_weights": True},
        "arcee-tied": {"position_embedding_type": "rope", "normalization": "RMSNorm"},
        "arcee-untied": {"position_embedding_type": "rope", "normalization": "RMSNorm",
                         "untie_embeddings_and_output_weights": True},
    }.items()):
        cfg = _cfg(**kw)
        model = _build(cfg, seed=10 + i)
        out[name] = (_save(tmp_path_factory.mktemp(name), model, cfg, NULL_TOKENIZER), model, cfg)
    return out


@pytest.mark.parametrize("name,arch,tied", [("gpt2-tied", "GPT2LMHeadModel", True),
                                            ("gpt2-untied", "GPT2LMHeadModel", False),
                                            ("neox-untied", "GPTNeoXForCausalLM", False),
                                            ("arcee-tied", "ArceeForCausalLM", True),
                                            ("arcee-untied", "ArceeForCausalLM", False)])
def test_exported_logits_equal_megatron(saved, tmp_path, name, arch, tied):
    root, model, cfg = saved[name]
    out = export_hf(HFExportConfig(load=root, output=str(tmp_path / "hf")))
    assert sorted(os.listdir(tmp_path)) == ["hf"]  # temp dir renamed, nothing left over
    hf, got = _hf_logits(out, _ids(NULL_VOCAB + 1))
    assert type(hf).__name__ == arch
    assert hf.config.vocab_size == NULL_VOCAB + 1  # trimmed from the padded 128
    assert hf.config.eos_token_id == NULL_VOCAB
    assert (hf.lm_head.weight.data_ptr() == hf.get_input_embeddings().weight.data_ptr()) == tied
    want = _megatron_logits(model, _ids(NULL_VOCAB + 1))
    assert want.shape[-1] == cfg.vocab_size == 128
    assert want[..., NULL_VOCAB + 1:].abs().sum() > 0  # the padded rows really were cut
    torch.testing.assert_close(got, want[..., : NULL_VOCAB + 1], atol=3e-5, rtol=1e-5)


def test_keep_padded_vocab_and_bf16(saved, tmp_path):
    root, model, _ = saved["gpt2-untied"]
    out = export_hf(HFExportConfig(load=root + "/iter_0000003", output=str(tmp_path / "hf"),
                                   keep_padded_vocab=True, dtype="bfloat16", extra={"use_cache": False}))
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert hf.config.vocab_size == 128 and hf.lm_head.weight.dtype == torch.bfloat16
    assert hf.config.use_cache is False
    torch.testing.assert_close(hf.lm_head.weight.float(), model.output_layer.weight.bfloat16().float())


def test_wrong_qkv_mapping_would_be_caught(saved, tmp_path, monkeypatch):
    """Negative control: a plain q|k|v row split (ignoring Megatron's per-head interleave) fails."""
    root, model, _ = saved["gpt2-tied"]

    def naive(qkv, num_heads, num_query_groups):
        return tuple(qkv.chunk(3, dim=0))

    monkeypatch.setattr(hf_export, "split_qkv", naive)
    out = export_hf(HFExportConfig(load=root, output=str(tmp_path / "hf")))
    _, got = _hf_logits(out, _ids(NULL_VOCAB + 1))
    want = _megatron_logits(model, _ids(NULL_VOCAB + 1))[..., : NULL_VOCAB + 1]
    assert (got - want).abs().max() > 1e-2


def test_split_qkv_grouped_layout():
    h, d, groups = 4, 2, 2  # 2 query heads per group
    rows = []
    for g in range(groups):
        rows += [("q", g * 2 + j) for j in range(2)] + [("k", g), ("v", g)]
    w = torch.tensor([[ord(kind), head, r] for kind, head in rows for r in range(d)], dtype=torch.float32)
    q, k, v = hf_export.split_qkv(w, h, groups)
    assert q[:, 1].tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and set(q[:, 0].tolist()) == {ord("q")}
    assert k[:, 1].tolist() == [0, 0, 1, 1] and set(k[:, 0].tolist()) == {ord("k")}
    assert v[:, 1].tolist() == [0, 0, 1, 1] and set(v[:, 0].tolist()) == {ord("v")}


@pytest.mark.parametrize("kind", ["HuggingFaceTokenizer", "GPT2BPETokenizer"])
def test_tokenizer_files_exported(tmp_path, single_process_parallel_state, kind):
    from megatron_prealign.tokenizer import build_tokenizer, train_byte_level_bpe

    files = train_byte_level_bpe(TEXT, str(tmp_path / "tok"), vocab_size=300, min_frequency=2)
    tok = (build_tokenizer(kind, tokenizer_model=files["tokenizer_json"]) if kind == "HuggingFaceTokenizer"
           else build_tokenizer(kind, vocab_file=files["vocab_file"], merge_file=files["merge_file"]))
    cfg = _cfg(hidden_size=32, vocab_size=384, num_layers=1)
    model = _build(cfg, seed=3)
    root = _save(tmp_path / "ckpt", model, cfg, tok.describe())
    out = export_hf(HFExportConfig(load=root, output=str(tmp_path / "hf")))
    hf_tok = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    text = "the green river banks, long and green"
    ids = tok.tokenize(text)
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == ids
    assert hf_tok.eos_token_id == tok.eod
    hf, got = _hf_logits(out, torch.tensor([ids]))
    assert hf.config.vocab_size == tok.vocab_size
    want = _megatron_logits(model, torch.tensor([ids]))[..., : tok.vocab_size]
    torch.testing.assert_close(got, want, atol=3e-5, rtol=1e-5)

    # A tokenizer file edited after training is refused (its SHA-256 no longer matches).
    with open(tok.describe().get("vocab_file") or files["tokenizer_json"], "a") as f:
        f.write(" ")
    with pytest.raises(ExportError, match="changed since training"):
        export_hf(HFExportConfig(load=root, output=str(tmp_path / "hf2")))
    assert not (tmp_path / "hf2").exists()
    export_hf(HFExportConfig(load=root, output=str(tmp_path / "hf2"), tokenizer=False))
    assert not os.path.exists(tmp_path / "hf2" / "tokenizer_config.json")


def test_bad_inputs_are_one_line(saved, tmp_path):
    def one_line(cfg):
        with pytest.raises(ExportError) as err:
            export_hf(cfg)
        assert "\n" not in str(err.value)
        return str(err.value)

    (tmp_path / "empty").mkdir()
    assert "not a checkpoint directory" in one_line(HFExportConfig(load=str(tmp_path / "empty"), output=str(tmp_path / "o")))
    assert "no such directory" in one_line(HFExportConfig(load=str(tmp_path / "nope"), output=str(tmp_path / "o")))
    root = saved["gpt2-tied"][0]
    (tmp_path / "exists").mkdir()
    assert "exists" in one_line(HFExportConfig(load=root, output=str(tmp_path / "exists")))
    # Learned absolute positions with RMSNorm have no Hugging Face twin.
    fake = tmp_path / "rms"
    (fake / "iter_0000001").mkdir(parents=True)
    (fake / "latest_checkpointed_iteration.txt").write_text("1\n")
    (fake / "iter_0000001" / "prealign_meta.json").write_text(
        json.dumps({"model": _cfg(normalization="RMSNorm").to_dict()}))
    assert "normalization='RMSNorm'" in one_line(HFExportConfig(load=str(fake), output=str(tmp_path / "o")))
    # Meta present but no tensors.
    (fake / "iter_0000001" / "prealign_meta.json").write_text(json.dumps({"model": _cfg().to_dict()}))
    assert "dist_checkpointing" in one_line(HFExportConfig(load=str(fake), output=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_cli(saved, tmp_path, capsys):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import export_hf as tool
    finally:
        sys.path.pop(0)
    root = saved["gpt2-untied"][0]
    assert tool.main(["--load", str(tmp_path), "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("export_hf.py: error: --load ") and err.count("\n") == 1
    # As users run it: a plain process (it makes its own 1-process group to read the shards).
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export_hf.py"), "--load", root,
                           "--output", str(tmp_path / "hf"), "--keep-padded-vocab"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["activation_function"] == "gelu" and config["vocab_size"] == 128
    assert sorted(os.listdir(tmp_path)) == ["hf"]


SCENARIOS = '''
import os, sys
sys.path.insert(0, {distributed_dir!r})
import torch
from megatron.core import parallel_state, tensor_parallel
from worker import run_scenarios
from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model
from megatron_prealign.training import checkpointing


def save(ctx, name, tp, pp, **kw):
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    torch.manual_seed(7)
    tensor_parallel.model_parallel_cuda_manual_seed(7)
    cfg = GPTModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, vocab_size=128, max_sequence_length=16,
                         hidden_dropout=0.0, attention_dropout=0.0, transformer_impl="local", **kw)
    model = build_gpt_model(cfg)
    g = torch.Generator().manual_seed(100 + ctx.rank)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    meta = {{"model": cfg.to_dict(), "tokenizer": {tokenizer!r}, "args": {{"seed": 7}}}}
    checkpointing.save_checkpoint(str(ctx.workdir / name), 1, [model], None, None, {{"iteration": 1}}, meta)
    return {{}}


if __name__ == "__main__":
    run_scenarios({{
        "tp2": lambda ctx: save(ctx, "tp2", 2, 1, untie_embeddings_and_output_weights=True),
        "pp2": lambda ctx: save(ctx, "pp2", 1, 2, position_embedding_type="rope"),
    }})
'''


@pytest.fixture(scope="module")
def multi_rank_checkpoints(tmp_path_factory):
    """Checkpoints saved by 2 ranks under TP=2 (GPT-2, untied) and PP=2 (rope, tied)."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "distributed"))
    try:
        from launcher import run_torchrun
    finally:
        sys.path.pop(0)
    base = tmp_path_factory.mktemp("multi_rank")
    script = base / "save_scenarios.py"
    script.write_text(SCENARIOS.format(distributed_dir=os.path.join(ROOT, "tests", "distributed"),
                                       tokenizer=NULL_TOKENIZER))
    launch = run_torchrun(script, nproc=2, timeout=180, check=False, workdir=base / "work", cpu_only=True)
    return launch, base / "work"


@pytest.mark.distributed
@pytest.mark.parametrize("name,layout,arch", [("tp2", {"tensor_model_parallel_size": 2}, "GPT2LMHeadModel"),
                                              ("pp2", {"pipeline_model_parallel_size": 2}, "GPTNeoXForCausalLM")])
def test_export_from_other_parallel_layouts(multi_rank_checkpoints, single_process_parallel_state, tmp_path,
                                            name, layout, arch):
    launch, work = multi_rank_checkpoints
    launch.scenario(name)  # raises with the ranks' logs if saving failed
    root = str(work / name)
    meta = checkpointing.read_meta(root)
    assert all(meta["parallel"][k] == v for k, v in layout.items())
    # Reference: Megatron's own resharding load into a TP=1, PP=1 model.
    model, _, _ = checkpointing.load_model_for_eval(root)
    out = export_hf(HFExportConfig(load=root, output=str(tmp_path / "hf")))
    hf, got = _hf_logits(out, _ids(NULL_VOCAB + 1))
    assert type(hf).__name__ == arch
    want = _megatron_logits(model, _ids(NULL_VOCAB + 1))[..., : NULL_VOCAB + 1]
    torch.testing.assert_close(got, want, atol=3e-5, rtol=1e-5)
