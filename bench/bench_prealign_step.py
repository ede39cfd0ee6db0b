"""Cost of a pre-alignment step relative to an LM step of the same token count, per words-per-batch.

For each ``--words-per-batch`` W the script draws W random source words, each with 1-3
translations, 1-4 subwords per word (a fixed seed), builds the pre-alignment microbatch the
library builds for them, and times one forward + backward through Megatron's schedule
(``get_forward_backward_func``) with :class:`megatron_prealign.model.prealign.PreAlignForwardStep`
aligning every level (embedding, each layer, output embedding). The baseline, in the same process
on the same model, is an LM step of ``--seq-length`` rows holding the same number of tokens
(the words' real subword count, rounded to whole rows). Kinds alternate over the repeats, so load
from other processes hits both alike; medians are reported. Goal (issue 10): ratio <= 1.2x in
process CPU time at every W from 256 to 2048.

The script runs on both microbatch layouts: the current one (one word per row, ``[words,
max_word_len]``, plain causal attention) and the earlier one (words packed into ``--seq-length``
rows with a block-diagonal mask; detected by ``pack_words``), so before/after figures come from
the same script. Run::

    nice -n 10 python bench/bench_prealign_step.py --words-per-batch 256 512 1024 2048 --seq-length 256
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words-per-batch", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--seq-length", type=int, default=256, help="LM sequence length (and max word length)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=16000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; with 1, process CPU time is robust to other load")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29731")
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from megatron_prealign.model import word_batches as wb
    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model
    from megatron_prealign.model.prealign import PreAlignForwardStep, PreAlignLossConfig
    from megatron_prealign.platform import device, initialize

    initialize(seed=0)
    seq = args.seq_length
    cfg = GPTModelConfig(num_layers=args.layers, hidden_size=args.hidden, num_attention_heads=args.heads,
                         vocab_size=args.vocab, max_sequence_length=seq)
    model = build_gpt_model(cfg)
    dev = device()
    packed_layout = hasattr(wb, "pack_words")
    layout = "packed rows + block-diagonal mask" if packed_layout else "one word per row, causal"
    print(f"model: {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}; LM rows of {seq} tokens; "
          f"device {dev}, torch threads {torch.get_num_threads()}, {args.repeats} repeats; "
          f"alignment layout: {layout}; levels: all {args.layers + 2}")

    def time_once(batch, step, seq_length, mbs):
        model.zero_grad()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        get_forward_backward_func()(forward_step_func=step, data_iterator=iter([batch]), model=[model],
                                    num_microbatches=1, seq_length=seq_length, micro_batch_size=mbs,
                                    forward_only=False)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - cpu_start

    rows_out = []
    for words_per_batch in args.words_per_batch:
        gen = torch.Generator().manual_seed(words_per_batch)
        words, labels = [], []
        for group in range(words_per_batch):
            for _ in range(1 + int(torch.randint(1, 4, (1,), generator=gen))):  # source + 1-3 translations
                n = int(torch.randint(1, 5, (1,), generator=gen))
                words.append(torch.randint(0, args.vocab, (n,), generator=gen).tolist())
                labels.append(group)
        real_tokens = sum(len(w) for w in words)
        if packed_layout:
            rows = math.ceil(real_tokens / seq * 1.05) + 1  # room for first-fit fragmentation
            align = wb.pack_words(words, labels, rows, seq, max_words=len(words))
            assert align["num_skipped_words"] == 0
            align_shape = (rows, seq)
        else:
            align = wb.word_rows(words, labels)
            align_shape = tuple(align["tokens"].shape)
        lm_rows = max(1, round(real_tokens / seq))
        stream = torch.randint(0, args.vocab, (lm_rows, seq + 1), generator=gen)
        lm = {
            "kind": "lm",
            "tokens": stream[:, :-1],
            "labels": stream[:, 1:],
            "loss_mask": torch.ones(lm_rows, seq),
            "position_ids": torch.arange(seq).expand(lm_rows, seq),
            "attention_mask": torch.triu(torch.ones(1, 1, seq, seq, dtype=torch.bool), 1),
        }
        kinds = {
            "lm": (lm, PreAlignForwardStep(PreAlignLossConfig(), num_microbatches=1, num_align_microbatches=0),
                   seq, lm_rows),
            "align": (align, PreAlignForwardStep(PreAlignLossConfig(), num_microbatches=1, num_align_microbatches=1),
                      align_shape[1], align_shape[0]),
        }
        for kind in kinds:  # warm-up
            time_once(*kinds[kind])
        samples = {kind: [] for kind in kinds}
        for _ in range(args.repeats):
            for kind in kinds:
                samples[kind].append(time_once(*kinds[kind]))
        med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in samples.items()}
        # Per token, so that rounding the LM step to whole rows does not bias the ratio.
        lm_tokens = lm_rows * seq
        ratio_wall = (med["align"][0] / real_tokens) / (med["lm"][0] / lm_tokens)
        ratio_cpu = (med["align"][1] / real_tokens) / (med["lm"][1] / lm_tokens)
        rows_out.append((words_per_batch, len(words), real_tokens, align_shape, lm_rows, med, ratio_cpu, ratio_wall))
        print(f"W={words_per_batch}: {len(words)} words, {real_tokens} tokens, alignment microbatch "
              f"{align_shape[0]}x{align_shape[1]}, LM {lm_rows}x{seq}: LM CPU {med['lm'][1] * 1e3:.0f} ms, "
              f"alignment CPU {med['align'][1] * 1e3:.0f} ms", flush=True)

    print()
    print("| words/batch | words | tokens | alignment mb | LM mb | LM CPU ms | align CPU ms | ratio CPU | ratio wall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for w, n, t, shape, lm_rows, med, rc, rw in rows_out:
        print(f"| {w} | {n} | {t} | {shape[0]}x{shape[1]} | {lm_rows}x{seq} | {med['lm'][1] * 1e3:.0f} | "
              f"{med['align'][1] * 1e3:.0f} | {rc:.2f}x | {rw:.2f}x |")
    print("ratio = (alignment time / its tokens) / (LM time / its tokens), medians; goal <= 1.2x (CPU)")


if __name__ == "__main__":
    main()
