"""Cost of codeswitching during binarization: ``preprocess`` with vs without ``--codeswitch``.

Generates a synthetic Zipf-distributed English-like corpus (JSONL), trains a byte-level BPE on
it, builds an alignment table for its most frequent words (two target "languages" whose
translations are other vocabulary words, so lengths change), then binarizes the same input with
the same workers with and without the codeswitcher, alternating, several times. Prints docs/s,
tokens/s and the ratios of median wall and CPU times (goal: <= 1.05x). CPU time (main process
plus the pool's workers) is the number to trust on a machine shared with other jobs.

Commands::

    python bench/bench_preprocess.py                       # 20k documents, 2 workers, 3 repeats
    python bench/bench_preprocess.py --docs 100000 --workers 8 --repeats 5 --keep /tmp/bench

Skips with a message when the codeswitcher (``megatron_prealign.data.codeswitch`` and its C++
engine) or the alignment table module is not available.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.path.pardir)))


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main_cpu_seconds() -> float:
    """User + system CPU time of this process alone (reader, writer, codeswitch threads)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def make_corpus(path: str, docs: int, seed: int) -> int:
    """Write ``docs`` JSONL documents of Zipf-distributed pseudo-words; returns bytes written."""
    rng = np.random.default_rng(seed)
    syllables = ["ka", "to", "ri", "ne", "mo", "sa", "lu", "pe", "di", "go", "an", "er", "in", "th", "st"]
    vocab = []
    for i in range(6000):
        n = 1 + int(rng.integers(1, 4))
        vocab.append("".join(syllables[int(j)] for j in rng.integers(0, len(syllables), size=n)))
    ranks = np.arange(1, len(vocab) + 1)
    probs = (1.0 / ranks) / np.sum(1.0 / ranks)
    size = 0
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(docs):
            n = int(rng.integers(50, 400))
            words = rng.choice(len(vocab), size=n, p=probs)
            text = " ".join(vocab[int(w)] for w in words).capitalize() + "."
            line = json.dumps({"text": text}) + "\n"
            f.write(line)
            size += len(line)
    return size


