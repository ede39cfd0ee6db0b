"""Aligned-word cosine similarity per level for one checkpoint or a series (paper Fig. 5).

Measures the mean cosine similarity of aligned words (a source word and its translations from
the alignment table, each mean-pooled over its subwords) at every level: input embedding,
each transformer layer, output embedding; plus the unaligned-pair baseline. With
``--iterations all`` (or a list) every checkpoint of ``--load`` is measured and a PNG plots the
similarity per level against the iteration. Per level it also reports, over (source word,
translation) pairs, the raw cosine, the centred cosine (each language's mean removed: for the
embedding levels of an En-Clone model the mean over all English / all clone rows) and the
translation/source norm ratio; the centred cosine is what transfer needs (``{plot}_centred.png``).

Examples::

    python tools/eval_similarity.py --load runs/prealign --alignment-table data/en_clone.table.jsonl \\
        --output results/prealign/similarity.json
    python tools/eval_similarity.py --load runs/prealign --iterations all --alignment-table data/table.jsonl \\
        --output results/prealign/similarity_curve.json --plot results/prealign/similarity.png
"""

from __future__ import annotations

import sys
from typing import List

from megatron_prealign.cli.evaluation import eval_parser
from megatron_prealign.cli.tool import tool_main


@tool_main("eval_similarity.py")
def main(argv: List[str]) -> int:
    p = eval_parser(__doc__)
    p.add_argument("--iterations", default=None, help="'all' or comma-separated iterations (default: --iteration / latest).")
    p.add_argument("--alignment-table", required=True, help="AlignmentTable JSONL.")
    p.add_argument("--languages", default=None, help="Target languages of the table to use (default: all).")
    p.add_argument("--num-batches", type=int, default=20)
    p.add_argument("--words-per-batch", type=int, default=32)
    p.add_argument("--micro-batch-size", type=int, default=4)
    p.add_argument("--seq-length", type=int, default=256)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--output", required=True, help="Result JSON (written atomically).")
    p.add_argument("--plot", default=None, help="PNG of similarity per level vs iteration.")
    args = p.parse_args(argv)

    from megatron_prealign.eval import similarity as sim
    from megatron_prealign.cli.evaluation import check_alignment_table, load_alignment_table, load_from_args
    from megatron_prealign.eval.loading import checkpoint_record
    from megatron_prealign.eval.runtime import is_main_rank
    from megatron_prealign.eval.results import format_table, result_header
    from megatron_prealign.platform.files import write_json_atomic

    table = load_alignment_table(args.alignment_table)
    if args.iterations == "all":
        try:
            iterations = sim.list_iterations(args.load)
        except FileNotFoundError as exc:
            p.error(str(exc))
    elif args.iterations:
        iterations = [int(x) for x in args.iterations.split(",")]
    else:
        iterations = [args.iteration]
    cfg_sim = sim.SimilarityConfig(num_batches=args.num_batches, words_per_batch=args.words_per_batch,
                                   micro_batch_size=args.micro_batch_size, seq_length=args.seq_length,
                                   languages=args.languages.split(",") if args.languages else None, seed=args.seed)
    points = []
    meta = None
    for it in iterations:
        args.iteration = it
        model, cfg, meta, tok = load_from_args(args)
        check_alignment_table(table, tok)
        values = sim.mean_aligned_similarity(model, table, cfg_sim, pad_id=tok.eod, language_ids=sim.clone_language_ids(tok))
        points.append({"iteration": meta.get("iteration", it), "similarity": values})
        del model
    payload = result_header("similarity", checkpoint_record(args.load, meta), alignment_table=args.alignment_table,
                            config=dict(cfg_sim.__dict__, languages=cfg_sim.languages))
    payload["results"] = points
    if not is_main_rank():
        return 0
    write_json_atomic(args.output, payload)
    levels = [k for k in points[0]["similarity"] if "/" not in k]
    print(format_table(["iteration"] + levels, [[pt["iteration"]] + [pt["similarity"][k] for k in levels] for pt in points], digits=3))
    rows = [[pt["iteration"], lv] + [pt["similarity"].get(f"{lv}/{k}") for k in ("raw_cosine", "centred_cosine", "norm_ratio")]
            for pt in points for lv in levels]
    print(format_table(["iteration", "level", "raw cos (src-tgt)", "centred cos", "norm ratio"], rows, digits=3))
    if args.plot:
        series = {lv: {pt["iteration"]: pt["similarity"][lv] for pt in points} for lv in levels}
        sim.plot_curves(series, args.plot, "mean cosine similarity of aligned words", "aligned-word similarity")
        centred = {lv: {pt["iteration"]: pt["similarity"][f"{lv}/centred_cosine"] for pt in points
                        if f"{lv}/centred_cosine" in pt["similarity"]} for lv in levels}
        centred_plot = args.plot[:-4] + "_centred.png" if args.plot.endswith(".png") else args.plot + "_centred.png"
        sim.plot_curves(centred, centred_plot, "centred cosine of aligned words", "aligned-word similarity, language means removed")
        print(f"plot -> {args.plot}, {centred_plot}")
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
