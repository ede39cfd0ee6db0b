"""Codeswitch an existing Megatron .bin/.idx dataset (PreAlign's input-only codeswitching).

Rewrites a binarized corpus so that ~ratio of the words that have a translation in the alignment
table are replaced by one (Sec. 3.2 of the paper), and writes the loss mask that keeps the model
from being trained to *predict* the substituted subwords (input-only mode, Eq. 6):

    python tools/codeswitch_dataset.py \\
        --input-prefix data/culturax_en_text_document \\
        --output-prefix data/culturax_en_cs_text_document \\
        --alignment-table data/en-de-zh.table.jsonl \\
        --tokenizer-type GPT2BPETokenizer --vocab-file gpt2/vocab.json --merge-file gpt2/merges.txt \\
        --codeswitch-ratio 0.05 --codeswitch-mode input-only --seed 1234 --threads 8

writes ``data/culturax_en_cs_text_document.{bin,idx}`` (tokens, the input's dtype; int32 when the
table's ids need it, e.g. En-Clone of a uint16 GPT-2 corpus) and
``data/culturax_en_cs_text_document_lossmask.{bin,idx}`` (uint8), with the input's sequence and
document structure; pretraining reads the mask next to the text dataset automatically. Use
``--codeswitch-mode vanilla`` for the paper's vanilla codeswitching baseline (Table 4) and
``--codeswitch-languages de`` to substitute only German translations. The output is identical
for any ``--threads``. To codeswitch while binarizing, use ``tools/preprocess_data.py
--codeswitch`` instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List

from megatron_prealign.alignment import AlignmentTable, check_table_tokenizer
from megatron_prealign.alignment.boundaries import word_boundaries
from megatron_prealign.data.codeswitch import MODES, CodeswitchConfig, codeswitch_dataset
from megatron_prealign.cli.tokenizer import add_tokenizer_args, build_tokenizer_from_args
from megatron_prealign.cli.tool import tool_main


def build_parser() -> argparse.ArgumentParser:
    """The tool's flags (Megatron-LM's names where Megatron has one)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_argument_group("data")
    group.add_argument("--input-prefix", required=True, help="Prefix of the input dataset (without .bin/.idx).")
    group.add_argument(
        "--output-prefix", required=True, help="Prefix of the output dataset; the mask goes to {prefix}_lossmask."
    )
    group = parser.add_argument_group("codeswitching")
    group.add_argument(
        "--alignment-table", "--prealign-table", required=True,
        help="Alignment table (JSONL); the tokenizer flags must give the tokenizer it was built with.",
    )
    group.add_argument(
        "--codeswitch-ratio", type=float, default=0.05,
        help="Probability of replacing a word that has a translation (paper: 0.05).",
    )
    group.add_argument(
        "--codeswitch-mode", choices=MODES, default="input-only",
        help="input-only masks the loss on substituted subwords; vanilla masks nothing.",
    )
    group.add_argument(
        "--codeswitch-languages", default=None,
        help="Comma-separated target languages to use (default: all in the table).",
    )
    group.add_argument("--seed", type=int, default=1234, help="Seed of the counter-based random draws.")
    group = parser.add_argument_group("runtime")
    group.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                       help="Threads of the C++ pass (one process; the output does not depend on it).")
    group.add_argument(
        "--chunk-tokens", type=int, default=1 << 20,
        help="Input tokens per unit of work; memory ~ 8 (uint16) or 14 (int32) bytes x threads x this.",
    )
    group.add_argument("--log-interval", type=float, default=10.0, help="Seconds between progress lines.")
    add_tokenizer_args(parser)
    return parser


@tool_main("codeswitch_dataset.py")
def main(argv: List[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    if not 0.0 <= args.codeswitch_ratio <= 1.0:
        parser.error(f"--codeswitch-ratio must lie in [0, 1], got {args.codeswitch_ratio}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.chunk_tokens < 1:
        parser.error(f"--chunk-tokens must be >= 1, got {args.chunk_tokens}")
    languages = None
    if args.codeswitch_languages:
        languages = tuple(x.strip() for x in args.codeswitch_languages.split(",") if x.strip())
    tokenizer = build_tokenizer_from_args(args, parser)
    try:
        table = AlignmentTable.load(args.alignment_table)
    except (OSError, ValueError) as e:
        parser.error(f"--alignment-table: {e}")
    try:
        check_table_tokenizer(table, tokenizer, "--alignment-table")
    except ValueError as e:
        parser.error(str(e))
    unknown = [lang for lang in languages or () if lang not in table.languages]
    if unknown:
        parser.error(
            f"--codeswitch-languages: {', '.join(unknown)} not in --alignment-table {args.alignment_table} "
            f"(it has: {', '.join(table.languages) or 'none'})"
        )
    from megatron_prealign.data.indexed import write_loss_mask_record
    from megatron_prealign.platform.process import remove_stale_temp_files

    remove_stale_temp_files(args.output_prefix)  # left by a run killed with kill -9
    table.validate(tokenizer.vocab_size)
    config = CodeswitchConfig(
        ratio=args.codeswitch_ratio, mode=args.codeswitch_mode, seed=args.seed, languages=languages
    )
    # Ctrl-C: codeswitch_dataset removes its temporary files on the way out.
    stats = codeswitch_dataset(
        args.input_prefix,
        args.output_prefix,
        table,
        tokenizer.word_start_mask(),
        config,
        threads=args.threads,
        special_ids=tokenizer.special_ids,
        chunk_tokens=args.chunk_tokens,
        log_interval_s=args.log_interval,
        boundaries=word_boundaries(tokenizer),
    )
    # which text the mask belongs to, checked when training opens the mask
    write_loss_mask_record(args.output_prefix)
    print(f"codeswitch_dataset.py: {stats.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
