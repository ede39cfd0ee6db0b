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

The ``arms`` layout is the side-by-side report of the En -> En-Clone experiment
(:mod:`megatron_prealign.eval.report`): each ``--run`` is an arm (a column; the first, Joint
Training, is the baseline), with its oracle re-alignment control (``--oracle RUN=DIR``, the
ceiling of the accuracies), the no-knowledge control, ablation rows, standard errors and the share
of the baseline -> ceiling gap each arm closes; ``--metrics-json`` writes the numbers per run
(an oracle's as ``RUN_oracle``)::

    python tools/summarize_results.py --layout arms \\
        --run joint=out/results/joint --run prealign=out/results/prealign --run upper_bound=out/results/upper_bound \\
        --oracle joint=out/results/joint_oracle --oracle prealign=out/results/prealign_oracle \\
        --control no_knowledge=out/results/no_knowledge --ablation post=out/results/post \\
        --title joint="Joint Training" --title prealign=PreAlign --ppl-ceiling upper_bound \\
        --paper-column "Paper (Joint → PreAlign)" --paper ppl_en_clone="21.6 → 16.5" \\
        --output out/summary/README.md --metrics-json out/summary/metrics.json --bar-plot out/summary/final_metrics.png

With ``--seed-dir SEED=DIR`` (repeatable) every run folder is relative to each seed's DIR and the
report shows mean ± standard deviation over the seeds (a run a seed lacks is left out of that
seed); ``--metrics-json`` then holds ``{"seeds", "mean", "sd", "per_seed"}``::

    python tools/summarize_results.py --layout arms --seed-dir 1234=qs/seed_1234 --seed-dir 1235=qs/seed_1235 \\
        --run joint=results/joint --run prealign=results/prealign --oracle joint=results/joint_oracle \\
        --output qs/README.md --metrics-json qs/metrics_seeds.json
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Tuple

from megatron_prealign.cli.tool import tool_main

ARMS_ONLY = ("control", "oracle", "ablation", "title", "row_title", "ablation_rows", "ppl_ceiling", "paper_column", "paper",
             "heading", "note", "ablation_caption", "metrics_json", "bar_plot", "seed_dir")
"""Flags (argparse names) of the arms layout only."""


def _pairs(p: argparse.ArgumentParser, flag: str, specs: List[str]) -> List[Tuple[str, str]]:
    """``NAME=VALUE`` specs of a repeatable flag, split (a spec without ``=`` is a usage error)."""
    out = []
    for spec in specs:
        if "=" not in spec:
            p.error(f"{flag} {spec}: expected NAME=VALUE")
        out.append(tuple(spec.split("=", 1)))
    return out


@tool_main("summarize_results.py")
def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, metavar="NAME=DIR",
                   help="A run's result folder (repeatable, in row order); arms layout: an arm, NAME its key.")
    p.add_argument("--layout", choices=["synthetic", "ablation", "real", "arms"], default="synthetic")
    p.add_argument("--target", default="en_clone", help="Target language of the ablation layout.")
    p.add_argument("--languages", default="en,zh,de,ar,ru", help="Columns of the real layout.")
    p.add_argument("--output", default=None, help="Write the Markdown here as well (atomically).")
    p.add_argument("--plot-dir", default=None, help="Folder for PNG curves across checkpoints.")
    g = p.add_argument_group("arms layout")
    g.add_argument("--oracle", action="append", default=[], metavar="RUN=DIR", help="RUN's oracle re-alignment control (repeatable).")
    g.add_argument("--control", default=None, metavar="NAME=DIR", help="The no-knowledge CLKA control.")
    g.add_argument("--ablation", action="append", default=[], metavar="NAME=DIR", help="An ablation run (repeatable).")
    g.add_argument("--title", action="append", default=[], metavar="NAME=TITLE", help="Display title of a run (default NAME).")
    g.add_argument("--row-title", action="append", default=[], metavar="NAME=TITLE", help="Ablation-table title of a run.")
    g.add_argument("--ablation-rows", default=None, metavar="A,B,...",
                   help="Rows of the ablation table (default: the first arm, the ablations, the other arms).")
    g.add_argument("--ppl-ceiling", default=None, metavar="NAME", help="The arm whose perplexity is the ceiling (upper bound).")
    g.add_argument("--paper-column", default=None, metavar="HEADER", help="Add a column of paper numbers with this header.")
    g.add_argument("--paper", action="append", default=[], metavar="KEY=TEXT", help="Paper column text of a metric key.")
    g.add_argument("--heading", default=None, help="First line of the Markdown.")
    g.add_argument("--note", action="append", default=[], help="A paragraph after the tables (repeatable).")
    g.add_argument("--ablation-caption", default=None, help="Line above the ablation table.")
    g.add_argument("--metrics-json", default=None, metavar="PATH", help="Write the numbers per run here (atomically).")
    g.add_argument("--bar-plot", default=None, metavar="PNG", help="Bar charts of the arms' final metrics.")
    g.add_argument("--seed-dir", action="append", default=[], metavar="SEED=DIR",
                   help="Mean ± sd over seeds: run folders are relative to each DIR (repeatable).")
    args = p.parse_args(argv)

    from megatron_prealign.eval import summary

    if args.layout == "arms":
        if args.plot_dir:
            p.error("--plot-dir: not with --layout arms (its plot is --bar-plot)")
        text = _arms(p, args)
    else:
        used = [f"--{a.replace('_', '-')}" for a in ARMS_ONLY if getattr(args, a) not in (None, [])]
        if used:
            p.error(f"{', '.join(used)}: only with --layout arms")
        runs = {}
        for name, path in _pairs(p, "--run", args.run):
            try:
                runs[name] = summary.load_run(path)
            except (OSError, ValueError) as exc:
                p.error(f"--run {name}={path}: {exc}")
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


