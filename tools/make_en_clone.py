"""Make the En-Clone twin of an English Megatron dataset (paper Sec. 4.1.1).

Every token id ``i`` of the English ``.bin/.idx`` becomes ``i + V`` (V = the tokenizer's
vocabulary; EOD/pad and other special tokens keep their ids); document boundaries are kept.
The output dtype holds 2V ids (uint16 below 65500, else int32). Streamed in chunks, written
under a temporary name and renamed. Train with the En-Clone vocabulary (``--en-clone``: 2V).

Example::

    python tools/make_en_clone.py --input data/en_text_document \\
        --output-prefix data/en_clone_text_document \\
        --tokenizer-type GPT2BPETokenizer --vocab-file vocab.json --merge-file merges.txt

The matching alignment table (every word -> its clone)::

    python tools/build_alignment_table.py --input data/en.jsonl --en-clone \\
        --tokenizer-type GPT2BPETokenizer --vocab-file vocab.json --merge-file merges.txt \\
        --output tables/en_clone.jsonl
"""

import argparse
import sys
import time
from typing import List

from megatron_prealign.cli.tokenizer import add_tokenizer_args, build_tokenizer_from_args
from megatron_prealign.cli.tool import tool_main
from megatron_prealign.tokenizer import EnCloneTokenizer
from megatron_prealign.data.en_clone import clone_indexed_dataset


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="English dataset prefix (without .bin/.idx).")
    p.add_argument("--output-prefix", required=True, help="En-Clone dataset prefix.")
    p.add_argument("--chunk-tokens", type=int, default=1 << 24, help="Tokens per streamed chunk.")
    add_tokenizer_args(p, en_clone_flag=False)
    return p, p.parse_args(argv)


@tool_main("make_en_clone.py")
def main(argv: List[str]) -> int:
    parser, args = get_args(argv)
    base = build_tokenizer_from_args(args, parser)
    tok = EnCloneTokenizer(base)
    start = [time.time()]
    last = [0.0]

    def progress(done, total):
        now = time.time()
        if done == 0:
            start[0] = last[0] = now
            return
        if now - last[0] >= 5 or done == total:
            last[0] = now
            rate = done / max(now - start[0], 1e-9)
            eta = (total - done) / rate if rate else 0
            print(
                f"[make_en_clone] {done}/{total} tokens ({100 * done / max(total, 1):.1f}%), "
                f"{rate / 1e6:.1f} M tokens/s, ETA {eta:.0f} s",
                file=sys.stderr, flush=True,
            )

    # On an error or Ctrl-C clone_indexed_dataset has removed its temporary files.
    info = clone_indexed_dataset(args.input, args.output_prefix, tok, args.chunk_tokens, progress)
    print(
        f"[make_en_clone] {info['documents']} documents, {info['tokens']} tokens, dtype {info['dtype']}, "
        f"En-Clone vocabulary {tok.vocab_size} -> {args.output_prefix}.bin/.idx ({info['seconds']:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
