"""Export a megatron-prealign checkpoint to a Hugging Face ``transformers`` model directory.

Usage (one plain process, CPU is enough; the checkpoint may have any TP/PP layout)::

    python tools/export_hf.py --load checkpoints/prealign-gpt2 --output hf/prealign-gpt2
    python tools/export_hf.py --load checkpoints/prealign-gpt2 --iteration 5000 \\
        --output hf/prealign-gpt2-5000 --dtype bfloat16

then, offline::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained("hf/prealign-gpt2", local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained("hf/prealign-gpt2", local_files_only=True)

GPT-2 shaped checkpoints (learned positions + LayerNorm) become ``GPT2LMHeadModel``; rope +
LayerNorm ones ``GPTNeoXForCausalLM``; rope + RMSNorm ones ``ArceeForCausalLM`` (Llama with a
non-gated MLP); learned positions + RMSNorm is refused with a one-line error. The vocabulary
is trimmed from Megatron's padded size to the tokenizer's (``--keep-padded-vocab`` keeps it).
See ``megatron_prealign/export/hf.py`` for the weight mapping.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List

from megatron_prealign.cli.tool import tool_main


def build_parser() -> argparse.ArgumentParser:
    """The tool's flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load", required=True, help="Checkpoint root (training --save) or one iter_XXXXXXX folder.")
    p.add_argument("--output", required=True, help="Hugging Face model directory to write.")
    p.add_argument("--iteration", type=int, default=None, help="Iteration to export (default: latest).")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="Weight dtype (default: the checkpoint's).")
    p.add_argument("--keep-padded-vocab", action="store_true",
                   help="Keep Megatron's padded vocabulary instead of the tokenizer's size.")
    p.add_argument("--no-tokenizer", action="store_true", help="Do not copy the tokenizer files.")
    p.add_argument("--overwrite", action="store_true", help="Replace --output if it exists.")
    return p


@tool_main("export_hf.py")
def main(argv: List[str]) -> int:
    """Run the export; one-line error and exit status 2 on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from megatron_prealign.export import HFExportConfig, export_hf

    cfg = HFExportConfig(load=args.load, output=args.output, iteration=args.iteration, dtype=args.dtype,
                         keep_padded_vocab=args.keep_padded_vocab, tokenizer=not args.no_tokenizer,
                         overwrite=args.overwrite)
    print(export_hf(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