def _arms(p: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The arms layout: collect every run's numbers (per seed), write ``--metrics-json`` and
    ``--bar-plot``, return the report's Markdown."""
    from megatron_prealign.eval import report, summary
    from megatron_prealign.platform.files import write_json_atomic

    arms = _pairs(p, "--run", args.run)
    oracles = dict(_pairs(p, "--oracle", args.oracle))
    ablations = _pairs(p, "--ablation", args.ablation)
    control = _pairs(p, "--control", [args.control] if args.control else [])
    names = [n for n, _ in arms] + [n for n, _ in ablations]
    titles, row_titles = dict(_pairs(p, "--title", args.title)), dict(_pairs(p, "--row-title", args.row_title))
    for flag, keys, known in (("--oracle", oracles, names), ("--title", titles, names + [n for n, _ in control]),
                              ("--row-title", row_titles, names)):
        unknown = [k for k in keys if k not in known]
        if unknown:
            p.error(f"{flag} {unknown[0]}=...: {unknown[0]} is not the name of a --run or --ablation"
                    + (" or --control" if flag == "--title" else ""))
    rows = [x.strip() for x in args.ablation_rows.split(",") if x.strip()] if args.ablation_rows else (
        [arms[0][0]] + [n for n, _ in ablations] + [n for n, _ in arms[1:]] if ablations else [])
    for flag, value in [("--ppl-ceiling", args.ppl_ceiling)] + [("--ablation-rows", r) for r in rows]:
        if value is not None and value not in names:
            p.error(f"{flag} {value}: no --run or --ablation of that name")
    # metrics.json order: the arms, the control, the arms' oracles, each ablation then its oracle
    folders = arms + control + [(report.oracle_key(n), oracles[n]) for n, _ in arms if n in oracles]
    for name, path in ablations:
        folders += [(name, path)] + ([(report.oracle_key(name), oracles[name])] if name in oracles else [])
    layout = report.ArmsLayout(arms=[n for n, _ in arms], oracles={n: report.oracle_key(n) for n in oracles},
                               control=control[0][0] if control else None, ppl_ceiling=args.ppl_ceiling, ablation_rows=rows,
                               titles=titles, row_titles=row_titles,
                               paper_column=args.paper_column, paper=dict(_pairs(p, "--paper", args.paper)))

    def collect(root: str, strict: bool) -> Dict[str, Dict[str, object]]:
        metrics = {}
        for name, path in folders:
            full = os.path.join(root, path)
            if not strict and not os.path.isdir(full):
                print(f"summarize_results.py: {full}: no such run folder; {name} is left out of this seed", file=sys.stderr)
                continue
            try:
                metrics[name] = report.run_metrics(summary.load_run(full))
            except (OSError, ValueError) as exc:
                raise ValueError(f"run {name}: {exc}") from None
        return metrics

    if args.seed_dir:
        seeds = [(int(s) if s.lstrip("-").isdigit() else s, d) for s, d in _pairs(p, "--seed-dir", args.seed_dir)]
        if len({s for s, _ in seeds}) != len(seeds):
            p.error("--seed-dir: a seed is repeated")
        missing = [f"{s}={d}" for s, d in seeds if not os.path.isdir(d)]
        if missing:
            p.error(f"--seed-dir {missing[0]}: no such folder")
        per_seed = {s: collect(d, strict=False) for s, d in seeds}
        metrics, spread = report.aggregate_seeds(per_seed)
        payload = {"seeds": [s for s, _ in seeds], "mean": metrics, "sd": spread,
                   "per_seed": {str(s): m for s, m in per_seed.items()}}
    else:
        metrics, spread, per_seed = collect("", strict=True), None, None
        payload = metrics
    if args.metrics_json:
        write_json_atomic(args.metrics_json, payload)
    if args.bar_plot:
        report.plot_final_metrics(metrics, layout, args.bar_plot)
    return report.render_report(metrics, layout, spread, heading=args.heading, notes=args.note,
                                ablation_caption=args.ablation_caption, per_seed=per_seed)


if __name__ == "__main__":
    sys.exit(main())
