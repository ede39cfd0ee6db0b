"""Binarize a corpus for Megatron pretraining, optionally with PreAlign's input-only codeswitching.

Megatron-LM's ``tools/preprocess_data.py`` with the same flags and output names
(``{output_prefix}_{key}_document.bin/.idx``, token dtype ``DType.optimal_dtype(vocab_size)``),
readable by megatron-core's ``IndexedDataset``/``GPTDataset``. Additions: several inputs, globs
and directories; CulturaX parquet shards and plain text besides JSONL[.gz]; ``--max-tokens``;
``--skip-malformed``; and codeswitching in the same pass (``--codeswitch``), which also writes a
uint8 loss mask ``{output_prefix}_{key}_document_lossmask`` for ``MaskedGPTDataset``.

Commands::

    # Megatron-LM style: JSONL with a "text" field, GPT-2 BPE
    python tools/preprocess_data.py --input corpus.jsonl --output-prefix data/en \\
        --tokenizer-type GPT2BPETokenizer --vocab-file gpt2-vocab.json --merge-file gpt2-merges.txt \\
        --append-eod --workers 8
    # -> data/en_text_document.bin/.idx

    # CulturaX parquet shards, streamed by row groups, stopping at a 1B-token budget
    python tools/preprocess_data.py --input 'culturax/de/de_part_*.parquet' --output-prefix data/de \\
        --tokenizer-type HuggingFaceTokenizer --tokenizer-model tokenizer.json \\
        --append-eod --workers 16 --max-tokens 1000000000

    # English with input-only codeswitching into German and Chinese (PreAlign, 5%)
    python tools/preprocess_data.py --input 'culturax/en/*.parquet' --output-prefix data/en_cs \\
        --tokenizer-type HuggingFaceTokenizer --tokenizer-model tokenizer.json --append-eod --workers 16 \\
        --codeswitch --alignment-table table.jsonl --codeswitch-ratio 0.05 \\
        --codeswitch-mode input-only --codeswitch-languages de,zh --seed 1234
    # -> data/en_cs_text_document.bin/.idx and data/en_cs_text_document_lossmask.bin/.idx

Semantics (details in ``megatron_prealign/data/preprocess_data.py``): the output order is the
input order and does not depend on ``--workers``; codeswitching runs in threads of the main
process (``--codeswitch-threads``) with the document's index in the output as ``doc_index``, so
it equals codeswitching the binarized corpus afterwards; empty documents are skipped and counted;
``--max-tokens`` writes whole documents until the budget is reached (the last document is kept
whole, so the total exceeds the budget by less than one document); outputs are written under
temporary names and renamed on success, so an error or Ctrl-C leaves no partial dataset.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import warnings
from typing import List

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.path.pardir)))

from megatron_prealign.data.readers import FORMATS, TEXT_UNITS, InputError, ReaderConfig  # noqa: E402
from megatron_prealign.cli.tokenizer import add_tokenizer_args, build_tokenizer_from_args  # noqa: E402
from megatron_prealign.cli.tool import tool_main  # noqa: E402

PROG = "preprocess_data.py"


def get_args(argv=None) -> argparse.Namespace:
    """Parse the command line (Megatron-LM's flags plus PreAlign's)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_tokenizer_args(parser)
    group = parser.add_argument_group(title="input data")
    group.add_argument("--input", type=str, nargs="+", required=True,
                       help="Input files, globs or directories: .jsonl/.json/.ndjson[.gz], .parquet, .txt[.gz].")
    group.add_argument("--json-keys", nargs="+", default=["text"],
                       help="Space separated keys (JSONL) or columns (parquet) to binarize, one dataset each.")
    group.add_argument("--input-format", choices=("auto",) + FORMATS, default="auto",
                       help="Format of every input; auto: from the file extension.")
    group.add_argument("--text-unit", choices=TEXT_UNITS, default="line",
                       help="Plain text: one document per line, per blank-line separated paragraph, or per file.")
    group.add_argument("--skip-malformed", action="store_true",
                       help="Count and skip malformed records (bad JSON/UTF-8, missing key) instead of stopping.")
    # Megatron-LM flags accepted for drop-in compatibility (see the checks below).
    group.add_argument("--split-sentences", action="store_true", help=argparse.SUPPRESS)
    group.add_argument("--keep-newlines", action="store_true", help=argparse.SUPPRESS)
    group.add_argument("--lang", type=str, default="english", help=argparse.SUPPRESS)
    group.add_argument("--partitions", type=int, default=1, help=argparse.SUPPRESS)
    group.add_argument("--keep-sequential-samples", action="store_true", help=argparse.SUPPRESS)
    group = parser.add_argument_group(title="tokenization process")
    group.add_argument("--append-eod", action="store_true",
                       help="Append an <eod> token to the end of a document.")
    group.add_argument("--max-tokens", type=int, default=None,
                       help="Stop once this many tokens are written; the document reaching it is kept whole.")
    group = parser.add_argument_group(title="output data")
    group.add_argument("--output-prefix", type=str, required=True,
                       help="Path to binary output file without suffix.")
    group = parser.add_argument_group(title="runtime")
    group.add_argument("--workers", type=int, default=1,
                       help="Number of tokenizing worker processes (the output does not depend on it).")
    group.add_argument("--chunk-size", type=int, default=64,
                       help="Documents per task handed to a worker.")
    group.add_argument("--log-interval", type=int, default=1000,
                       help="Interval (documents) between progress updates.")
    group = parser.add_argument_group(title="codeswitching (PreAlign)")
    group.add_argument("--codeswitch", action="store_true",
                       help="Codeswitch while binarizing and write a {prefix}_lossmask dataset.")
    group.add_argument("--alignment-table", "--prealign-table", type=str, default=None,
                       help="Alignment table (JSONL) from tools/build_alignment_table.py.")
    group.add_argument("--codeswitch-ratio", type=float, default=0.05,
                       help="Probability that a word with a translation is replaced (paper: 0.05).")
    group.add_argument("--codeswitch-mode", choices=("input-only", "vanilla"), default="input-only",
                       help="input-only: no loss on substituted subwords (paper Eq. 6); vanilla: Eq. 5.")
    group.add_argument("--codeswitch-languages", type=str, default=None,
                       help="Comma separated target languages (default: all of the table).")
    group.add_argument("--seed", type=int, default=1234, help="Codeswitching seed.")
    group.add_argument("--codeswitch-threads", type=int, default=0,
                       help="Threads codeswitching in the main process (0: max(1, min(8, workers // 4))).")
    args = parser.parse_args(argv)
    if args.split_sentences:
        parser.error("--split-sentences is not supported: documents are binarized whole (document level)")
    if args.partitions != 1:
        parser.error("--partitions is not needed: pass several --input files or a glob; the order is always kept")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.codeswitch_threads < 0:
        parser.error(f"--codeswitch-threads must be >= 0, got {args.codeswitch_threads}")
    if args.chunk_size < 1:
        parser.error(f"--chunk-size must be >= 1, got {args.chunk_size}")
    if args.max_tokens is not None and args.max_tokens < 1:
        parser.error(f"--max-tokens must be >= 1, got {args.max_tokens}")
    if args.codeswitch and not args.alignment_table:
        parser.error("--codeswitch needs --alignment-table")
    if not args.codeswitch and args.alignment_table:
        parser.error("--alignment-table is only used with --codeswitch")
    args._parser = parser
    return args


