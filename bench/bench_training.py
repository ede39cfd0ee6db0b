"""Step-time benchmarks of the training loop, each against a baseline measured in the same run.

1. LM stage: our step (``MaskedGPTDataset`` reading text + ``_lossmask``, the PreAlign forward
   step, ``training.loop.train_step``) vs plain Megatron-Core GPT (megatron-core's
   ``GPTDataset`` on the same text, a pretrain_gpt.py-style forward step and loss, the same
   DDP/optimizer calls). Goal: ratio <= 1.02.
2. Pre-alignment step (one packed alignment microbatch, contrastive loss at every level) vs an LM
   step of the same token count (one LM microbatch). Goal: ratio <= 1.5.

Both sides share one model and optimizer and run in alternating blocks, so drift of the machine
(other jobs, thermal) hits both equally; the medians of per-step times are compared. On CPU
the primary figure is process CPU time with one torch thread (wall time on a shared 2-core
machine measures the neighbours); on GPU it is wall time with synchronisation.

Usage (single process; on a GPU machine it uses the GPU)::

    python bench/bench_training.py                       # default tiny-but-real sizes
    python bench/bench_training.py --hidden-size 512 --num-layers 4 --seq-length 512 --rounds 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from functools import partial

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def _write_data(root: str, vocab: int, num_docs: int) -> str:
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    prefix = os.path.join(root, "en_cs")
    rng = np.random.default_rng(0)
    text = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    mask = IndexedDatasetBuilder(prefix + "_lossmask.bin", dtype=np.uint8)
    for _ in range(num_docs):
        n = int(rng.integers(100, 1500))
        ids = rng.integers(0, vocab, size=n).astype(np.uint16)
        ids[-1] = vocab  # EOD
        text.add_document(ids, [n])
        m = (rng.random(n) > 0.05).astype(np.uint8)  # ~5% codeswitched tokens
        mask.add_document(m, [n])
    text.finalize(prefix + ".idx")
    mask.finalize(prefix + "_lossmask.idx")
    return prefix


def _write_table(path: str, tokenizer, num_words: int, vocab: int) -> None:
    from megatron_prealign.alignment import AlignmentEntry, AlignmentTable, Translation

    rng = np.random.default_rng(1)
    entries = []
    for i in range(num_words):
        src = [int(x) for x in rng.integers(0, vocab // 2, size=int(rng.integers(1, 4)))]
        tgt = [int(x) for x in rng.integers(vocab // 2, vocab, size=int(rng.integers(1, 4)))]
        entries.append(AlignmentEntry(word=f"w{i}", count=1, ids=src, translations={"xx": [Translation(f"t{i}", tgt)]}))
    AlignmentTable(languages=["xx"], entries=entries, vocab_size=tokenizer.vocab_size,
                   tokenizer=tokenizer.describe()).save(path)


def _plain_forward_step(data_iterator, model, dev):
    """pretrain_gpt.py's forward step: Megatron-Core GPT, masked token-mean loss; no PreAlign code."""
    batch = {k: v.to(dev) for k, v in next(data_iterator).items()}
    output = model(batch["tokens"], batch["position_ids"], batch["attention_mask"], labels=batch["labels"])
    loss_mask = batch["loss_mask"]

    def loss_func(output_tensor):
        losses = output_tensor.float().view(-1)
        mask = loss_mask.view(-1).float()
        loss = torch.sum(losses * mask)
        num_tokens = mask.sum().to(torch.int)
        return loss, num_tokens, {"lm loss": torch.cat([loss.detach().view(1), mask.sum().view(1)])}

    return output, loss_func


def _plain_step(model, optimizer, scheduler, data_iter, num_microbatches, seq, mbs, dev):
    from megatron.core.distributed import finalize_model_grads
    from megatron.core.pipeline_parallel import get_forward_backward_func

    for chunk in model:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    get_forward_backward_func()(forward_step_func=partial(_plain_forward_step, dev=dev), data_iterator=data_iter,
                                model=model, num_microbatches=num_microbatches, seq_length=seq,
                                micro_batch_size=mbs, forward_only=False)
    finalize_model_grads(model)
    optimizer.step()
    scheduler.step(increment=1)


def _timed(fn) -> tuple:
    """(wall seconds, process CPU seconds) of one call."""
    from megatron_prealign.platform import device

    cuda = device().type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - w0, time.process_time() - c0


