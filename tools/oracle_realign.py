"""Oracle re-alignment control: set an En-Clone checkpoint's clone rows to English row + offset.

Loads ``--load`` (any TP/PP layout; loaded at TP=1, PP=1 in one process), replaces every aligned
clone row (id ``t + V``) of the input embedding and of the output layer (untied; tied models
share one matrix) by ``English row t + offset``, offset = mean(clone rows) - mean(English rows)
over the replaced rows (the model's own language offset), optionally only part of the way
(``--alpha``), and saves a new checkpoint under ``--save`` in the same format and iteration, so
every evaluation tool loads it. The input checkpoint is never written.

Examples::

    python tools/oracle_realign.py --load runs/prealign/checkpoints --save runs/prealign_oracle/checkpoints
    python tools/eval_clka.py --load runs/prealign_oracle/checkpoints --test-dir data/clka --languages en_clone,en \\
        --familiarity-text data/clka/knowledge.jsonl --control oracle-realign --output results/prealign_oracle/clka.json
    # partial re-alignment curve
    for a in 0.25 0.5 0.75; do python tools/oracle_realign.py --load runs/prealign/checkpoints \\
        --save runs/prealign_oracle_$a/checkpoints --alpha $a; done
    # how much of the oracle's shortfall is the language offset: clone rows = English rows
    python tools/oracle_realign.py --load runs/prealign/checkpoints --save runs/prealign_copy/checkpoints --offset-scale 0
"""

from __future__ import annotations

import os
import sys
from typing import List

from megatron_prealign.cli.evaluation import eval_parser
from megatron_prealign.cli.tool import tool_main


@tool_main("oracle_realign.py")
def main(argv: List[str]) -> int:
    p = eval_parser(__doc__)
    p.add_argument("--save", required=True, help="Checkpoint root to write (must differ from --load).")
    p.add_argument("--alpha", type=float, default=1.0, help="0 = unchanged, 1 = full oracle (default).")
    p.add_argument("--offset-scale", type=float, default=1.0,
                   help="Multiply the language offset (0 = clone rows become copies of the English rows: En-Clone "
                        "scores must then equal English ones; a check of the test data and of how much the layers "
                        "read the offset).")
    p.add_argument("--output-offset-scale", type=float, default=None,
                   help="The same for the output layer of an untied model (default: --offset-scale).")
    p.add_argument("--alignment-table", default=None,
                   help="Re-align only the ids of this En-Clone table's words (default: every non-special id < V).")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing checkpoint under --save.")
    args = p.parse_args(argv)

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(getattr(args, "tensor_model_parallel_size", 1) or 1) > 1:
        p.error("oracle_realign runs in one process (TP=1, PP=1); it loads checkpoints of any layout")
    if not 0.0 <= args.alpha <= 1.0:
        p.error(f"--alpha {args.alpha}: expected a value in [0, 1]")
    load_root = os.path.realpath(args.load)
    if os.path.basename(load_root).startswith("iter_"):
        load_root = os.path.dirname(load_root)
    save_root = os.path.realpath(args.save)
    if save_root == load_root or save_root.startswith(load_root + os.sep):
        p.error(f"--save {args.save}: must not be (inside) --load {args.load}; the input checkpoint is never written")
    from megatron_prealign.training.checkpointing import TRACKER_FILENAME

    if os.path.exists(os.path.join(save_root, TRACKER_FILENAME)) and not args.overwrite:
        p.error(f"--save {args.save}: holds a checkpoint (use --overwrite)")

    from megatron_prealign.cli.evaluation import load_alignment_table, load_from_args
    from megatron_prealign.eval.oracle import OracleConfig, aligned_english_ids, oracle_realign
    from megatron_prealign.training.checkpointing import save_checkpoint

    model, cfg, meta, tok = load_from_args(args)
    v = getattr(tok, "base_vocab_size", None)
    if v is None:
        p.error("oracle_realign needs an En-Clone checkpoint (tokenizer with a base vocabulary; record or --en-clone)")
    table = load_alignment_table(args.alignment_table)
    ids = aligned_english_ids(v, tok.special_ids, table)
    report = oracle_realign(model, OracleConfig(base_vocab_size=v, english_ids=ids, alpha=args.alpha,
                                                    offset_scale=args.offset_scale,
                                                    output_offset_scale=args.output_offset_scale))
    iteration = int(meta.get("iteration", 0))
    new_meta = {k: val for k, val in meta.items() if k not in ("iteration", "train_state", "stage", "parallel")}
    new_meta["oracle_realign"] = {"source": os.path.abspath(args.load), "source_iteration": iteration, "alpha": args.alpha,
                                  "offset_scale": args.offset_scale,
                                  "output_offset_scale": args.output_offset_scale, "alignment_table": args.alignment_table, "report": report}
    final = save_checkpoint(save_root, iteration, [model], None, None, dict(meta.get("train_state") or {}), new_meta)
    for name, r in report.items():
        print(f"{name}: {r['rows']} clone rows re-aligned (alpha {args.alpha}, offset x{r['offset_scale']:g}), offset norm {r['offset_norm']:.4f}, "
              f"mean row change {r['mean_row_change']:.4f}")
    print(f"-> {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
