"""Train a GPT-2-style byte-level BPE tokenizer on local text files (no downloads).

Writes ``tokenizer.json`` + ``tokenizer_config.json`` (HuggingFaceTokenizer) and ``vocab.json``
+ ``merges.txt`` (GPT2BPETokenizer) into ``--output-dir``; EOD ``<|endoftext|>`` is id 0,
``<|pad|>`` id 1. Inputs: JSONL (``--json-keys``), CulturaX parquet, or plain text (one
document per line), optionally gzipped.

Example::

    python tools/train_tokenizer.py --input data/en.jsonl data/de.jsonl --json-keys text \\
        --vocab-size 32000 --output-dir tokenizers/bpe32k
    python tools/preprocess_data.py ... --tokenizer-type GPT2BPETokenizer \\
        --vocab-file tokenizers/bpe32k/vocab.json --merge-file tokenizers/bpe32k/merges.txt
    # or: --tokenizer-type HuggingFaceTokenizer --tokenizer-model tokenizers/bpe32k
"""

import argparse
import sys
import time
from typing import List

from megatron_prealign.cli.tool import tool_main

from megatron_prealign.data.readers import iter_documents
from megatron_prealign.tokenizer import build_tokenizer
from megatron_prealign.tokenizer.train import train_byte_level_bpe


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", nargs="+", required=True, help="Text/JSONL/parquet files.")
    p.add_argument("--json-keys", nargs="+", default=["text"], help="JSONL keys / parquet columns.")
    p.add_argument("--vocab-size", type=int, default=32000, help="Target vocabulary size.")
    p.add_argument("--min-frequency", type=int, default=2, help="Minimum pair count for a merge.")
    p.add_argument("--no-pad-token", action="store_true", help="Do not add <|pad|>.")
    p.add_argument("--max-documents", type=int, default=None, help="Train on at most this many documents.")
    p.add_argument("--output-dir", required=True, help="Directory for the tokenizer files.")
    args = p.parse_args(argv)
    smallest = 256 + 1 + (0 if args.no_pad_token else 1)
    if args.vocab_size < smallest:
        p.error(f"--vocab-size {args.vocab_size}: must be at least {smallest} (256 bytes + special tokens)")
    if args.min_frequency < 1:
        p.error(f"--min-frequency {args.min_frequency}: must be >= 1")
    if args.max_documents is not None and args.max_documents < 1:
        p.error(f"--max-documents {args.max_documents}: must be >= 1")
    return args


@tool_main("train_tokenizer.py")
def main(argv: List[str]) -> int:
    args = get_args(argv)
    start = time.time()
    n = 0

    def docs():
        nonlocal n
        for d in iter_documents(args.input, args.json_keys):
            if args.max_documents is not None and n >= args.max_documents:
                return
            n += 1
            if n % 100000 == 0:
                print(f"[train_tokenizer] {n} documents read, {time.time() - start:.0f} s", file=sys.stderr, flush=True)
            yield d

    paths = train_byte_level_bpe(
        docs(), args.output_dir, vocab_size=args.vocab_size,
        min_frequency=args.min_frequency, add_pad=not args.no_pad_token,
    )
    tok = build_tokenizer("GPT2BPETokenizer", vocab_file=paths["vocab_file"], merge_file=paths["merge_file"])
    print(
        f"[train_tokenizer] {n} documents, vocabulary {tok.vocab_size} (eod {tok.eod}, pad {tok.pad}) "
        f"in {time.time() - start:.1f} s -> {args.output_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