def _compare(name: str, baseline, candidate, rounds: int, per_block: int, warmup: int, goal: float,
             use_cpu_time: bool) -> float:
    """Alternate blocks of both sides; compare medians of per-step times.

    On a CPU machine shared with other jobs, wall time mostly measures the other jobs: there the
    primary figure is process CPU time (single-threaded torch, so it is the step's compute).
    """
    for _ in range(warmup):
        baseline()
        candidate()
    times = {"base": [], "cand": []}
    for r in range(rounds):
        order = (("base", baseline), ("cand", candidate)) if r % 2 == 0 else (("cand", candidate), ("base", baseline))
        for key, fn in order:
            times[key].extend(_timed(fn) for _ in range(per_block))
    med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for k, v in times.items()}
    wall_ratio = med["cand"][0] / med["base"][0]
    cpu_ratio = med["cand"][1] / med["base"][1]
    ratio = cpu_ratio if use_cpu_time else wall_ratio
    verdict = "OK" if ratio <= goal else "ABOVE GOAL"
    print(f"{name}:\n  baseline {1e3 * med['base'][0]:.1f} ms wall / {1e3 * med['base'][1]:.1f} ms CPU per step, "
          f"candidate {1e3 * med['cand'][0]:.1f} ms wall / {1e3 * med['cand'][1]:.1f} ms CPU (medians of "
          f"{len(times['base'])} steps each)\n  ratio {ratio:.3f} ({'CPU time' if use_cpu_time else 'wall'}; "
          f"goal <= {goal}) {verdict}   [wall ratio {wall_ratio:.3f}, CPU ratio {cpu_ratio:.3f}]", flush=True)
    return ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in dict(num_layers=2, hidden_size=256, num_attention_heads=4, seq_length=256, micro_batch_size=4,
                              num_microbatches=2, vocab_size=4000, rounds=6, per_block=5, warmup=3).items():
        p.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU (1: CPU time = compute)")
    p.add_argument("--words-per-microbatch", type=int, default=None,
                   help="default: enough ~4-token word pairs to fill one microbatch")
    args = p.parse_args()

    from megatron.core import parallel_state
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    from megatron_prealign.model.gpt import GPTModelConfig
    from megatron_prealign.model.prealign import PreAlignLossConfig
    from megatron_prealign.platform import device, initialize
    from megatron_prealign.tokenizer import build_tokenizer
    from megatron_prealign.training.alignment import build_alignment_stream
    from megatron_prealign.training.config import DataConfig, OptimConfig
    from megatron_prealign.training.data import build_lm_datasets, build_lm_iterator
    from megatron_prealign.training.loop import build_model, build_optimizer_and_scheduler, train_step
    from megatron_prealign.training.stages import Stage

    os.environ.setdefault("MASTER_PORT", "29517")
    dev = initialize(seed=1)
    use_cpu_time = dev.type == "cpu"
    if use_cpu_time:
        torch.set_num_threads(args.threads)
    seq, mbs, nmb = args.seq_length, args.micro_batch_size, args.num_microbatches
    tok = build_tokenizer("NullTokenizer", vocab_size=args.vocab_size)
    total_steps = 2 * (args.warmup + args.rounds * args.per_block) + 8
    with tempfile.TemporaryDirectory() as root:
        prefix = _write_data(root, args.vocab_size, 400)
        table = os.path.join(root, "table.jsonl")
        _write_table(table, tok, 5000, args.vocab_size)
        samples = total_steps * nmb * mbs
        data_cfg = DataConfig(blend=([prefix], None), split="100,0,0", seq_length=seq,
                              data_cache_path=os.path.join(root, "cache"))
        ours_ds, _, _ = build_lm_datasets(data_cfg, tok, 1, [samples, 0, 0])
        plain_cfg = GPTDatasetConfig(random_seed=1, sequence_length=seq, blend=([prefix], None), split="100,0,0",
                                     path_to_cache=os.path.join(root, "cache_plain"), tokenizer=tok,
                                     reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
                                     create_attention_mask=True)
        plain_ds, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [samples, 0, 0], lambda: True, plain_cfg).build()
        ours_it = build_lm_iterator(ours_ds, 0, mbs, 0, 1)
        plain_it = build_lm_iterator(plain_ds, 0, mbs, 0, 1)

        cfg = GPTModelConfig(num_layers=args.num_layers, hidden_size=args.hidden_size,
                             num_attention_heads=args.num_attention_heads, vocab_size=args.vocab_size + 96,
                             max_sequence_length=seq)
        model = build_model(cfg)
        opt, sched = build_optimizer_and_scheduler(OptimConfig(lr=1e-4), model, 10 * total_steps, cfg.bf16)
        print(f"device {dev}, model: {args.num_layers} layers, hidden {args.hidden_size}, seq {seq}, "
              f"micro batch {mbs}, {nmb} microbatches/step, vocab {cfg.vocab_size}", flush=True)

        lm = Stage("lm", 1.0, 0.0)
        _compare(
            "LM step, MaskedGPTDataset + PreAlign loop vs plain Megatron-Core GPTDataset + pretrain_gpt step",
            lambda: _plain_step(model, opt, sched, plain_it, nmb, seq, mbs, dev),
            lambda: train_step(lm, model, opt, sched, ours_it, nmb, seq, mbs),
            args.rounds, args.per_block, args.warmup, 1.02, use_cpu_time,
        )

        words = args.words_per_microbatch or max(2, (seq * mbs) // 5)
        stream = build_alignment_stream(table, tok, cfg.vocab_size, words, mbs, seq, 1, None, 0, 1)
        probe = stream.probe()
        rows, width = probe["tokens"].shape
        print(f"pre-alignment microbatch: {words} source words, {rows} words x {width} tokens "
              f"({int(probe['lengths'].sum())} real tokens; LM microbatch {mbs}x{seq})", flush=True)
        align = Stage("prealign", 0.0, 1.0)
        loss_cfg = PreAlignLossConfig()
        _compare(
            "pre-alignment step (1 microbatch, all levels) vs LM step (1 microbatch); "
            "same-token-count ratios: bench/bench_prealign_step.py",
            lambda: train_step(lm, model, opt, sched, ours_it, 1, seq, mbs),
            lambda: train_step(align, model, opt, sched, None, 0, seq, mbs, stream, 1, loss_cfg),
            args.rounds, args.per_block, args.warmup, 1.5, use_cpu_time,
        )
    parallel_state.destroy_model_parallel()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