def build_codeswitcher(args: argparse.Namespace, tokenizer):
    """The ``Codeswitcher`` the ``--codeswitch*`` flags describe (table loaded and validated)."""
    try:
        from megatron_prealign.alignment import AlignmentTable
        from megatron_prealign.data.codeswitch import CodeswitchConfig, Codeswitcher
    except ImportError as err:
        raise InputError(f"--codeswitch: the codeswitching modules are not available ({err})") from None
    if not os.path.isfile(args.alignment_table):
        raise InputError(f"--alignment-table: no such file: {args.alignment_table}")
    from megatron_prealign.alignment import check_table_tokenizer

    table = AlignmentTable.load(args.alignment_table)
    check_table_tokenizer(table, tokenizer, "--alignment-table")
    table.validate(tokenizer.vocab_size)
    languages = None
    if args.codeswitch_languages:
        languages = tuple(x.strip() for x in args.codeswitch_languages.split(",") if x.strip())
    config = CodeswitchConfig(
        ratio=args.codeswitch_ratio, mode=args.codeswitch_mode, seed=args.seed, languages=languages
    )
    from megatron_prealign.alignment.boundaries import word_boundaries

    special = list(getattr(tokenizer, "special_ids", [tokenizer.eod]))
    return Codeswitcher(
        table, tokenizer.word_start_mask(), config, special_ids=special, boundaries=word_boundaries(tokenizer)
    )


def _tokenizer_from_args(args: argparse.Namespace):
    return build_tokenizer_from_args(args)


@tool_main("preprocess_data.py")
def main(argv: List[str]) -> int:
    """Run the tool; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    warnings.filterwarnings("ignore", message="Transformer Engine and Apex are not installed")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("megatron_prealign").setLevel(logging.INFO)
    args = get_args(argv)
    parser = args._parser
    del args._parser
    from megatron_prealign.data.preprocess_data import PreprocessConfig, preprocess

    tokenizer = build_tokenizer_from_args(args, parser)
    reader_config = ReaderConfig(
        json_keys=tuple(args.json_keys), input_format=args.input_format, text_unit=args.text_unit
    )
    codeswitcher = build_codeswitcher(args, tokenizer) if args.codeswitch else None
    config = PreprocessConfig(
        output_prefix=args.output_prefix,
        append_eod=args.append_eod,
        workers=args.workers,
        batch_size=args.chunk_size,
        codeswitch_threads=args.codeswitch_threads,
        max_tokens=args.max_tokens,
        skip_malformed=args.skip_malformed,
        log_interval=args.log_interval,
    )
    preprocess(
        args.input,
        functools.partial(_tokenizer_from_args, args),
        config,
        reader_config,
        codeswitcher=codeswitcher,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
