"""GPU check of issue 10 (one GPU, under 8 minutes): the fast path serves both PreAlign stages.

Three parts, each printing one ``RESULT`` line:

1. ``equivalence``: a ~150M GPT (12 x 768, vocab 50k) built with the TransformerEngine spec and
   with the local spec, *the same weights* (TE's fused layer-norm names mapped onto the local
   ones), bf16. The alignment loss of one pre-alignment microbatch — words encoded alone as
   short causal sequences ``[num_words, max_word_len]`` (paper §3.1), hidden states of every
   level mean-pooled per word, SupCon over source words and their translations — and the LM
   loss of one batch must agree between the specs (relative difference below ``--tolerance``).
2. ``joint`` and ``prealign`` arms: ``pretrain_prealign.py`` end to end on synthetic data with
   ``--transformer-impl transformer_engine --bf16``: Joint = LM only; PreAlign = an alignment
   stage then LM steps. Tokens/s (LM iterations, from the log lines) and MFU, with the model
   FLOPs of Narayanan et al. (2021), ``72 L h^2 (1 + s/(6h) + V/(12 L h))`` per token
   (forward + backward, no recompute), against the GPU's dense bf16 peak (``--peak-tflops``,
   default by device name: H100/H200 989). The PreAlign arm's LM iterations must reach at least
   0.95 x the Joint arm's tokens/s (same kernels once the alignment stage is over).

Without CUDA only the CPU-safe parts run (synthetic data, command lines, FLOPs arithmetic) and
the script exits 2 with one line saying so. ``bench/gpu_check.sh`` wraps it with a time limit.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "GH200": 989.0}
TPS_RE = re.compile(r"iteration\s+(\d+)/\s*\d+ \| stage: (\S+) \|.*?tokens per second: ([0-9.]+)")


def flops_per_token(layers: int, hidden: int, seq: int, vocab: int) -> float:
    """Model FLOPs per trained token (forward + backward), Narayanan et al. (2021) eq. (3) / (B s)."""
    return 72.0 * layers * hidden ** 2 * (1.0 + seq / (6.0 * hidden) + vocab / (12.0 * layers * hidden))


def peak_tflops(name: str, override: Optional[float]) -> Optional[float]:
    if override:
        return override
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def write_data(root: str, vocab: int, words: int) -> Tuple[str, str, str]:
    from training_helpers import write_lm_dataset, write_table

    from megatron_prealign.tokenizer import build_tokenizer

    tok = build_tokenizer("NullTokenizer", vocab_size=vocab)
    write_lm_dataset(os.path.join(root, "en"), vocab, 4000, seed=1, low=0, high=vocab // 2)
    write_lm_dataset(os.path.join(root, "tgt"), vocab, 400, seed=2, low=vocab // 2, high=vocab)
    table = os.path.join(root, "table.jsonl")
    write_table(table, tok, words, offset=vocab // 2)
    return os.path.join(root, "en"), os.path.join(root, "tgt"), table


def arm_command(arm: str, a: argparse.Namespace, data: Tuple[str, str, str], save: str) -> List[str]:
    en, tgt, table = data
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           os.path.join(REPO, "pretrain_prealign.py"),
           "--num-layers", str(a.layers), "--hidden-size", str(a.hidden), "--num-attention-heads", str(a.heads),
           "--seq-length", str(a.seq), "--max-position-embeddings", str(a.seq),
           "--micro-batch-size", str(a.mbs), "--global-batch-size", str(a.gbs),
           "--lr", "3e-4", "--min-lr", "3e-5", "--lr-decay-style", "cosine", "--lr-warmup-iters", "5",
           "--bf16", "--transformer-impl", "transformer_engine", "--hidden-dropout", "0", "--attention-dropout", "0",
           "--tokenizer-type", "NullTokenizer", "--vocab-size", str(a.vocab),
           "--data-path", "99", en, "1", tgt, "--split", "998,1,1",
           "--train-iters", str(a.iters), "--log-interval", "1", "--eval-interval", "0", "--eval-iters", "0",
           "--num-workers", "2", "--save", save, "--save-interval", str(10 ** 6)]
    if arm == "joint":
        cmd += ["--prealign-mode", "none"]
    else:
        cmd += ["--prealign-mode", "init", "--alignment-table", table, "--prealign-iters", str(a.prealign_iters),
                "--prealign-words-per-batch", str(a.words)]
    return cmd


def run_arm(arm: str, cmd: List[str], timeout: float) -> Dict[str, float]:
    start = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    out = res.stdout + res.stderr
    if res.returncode != 0:
        tail = "\n".join(out.splitlines()[-15:])
        raise RuntimeError(f"{arm} arm failed (exit {res.returncode}):\n{tail}")
    rows = [(int(m.group(1)), m.group(2), float(m.group(3))) for m in TPS_RE.finditer(out)]
    lm = [tps for it, stage, tps in rows if stage == "lm" and tps > 0]
    align_ms = [it for it, stage, _ in rows if stage != "lm"]
    if len(lm) < 6:
        raise RuntimeError(f"{arm} arm: only {len(lm)} LM iterations logged")
    steady = lm[len(lm) // 3:]  # skip warm-up (autotuning, allocator)
    return {"tokens_per_s": statistics.median(steady), "lm_iters": len(lm), "align_iters": len(align_ms),
            "wall_s": time.time() - start}


def _map_te_to_local(te_state: Dict[str, "torch.Tensor"]) -> Dict[str, "torch.Tensor"]:
    """TE fuses the pre-attention and pre-MLP norms into the following linear layers."""
    out = {}
    for key, value in te_state.items():
        if key.endswith("_extra_state"):
            continue
        key = key.replace("self_attention.linear_qkv.layer_norm_", "input_layernorm.")
        key = key.replace("mlp.linear_fc1.layer_norm_", "pre_mlp_layernorm.")
        out[key] = value
    return out


def equivalence(a: argparse.Namespace) -> Dict[str, float]:
    """Same weights, TE spec vs local spec: per-level pooled features, alignment and LM loss."""
    import torch

    from megatron.core import parallel_state

    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model
    from megatron_prealign.model.supcon import supcon_terms
    from megatron_prealign.platform import initialize

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    initialize(seed=1234)
    base = dict(num_layers=a.layers, hidden_size=a.hidden, num_attention_heads=a.heads, vocab_size=a.vocab_padded,
                max_sequence_length=a.seq, hidden_dropout=0.0, attention_dropout=0.0, bf16=True)
    te = build_gpt_model(GPTModelConfig(**base, transformer_impl="transformer_engine")).eval()
    local = build_gpt_model(GPTModelConfig(**base, transformer_impl="local")).eval()
    missing, unexpected = local.load_state_dict(_map_te_to_local(te.state_dict()), strict=False)
    missing = [k for k in missing if not k.endswith("_extra_state")]
    if missing or unexpected:
        raise RuntimeError(f"weight mapping TE -> local incomplete: missing {missing[:4]}, unexpected {unexpected[:4]}")

    g = torch.Generator().manual_seed(0)
    words, max_len = a.words, 6
    lengths = torch.randint(1, max_len + 1, (2 * words,), generator=g)
    ids = torch.randint(0, a.vocab, (2 * words, max_len), generator=g)
    valid = torch.arange(max_len)[None, :] < lengths[:, None]
    labels = torch.arange(words).repeat(2)  # row i and row i + words: a word and its translation
    dev = torch.device("cuda")
    ids, valid, labels = ids.to(dev), valid.to(dev), labels.to(dev)
    pos = torch.arange(max_len, device=dev)[None, :].expand_as(ids)

    def levels(model) -> torch.Tensor:
        store = {}
        hooks = [layer.register_forward_hook(lambda m, i, o, n=n: store.__setitem__(n, o[0] if isinstance(o, tuple) else o))
                 for n, layer in enumerate(model.decoder.layers)]
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            emb = model.embedding(input_ids=ids, position_ids=pos)  # [s, b, h]
            model(ids, pos, attention_mask=None)
        for h in hooks:
            h.remove()
        feats = [emb] + [store[n] for n in range(len(store))]
        mask = valid.t().unsqueeze(-1).float()
        return torch.stack([(f.float() * mask).sum(0) / mask.sum(0) for f in feats])  # [levels, words, h]

    f_te, f_local = levels(te), levels(local)
    idx = torch.arange(2 * words, device=dev)
    loss_te, n = supcon_terms(torch.nn.functional.normalize(f_te, dim=-1), labels, idx,
                              torch.nn.functional.normalize(f_te, dim=-1), labels, 0.1)
    loss_local, _ = supcon_terms(torch.nn.functional.normalize(f_local, dim=-1), labels, idx,
                                 torch.nn.functional.normalize(f_local, dim=-1), labels, 0.1)
    align_te, align_local = float(loss_te.sum() / n), float(loss_local.sum() / n)

    lm_ids = torch.randint(0, a.vocab, (a.mbs, a.seq), generator=g).to(dev)
    lm_pos = torch.arange(a.seq, device=dev)[None, :].expand_as(lm_ids)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        lm_te = float(te(lm_ids[:, :-1], lm_pos[:, :-1], None, labels=lm_ids[:, 1:]).float().mean())
        lm_local = float(local(lm_ids[:, :-1], lm_pos[:, :-1], None, labels=lm_ids[:, 1:]).float().mean())
    cos = torch.nn.functional.cosine_similarity(f_te, f_local, dim=-1).min().item()
    parallel_state.destroy_model_parallel()
    return {"align_te": align_te, "align_local": align_local,
            "align_rel_diff": abs(align_te - align_local) / max(1e-6, abs(align_local)),
            "lm_te": lm_te, "lm_local": lm_local, "lm_rel_diff": abs(lm_te - lm_local) / max(1e-6, abs(lm_local)),
            "min_feature_cosine": cos}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in dict(layers=12, hidden=768, heads=12, seq=1024, vocab=50000, mbs=8, gbs=32).items():
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--iters", type=int, default=40, help="iterations per arm")
    p.add_argument("--prealign-iters", type=int, default=10)
    p.add_argument("--words", type=int, default=256, help="words per alignment microbatch")
    p.add_argument("--tolerance", type=float, default=0.02, help="relative TE vs local loss difference (bf16)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the GPU")
    p.add_argument("--arm-timeout", type=float, default=180)
    p.add_argument("--workdir", default=None)
    a = p.parse_args()
    from megatron_prealign.cli.pretrain import padded_vocab_size

    a.vocab_padded = padded_vocab_size(a.vocab + 1, 128, 1)  # NullTokenizer: vocab + EOD
    fpt = flops_per_token(a.layers, a.hidden, a.seq, a.vocab_padded)
    n_params = 12 * a.layers * a.hidden ** 2 + a.vocab_padded * a.hidden + a.seq * a.hidden
    print(f"model: {a.layers} x {a.hidden}, ~{n_params / 1e6:.0f}M parameters, {fpt / 1e9:.2f} GFLOP per token")
    work = a.workdir or tempfile.mkdtemp(prefix="gpu_check_")
    os.makedirs(work, exist_ok=True)
    data = write_data(work, a.vocab, a.words * 2)
    cmds = {arm: arm_command(arm, a, data, os.path.join(work, arm)) for arm in ("joint", "prealign")}
    print(f"data and command lines ready in {work}")
    from megatron_prealign.cli.pretrain import build_parser, validate_args

    for arm, cmd in cmds.items():  # the flags must pass our validation before any GPU time is spent
        script = cmd.index(os.path.join(REPO, "pretrain_prealign.py"))
        try:
            validate_args(build_parser().parse_args(cmd[script + 1:]), world_size=1)
            print(f"{arm} arm flags: valid")
        except ValueError as exc:
            print(f"{arm} arm flags: REJECTED: {exc}")

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: needs CUDA (torch.cuda.is_available() is False); CPU-safe parts done, GPU parts not run")
        return 2
    name = torch.cuda.get_device_name(0)
    peak = peak_tflops(name, a.peak_tflops)
    ok = True
    try:
        eq = equivalence(a)
        good = eq["align_rel_diff"] <= a.tolerance and eq["lm_rel_diff"] <= a.tolerance
        ok &= good
        print(f"RESULT equivalence: align loss TE {eq['align_te']:.5f} local {eq['align_local']:.5f} "
              f"(rel diff {eq['align_rel_diff']:.2e}); LM loss TE {eq['lm_te']:.5f} local {eq['lm_local']:.5f} "
              f"(rel diff {eq['lm_rel_diff']:.2e}); min per-word feature cosine {eq['min_feature_cosine']:.4f} "
              f"-> {'PASS' if good else 'FAIL'} (tolerance {a.tolerance})")
    except Exception as exc:  # report and go on to the arms
        ok = False
        print(f"RESULT equivalence: ERROR {type(exc).__name__}: {exc}")
    arms = {}
    for arm, cmd in cmds.items():
        try:
            arms[arm] = r = run_arm(arm, cmd, a.arm_timeout)
            mfu = r["tokens_per_s"] * fpt / (peak * 1e12) if peak else float("nan")
            print(f"RESULT {arm}: {r['tokens_per_s']:.0f} tokens/s on LM iterations ({r['lm_iters']} LM, "
                  f"{r['align_iters']} alignment iterations), MFU {100 * mfu:.1f}% of {peak} TFLOPS ({name}), "
                  f"wall {r['wall_s']:.0f} s")
        except Exception as exc:
            ok = False
            print(f"RESULT {arm}: ERROR {exc}")
    if len(arms) == 2:
        ratio = arms["prealign"]["tokens_per_s"] / arms["joint"]["tokens_per_s"]
        good = ratio >= 0.95
        ok &= good
        print(f"RESULT prealign/joint LM tokens/s ratio: {ratio:.3f} -> {'PASS' if good else 'FAIL'} (>= 0.95)")
    print("gpu_check: PASS" if ok else "gpu_check: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
