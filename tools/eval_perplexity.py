"""Per-language perplexity of a checkpoint on held-out binarized data (paper Tables 1, 3, 6; Fig. 6).

Each ``--data-path LANG=PREFIX`` names a Megatron ``.bin/.idx`` dataset (as
``tools/preprocess_data.py`` writes it, e.g. ``data/de_valid_text_document``). Documents are
scored separately in windows of ``--seq-length`` predicted tokens (consecutive windows share
one token; no context crosses windows or documents; see ``megatron_prealign.eval.perplexity``).
With ``--alignment-table``, the perplexity is also split into tokens of words seen / unseen in
the table for that language (Fig. 6). For En-Clone data use the language ``en_clone`` (clone
ids of the table's English words count as seen).

Examples::

    python tools/eval_perplexity.py --load runs/prealign --seq-length 1024 \\
        --data-path en=data/en_valid_text_document --data-path en_clone=data/en_clone_valid_text_document \\
        --alignment-table data/en_clone.table.jsonl --output results/prealign/ppl.json
    python tools/eval_perplexity.py --load runs/joint --data-path de=data/de_valid_text_document \\
        --max-documents 2000 --output results/joint/ppl_de.json
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import List

from megatron_prealign.cli.evaluation import eval_parser
from megatron_prealign.cli.tool import tool_main


@tool_main("eval_perplexity.py")
def main(argv: List[str]) -> int:
    p = eval_parser(__doc__)
    p.add_argument("--data-path", action="append", required=True, metavar="LANG=PREFIX",
                   help="Held-out Megatron dataset prefix per language (repeatable).")
    p.add_argument("--seq-length", type=int, default=None, help="Window length (default: the model's max sequence length).")
    p.add_argument("--batch-size", type=int, default=8, help="Windows per forward pass.")
    p.add_argument("--max-documents", type=int, default=None, help="Score at most N documents per language.")
    p.add_argument("--max-tokens", type=int, default=None, help="Stop after about N tokens per language.")
    p.add_argument("--alignment-table", default=None, help="AlignmentTable JSONL for the seen/unseen split (Fig. 6).")
    p.add_argument("--output", required=True, help="Result JSON (written atomically).")
    args = p.parse_args(argv)

    datasets = []
    for spec in args.data_path:
        if "=" not in spec:
            p.error(f"--data-path {spec}: expected LANG=PREFIX")
        lang, prefix = spec.split("=", 1)
        lang = lang.strip().replace("-", "_")
        if not (os.path.isfile(prefix + ".bin") and os.path.isfile(prefix + ".idx")):
            p.error(f"--data-path {spec}: {prefix}.bin/.idx not found")
        datasets.append((lang, prefix))

    from megatron_prealign.eval import perplexity as ppl
    from megatron_prealign.cli.evaluation import check_alignment_table, load_alignment_table, load_from_args
    from megatron_prealign.eval.loading import checkpoint_record
    from megatron_prealign.eval.runtime import is_main_rank
    from megatron_prealign.eval.results import format_table, result_header
    from megatron_prealign.platform.files import write_json_atomic

    table = load_alignment_table(args.alignment_table)
    model, cfg, meta, tok = load_from_args(args)
    if table is not None:
        check_alignment_table(table, tok)
    for lang, prefix in datasets:
        # a truncated/corrupt .idx or .bin, or ids the tokenizer cannot produce (another
        # tokenizer's data; beyond the model's vocabulary they would crash the lookup)
        from megatron_prealign.data.indexed import IndexedDatasetError, check_token_ids

        try:
            check_token_ids(prefix, int(tok.vocab_size), f"--data-path {lang}")
        except IndexedDatasetError as exc:
            p.error(str(exc))
    seq_length = args.seq_length or cfg.max_sequence_length
    if not 1 <= seq_length <= cfg.max_sequence_length:
        p.error(f"--seq-length {seq_length}: must be in [1, {cfg.max_sequence_length}] (the model's max sequence length)")
    config = ppl.PerplexityConfig(seq_length=seq_length, batch_size=args.batch_size,
                                  max_documents=args.max_documents, max_tokens=args.max_tokens)
    word_start = other = space = None
    if table is not None:
        word_start = tok.word_start_mask()
        other, space = ppl.token_classes(tok)
    results = []
    for lang, prefix in datasets:
        seen = None
        if table is not None:
            seen = ppl.seen_sequences(table, lang, clone_offset=getattr(tok, "base_vocab_size", None))
            if not seen:
                print(f"warning: the alignment table has no entries for language {lang}; every word counts as unseen")
        res = ppl.evaluate_perplexity(model, ppl.iter_documents(prefix), config, lang, word_start=word_start,
                                      other_mask=other, seen=seen, space_mask=space, pad_id=tok.eod, progress=True)
        results.append((prefix, res))
    payload = result_header("perplexity", checkpoint_record(args.load, meta), seq_length=seq_length,
                            windowing="per document, windows of seq_length predicted tokens sharing one token",
                            alignment_table=os.path.abspath(args.alignment_table) if args.alignment_table else None)
    payload["results"] = {r.language: dict(dataclasses.asdict(r), data_path=os.path.abspath(prefix)) for prefix, r in results}
    if not is_main_rank():
        return 0
    write_json_atomic(args.output, payload)
    rows = []
    for _, r in results:
        rows.append([r.language, r.documents, r.overall["tokens"], r.overall["ppl"],
                     r.seen["ppl"] if r.seen else None, r.unseen["ppl"] if r.unseen else None])
    print(format_table(["language", "docs", "tokens", "ppl", "seen ppl", "unseen ppl"], rows))
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
