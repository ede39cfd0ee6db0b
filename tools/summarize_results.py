"""Summarize evaluation results of several runs as the paper's tables (Markdown) and curves (PNG).

Each ``--run NAME=DIR`` is a folder of result JSONs from ``tools/eval_*.py``. Tables use each
run's latest checkpoint; ``--plot-dir`` gets one PNG per metric that has several checkpoints
(CLKA / perplexity / XNLI per language, aligned-word similarity per level), one line per run.

Examples::

    python tools/summarize_results.py --layout synthetic \\
        --run "Joint Training=results/joint" --run "PreAlign=results/prealign" --output results/table1.md
    python tools/summarize_results.py --layout ablation --target en_clone \\
        --run "#1=results/joint" --run "#2=results/cs" --run "#3=results/init" --run "#4=results/prealign"
    python tools/summarize_results.py --layout real --run "Joint=results/real_joint" \\
        --run "PreAlign=results/real_prealign" --plot-dir results/curves
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List

from megatron_prealign.cli.tool import tool_main


@tool_main("summarize_results.py")
def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, metavar="NAME=DIR", help="A run's result folder (repeatable, in row order).")
    p.add_argument("--layout", choices=["synthetic", "ablation", "real"], default="synthetic")
    p.add_argument("--target", default="en_clone", help="Target language of the ablation layout.")
    p.add_argument("--languages", default="en,zh,de,ar,ru", help="Columns of the real layout.")
    p.add_argument("--output", default=None, help="Write the Markdown here as well (atomically).")
    p.add_argument("--plot-dir", default=None, help="Folder for PNG curves across checkpoints.")
    args = p.parse_args(argv)

    from megatron_prealign.eval import summary

    runs = {}
    for spec in args.run:
        if "=" not in spec:
            p.error(f"--run {spec}: expected NAME=DIR")
        name, path = spec.split("=", 1)
        try:
            runs[name] = summary.load_run(path)
        except (OSError, ValueError) as exc:
            p.error(f"--run {spec}: {exc}")
    text = summary.table(runs, args.layout, target=args.target.replace("-", "_"),
                         languages=[x.strip() for x in args.languages.split(",") if x.strip()])
    controls = summary.clka_controls(runs)
    if controls:
        text += "\n\nCLKA beside its controls (chance, familiarity baseline; ± binomial standard error):\n\n" + controls
    align = summary.alignment_table(runs)
    if align:
        text += "\n\nAligned-word alignment per level (centred: each language's mean removed):\n\n" + align
    print(text)
    if args.output:
        from megatron_prealign.platform.files import write_text_atomic

        write_text_atomic(args.output, text + "\n")
    if args.plot_dir:
        from megatron_prealign.eval.similarity import plot_curves

        for plot_name, series in summary.curves(runs).items():
            path = os.path.join(args.plot_dir, f"{plot_name}.png")
            ylabel = "ppl" if plot_name.startswith("perplexity") else ("cosine" if plot_name.startswith("similarity") else "accuracy (%)")
            plot_curves(series, path, ylabel, plot_name)
            print(f"plot -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