def build_table(tokenizer, corpus: str, n_words: int, path: str):
    """An alignment table for the ``n_words`` most frequent words (languages ``xa``, ``xb``)."""
    from collections import Counter

    from megatron_prealign.alignment import AlignmentEntry, AlignmentTable, Translation

    counts: Counter = Counter()
    with open(corpus, encoding="utf-8") as f:
        for i, line in enumerate(f):
            counts.update(json.loads(line)["text"].lower().rstrip(".").split())
            if i >= 2000:
                break
    words = [w for w, _ in counts.most_common(n_words)]
    entries = []
    for i, word in enumerate(words):
        a, b = words[(i + 7) % len(words)], words[(i + 13) % len(words)] + words[(i + 1) % len(words)]
        entries.append(
            AlignmentEntry(
                word, counts[word], tokenizer.encode_word(word),
                {"xa": [Translation(a, tokenizer.encode_word(a))], "xb": [Translation(b, tokenizer.encode_word(b))]},
            )
        )
    table = AlignmentTable(["xa", "xb"], entries, tokenizer.vocab_size, tokenizer.describe())
    table.save(path)
    return AlignmentTable.load(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in dict(docs=20000, workers=2, repeats=3, vocab_size=8000, table_words=3000, ratio=0.05).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    parser.add_argument("--keep", type=str, default=None, help="work directory to keep (default: a temporary one)")
    args = parser.parse_args()

    try:
        from megatron_prealign.data.codeswitch import CodeswitchConfig, Codeswitcher
        import megatron_prealign.alignment  # noqa: F401
    except ImportError as err:
        print(f"SKIP: the codeswitcher is not available ({err})")
        return 0
    from megatron_prealign.data.preprocess_data import PreprocessConfig, preprocess
    from megatron_prealign.data.readers import ReaderConfig
    from megatron_prealign.tokenizer import build_tokenizer, train_byte_level_bpe

    work = args.keep or tempfile.mkdtemp(prefix="bench_preprocess_")
    os.makedirs(work, exist_ok=True)
    try:
        corpus = os.path.join(work, "corpus.jsonl")
        t0 = time.time()
        nbytes = make_corpus(corpus, args.docs, seed=0)
        sample = []
        with open(corpus, encoding="utf-8") as f:
            for i, line in enumerate(f):
                sample.append(json.loads(line)["text"])
                if i >= 3000:
                    break
        train_byte_level_bpe(sample, os.path.join(work, "tok"), vocab_size=args.vocab_size)
        factory = functools.partial(build_tokenizer, "HuggingFaceTokenizer", tokenizer_model=os.path.join(work, "tok"))
        tokenizer = factory()
        table = build_table(tokenizer, corpus, args.table_words, os.path.join(work, "table.jsonl"))
        print(f"setup: {args.docs} docs, {nbytes / 2**20:.1f} MB, vocab {tokenizer.vocab_size}, "
              f"table {len(table.entries)} words, {time.time() - t0:.1f}s")

        def once(with_cs: bool):
            cs = None
            if with_cs:
                cs = Codeswitcher(
                    table, tokenizer.word_start_mask(),
                    CodeswitchConfig(ratio=args.ratio, mode="input-only", seed=1234),
                    special_ids=tokenizer.special_ids,
                )
            out = os.path.join(work, "cs" if with_cs else "plain")
            cpu0, main0 = cpu_seconds(), main_cpu_seconds()
            start = time.perf_counter()
            stats = preprocess(
                [corpus], factory,
                PreprocessConfig(output_prefix=out, append_eod=True, workers=args.workers, log_interval=0),
                ReaderConfig(), codeswitcher=cs,
            )
            return time.perf_counter() - start, cpu_seconds() - cpu0, main_cpu_seconds() - main0, stats

        times = {False: [], True: []}
        cpus = {False: [], True: []}
        mains = {False: [], True: []}
        cs_seconds = []
        last = {}
        once(False)  # warm-up (page cache, tokenizer load)
        for r in range(args.repeats):
            for with_cs in ((False, True) if r % 2 == 0 else (True, False)):  # ABBA against drift
                elapsed, cpu, main_cpu, stats = once(with_cs)
                times[with_cs].append(elapsed)
                cpus[with_cs].append(cpu)
                mains[with_cs].append(main_cpu)
                last[with_cs] = stats
                if with_cs:
                    cs_seconds.append(stats.codeswitch_s)
        for with_cs in (False, True):
            med = statistics.median(times[with_cs])
            st = last[with_cs]
            print(
                f"{'with codeswitch   ' if with_cs else 'without codeswitch'}: wall median {med:.2f}s "
                f"(runs {', '.join(f'{t:.2f}' for t in times[with_cs])}), {st.records / med:.0f} docs/s, "
                f"{st.total_tokens / med / 1e6:.2f}M tokens/s, {nbytes / med / 2**20:.2f} MB/s; "
                f"CPU median {statistics.median(cpus[with_cs]):.2f}s (main + workers), "
                f"main process {statistics.median(mains[with_cs]):.2f}s"
            )
        cs_share = [st_cs / t for st_cs, t in zip(cs_seconds, times[True])]
        print(f"time inside the codeswitcher (main process): median {statistics.median(cs_seconds):.3f}s "
              f"= {100 * statistics.median(cs_share):.2f}% of the codeswitched runs' wall time")
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        masks = IndexedDataset(os.path.join(work, "cs_text_document_lossmask"))
        total = int(masks.sequence_lengths.sum())
        zeros = total - int(sum(int(masks[i].sum()) for i in range(len(masks))))
        print(f"masked tokens: {zeros} of {total} ({100 * zeros / total:.2f}%) at ratio {args.ratio}")
        ratio = statistics.median(times[True]) / statistics.median(times[False])
        cpu_ratio = statistics.median(cpus[True]) / statistics.median(cpus[False])
        best = min(times[True]) / min(times[False])
        print(f"ratio with/without codeswitch: wall {ratio:.3f}x (best-of-{args.repeats} {best:.3f}x), "
              f"CPU {cpu_ratio:.3f}x (goal <= 1.05x, workers={args.workers}; timings on a machine shared "
              f"with other jobs are noisy: compare the spread of the runs)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
