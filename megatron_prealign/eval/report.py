"""The side-by-side report of the synthetic English -> En-Clone experiment (paper Table 1, §4.1).

Compared *arms* trained with the same budget (the first one, Joint Training, is the baseline)
appear as columns, each beside its oracle re-alignment control (the ceiling the evaluations can
show), the no-knowledge CLKA control, optional ablation rows (paper Tables 3 and 2), and the
share of the baseline -> ceiling gap each arm closes. One seed shows binomial standard errors;
several seeds show mean ± standard deviation (:func:`aggregate_seeds`).

The numbers of a run come from :mod:`.summary`'s readers (:func:`~.summary.load_run`,
:func:`~.summary.latest`, :func:`~.summary.metric`): :func:`run_metrics` flattens them into the
keys of ``metrics.json``. ``tools/summarize_results.py --layout arms`` is the command line.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from megatron_prealign.eval.clka import binomial_stderr
from megatron_prealign.eval.summary import latest, metric

Metrics = Dict[str, Dict[str, Optional[float]]]
"""``{run name: {metric key: value}}`` (the content of ``metrics.json``)."""

LANGUAGES = ("en", "en_clone")
"""The experiment's languages: English and its clone."""

REPORT_ROWS = (
    ("LM En-Clone perplexity ↓", "ppl_en_clone", 1),
    ("LM En perplexity ↓", "ppl_en", 2),
    ("ZS-CLT (NLI) En-Clone acc % ↑", "xnli_en_clone", 1),
    ("ZS-CLT (NLI) En acc % ↑", "xnli_en", 1),
    ("CLKA En-Clone acc % ↑ (chance 25)", "clka_en_clone", 1),
    ("CLKA En acc % ↑", "clka_en", 1),
    ("Mixed-script ratio % ↓", "mixed_script_en_clone", 2),
    ("Centred cosine, input emb ↑", "sim_emb_centred", 3),
    ("Centred cosine, output emb ↑", "sim_out_centred", 3),
    ("Centred cosine, layers (mean) ↑", "sim_layers_centred", 3),
    ("Raw cosine, input emb ↑", "sim_emb_raw", 3),
    ("Norm ratio clone/En, input emb", "sim_emb_norm_ratio", 2),
)
"""Rows of the side-by-side table: (title, metric key, decimals)."""

ORACLE_ROWS = (("CLKA En-Clone after oracle re-alignment", "clka_en_clone"), ("CLKA En after oracle re-alignment", "clka_en"),
               ("NLI En-Clone after oracle re-alignment", "xnli_en_clone"), ("NLI En after oracle re-alignment", "xnli_en"))
"""Rows of the controls table: each arm's oracle re-alignment control."""

GAP_KEYS = (("ppl_en_clone", "En-Clone perplexity"), ("xnli_en_clone", "NLI En-Clone"), ("clka_en_clone", "CLKA En-Clone"))
"""Metrics whose baseline -> ceiling gap is reported."""

ABLATION_COLUMNS = (("LM En-Clone ppl ↓", "ppl_en_clone", False, 1), ("NLI En-Clone %", "xnli_en_clone", False, 1),
                    ("CLKA En-Clone %", "clka_en_clone", False, 1), ("CLKA En %", "clka_en", False, 1),
                    ("oracle: NLI En-Clone %", "xnli_en_clone", True, 1), ("oracle: CLKA En-Clone %", "clka_en_clone", True, 1),
                    ("centred cos input / output emb", None, False, 2))
"""Columns of the ablation table: (title, key, from the oracle control, decimals); key ``None``: the
centred cosines of the input and output embeddings."""


def oracle_key(run: str) -> str:
    """Name of ``run``'s oracle re-alignment control among the report's runs."""
    return f"{run}_oracle"


@dataclass
class ArmsLayout:
    """Which runs the report compares and how it labels them (names are keys of the metrics)."""

    arms: List[str]
    """Column runs in order; the first is the baseline (Joint Training) whose gap the others close."""
    oracles: Dict[str, str] = field(default_factory=dict)
    """Run -> name of its oracle re-alignment control (the ceiling of its accuracies)."""
    control: Optional[str] = None
    """The no-knowledge CLKA control (Joint Training without the knowledge text)."""
    ppl_ceiling: Optional[str] = None
    """Run whose En-Clone perplexity is the ceiling of the perplexity gap (no oracle control
    evaluates perplexity): the perfect-initialisation upper bound arm."""
    ablation_rows: List[str] = field(default_factory=list)
    """Rows of the ablation table in order (empty: no ablation table)."""
    titles: Dict[str, str] = field(default_factory=dict)
    """Display title per run (default: its name)."""
    row_titles: Dict[str, str] = field(default_factory=dict)
    """Ablation-table title per run, where it differs from its title (e.g. the paper's ``#1``)."""
    paper_column: Optional[str] = None
    """Header of a last column of paper numbers (``None``: no such column)."""
    paper: Dict[str, str] = field(default_factory=dict)
    """Paper column text per metric key (``–`` where absent)."""

    def title(self, run: str) -> str:
        """The display title of ``run``."""
        return self.titles.get(run, run)


def run_metrics(run: Mapping[str, List[dict]]) -> Dict[str, Optional[float]]:
    """The flat final-checkpoint numbers of one run (a :func:`~.summary.load_run` result).

    Keys: ``ppl_{en,en_clone}``; ``{xnli,clka}_{en,en_clone}`` each with ``*_se`` (the result's
    standard error, else binomial over its examples/items); ``clka_familiarity_{en,en_clone}``;
    ``mixed_script_en_clone``; and, when the run has a similarity result, the aligned-word
    statistics of its last point ``sim_{emb,out,layers}_{raw,centred}`` (layers: the mean over
    layers) and ``sim_{emb,out}_norm_ratio``. Missing numbers are ``None``.
    """
    m: Dict[str, Optional[float]] = {f"ppl_{lang}": metric(run, "perplexity", lang) for lang in LANGUAGES}
    for task, count in (("xnli", "examples"), ("clka", "items")):
        res = latest(run.get(task, []), prefer_no_period=(task == "clka")) or {}
        familiarity = (res.get("controls") or {}).get("familiarity") or {}
        for lang in LANGUAGES:
            entry = (res.get("results") or {}).get(lang) or {}
            acc = entry.get("accuracy")
            m[f"{task}_{lang}"] = acc
            m[f"{task}_{lang}_se"] = entry["stderr"] if "stderr" in entry else (
                binomial_stderr(acc, entry[count]) if acc is not None and entry.get(count) else None)
            if task == "clka":
                m[f"clka_familiarity_{lang}"] = (familiarity.get(lang) or {}).get("accuracy")
    m["mixed_script_en_clone"] = metric(run, "mixed_script", "en_clone")
    sim = latest(run.get("similarity", []))
    if sim and sim.get("results"):
        last = max(sim["results"], key=lambda pt: int(pt["iteration"]))["similarity"]
        for kind in ("raw", "centred"):
            for level in ("emb", "out"):
                m[f"sim_{level}_{kind}"] = last.get(f"{level}/{kind}_cosine")
            layers = [v for k, v in last.items() if k.startswith("layer") and k.endswith(f"/{kind}_cosine")]
            m[f"sim_layers_{kind}"] = sum(layers) / len(layers) if layers else None
        for level in ("emb", "out"):
            m[f"sim_{level}_norm_ratio"] = last.get(f"{level}/norm_ratio")
    return m


def _sample_sd(values: Sequence[float]) -> float:
    """Sample standard deviation (``n - 1``) of two or more values."""
    mu = sum(values) / len(values)
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (len(values) - 1))


def aggregate_seeds(per_seed: Mapping[Any, Metrics]) -> Tuple[Metrics, Dict[str, Dict[str, float]]]:
    """Mean and sample standard deviation over seeds of every metric (``*_se`` keys dropped).

    Args:
        per_seed: each seed's metrics; a run or key missing in a seed is averaged over the others.

    Returns:
        ``(mean, sd)``: runs and keys sorted; a mean is ``None`` when no seed has the number, a
        standard deviation exists only where at least two seeds have it.
    """
    names = sorted({n for m in per_seed.values() for n in m})
    mean: Metrics = {}
    sd: Dict[str, Dict[str, float]] = {}
    for name in names:
        keys = sorted({k for m in per_seed.values() for k in m.get(name, {}) if not k.endswith("_se")})
        mean[name], sd[name] = {}, {}
        for key in keys:
            vals = [m[name][key] for m in per_seed.values() if m.get(name, {}).get(key) is not None]
            mean[name][key] = sum(vals) / len(vals) if vals else None
            if len(vals) > 1:
                sd[name][key] = _sample_sd(vals)
    return mean, sd


DIFFERENCE_ROWS = (
    ("LM En-Clone perplexity", "ppl_en_clone", 2),
    ("ZS-CLT (NLI) En-Clone (points)", "xnli_en_clone", 1),
    ("CLKA En-Clone (points)", "clka_en_clone", 1),
    ("CLKA En (points)", "clka_en", 1),
)
"""Rows of :func:`paired_differences`: (label, metric key, decimals)."""


def paired_differences(per_seed: Mapping[Any, Metrics], layout: ArmsLayout) -> List[str]:
    """Each arm minus the baseline arm, seed by seed, with the mean and its standard error.

    The seeds share data and tests within a seed, so the paired difference (not the difference of
    the two means' spreads) is what says whether an arm beats the baseline.

    Args:
        per_seed: each seed's metrics (in seed order); a seed lacking either number is skipped.
        layout: ``arms[0]`` is the baseline.

    Returns:
        Markdown lines; a cell reads ``mean ± SE (seed 1 / seed 2 / ...)``, the SE being the sample
        standard deviation of the differences over ``sqrt(n)`` (no SE with one seed).
    """
    base, others = layout.arms[0], layout.arms[1:]
    lines = [_row(["Metric"] + [f"{layout.title(a)} − {layout.title(base)}" for a in others]), "|---|" + "---|" * len(others)]
    for label, key, digits in DIFFERENCE_ROWS:
        cells = []
        for arm in others:
            diffs = [m[arm][key] - m[base][key] for m in per_seed.values()
                     if (m.get(arm) or {}).get(key) is not None and (m.get(base) or {}).get(key) is not None]
            if not diffs:
                cells.append("–")
                continue
            mu = sum(diffs) / len(diffs)
            each = " / ".join(f"{d:+.{digits}f}" for d in diffs)
            if len(diffs) < 2:
                cells.append(f"{mu:+.{digits}f}")
                continue
            se = _sample_sd(diffs) / math.sqrt(len(diffs))
            cells.append(f"{mu:+.{digits}f} ± {se:.{digits}f} ({each})")
        lines.append(_row([label] + cells))
    return lines


def gap_closed(metrics: Metrics, key: str, arm: str, layout: ArmsLayout) -> Optional[float]:
    """Share of the gap from the baseline to the ceiling that ``arm`` closes on ``key``.

    The ceiling is the baseline's oracle re-alignment control for accuracies and
    ``layout.ppl_ceiling`` for perplexity. ``None`` when a number is missing or the gap is zero.
    """
    baseline = layout.arms[0]
    ceiling_run = layout.ppl_ceiling if key.startswith("ppl") else layout.oracles.get(baseline)
    joint = metrics.get(baseline, {}).get(key)
    ceiling = metrics.get(ceiling_run, {}).get(key) if ceiling_run else None
    value = metrics.get(arm, {}).get(key)
    if None in (joint, ceiling, value) or ceiling == joint:
        return None
    return (value - joint) / (ceiling - joint)


def _fmt(v: Optional[float], digits: int = 1, se: Optional[float] = None) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}" + (f" ± {se:.{digits}f}" if se is not None else "")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _cell(metrics: Metrics, spread: Optional[Dict[str, Dict[str, float]]], run: Optional[str], key: str,
          digits: int = 1) -> str:
    """One run's number with its error: the spread over seeds, else the run's ``*_se``."""
    m = metrics.get(run, {}) if run else {}
    err = spread.get(run, {}).get(key) if spread is not None else m.get(f"{key}_se")
    return _fmt(m.get(key), digits, err)


def report_table(metrics: Metrics, layout: ArmsLayout, spread: Optional[Dict[str, Dict[str, float]]] = None) -> List[str]:
    """Markdown lines: the arms side by side, their oracle controls, the CLKA controls, the gap shares.

    Args:
        metrics: numbers per run (:func:`run_metrics`, or the means of :func:`aggregate_seeds`).
        layout: the runs compared.
        spread: standard deviation per run and key (several seeds); ``None``: the runs' ``*_se``.
    """
    cell = functools.partial(_cell, metrics, spread)
    arms = [a for a in layout.arms if a in metrics]
    titles = [layout.title(a) for a in arms]
    paper = [layout.paper_column] if layout.paper_column is not None else []
    lines = [_row(["Metric"] + titles + paper), "|---|" + "---|" * (len(arms) + len(paper))]
    for title, key, digits in REPORT_ROWS:
        lines.append(_row([title] + [cell(a, key, digits) for a in arms] + ([layout.paper.get(key, "–")] if paper else [])))
    lines += ["", "Controls (are the evaluations informative?):", "", _row(["Control"] + titles), "|---|" + "---|" * len(arms)]
    for title, key in ORACLE_ROWS:
        lines.append(_row([title] + [cell(layout.oracles.get(a), key) for a in arms]))
    fam = metrics.get(layout.arms[0], {}).get("clka_familiarity_en")
    lines += ["", f"CLKA familiarity baseline (pick the option whose object occurs most in the knowledge text): "
                  f"{_fmt(fam)} % (chance 25 %). No-knowledge model (Joint Training without the knowledge text): "
                  f"CLKA En {cell(layout.control, 'clka_en')} %, En-Clone {cell(layout.control, 'clka_en_clone')} %."]
    others = [a for a in arms if a != layout.arms[0]]
    lines += ["", f"Share of the {layout.title(layout.arms[0])} → ceiling gap closed (ceiling: Joint's oracle "
                  "re-alignment for accuracies, the upper bound arm for perplexity):", "",
              _row(["Metric"] + [layout.title(a) for a in others]), "|---|" + "---|" * len(others)]
    for key, title in GAP_KEYS:
        shares = [gap_closed(metrics, key, a, layout) for a in others]
        lines.append(_row([title] + ["–" if g is None else f"{100 * g:.0f} %" for g in shares]))
    return lines


def ablation_table(metrics: Metrics, layout: ArmsLayout, spread: Optional[Dict[str, Dict[str, float]]] = None) -> List[str]:
    """Markdown lines: one row per ``layout.ablation_rows`` run present in ``metrics`` (its own
    numbers and its oracle control's); ``spread`` as in :func:`report_table`."""
    cell = functools.partial(_cell, metrics, spread)
    lines = [_row(["Run"] + [c[0] for c in ABLATION_COLUMNS]), "|---|" + "---|" * len(ABLATION_COLUMNS)]
    for run in [r for r in layout.ablation_rows if r in metrics]:
        cells = []
        for _, key, oracle, digits in ABLATION_COLUMNS:
            if key is None:
                m = metrics[run]
                cells.append(f"{_fmt(m.get('sim_emb_centred'), digits)} / {_fmt(m.get('sim_out_centred'), digits)}")
            else:
                cells.append(cell(layout.oracles.get(run) if oracle else run, key, digits))
        lines.append(_row([layout.row_titles.get(run, layout.title(run))] + cells))
    return lines


def render_report(metrics: Metrics, layout: ArmsLayout, spread: Optional[Dict[str, Dict[str, float]]] = None,
                  heading: Optional[str] = None, notes: Sequence[str] = (), ablation_caption: Optional[str] = None,
                  per_seed: Optional[Mapping[Any, Metrics]] = None) -> str:
    """The report as Markdown: ``heading``, :func:`report_table`, the :func:`ablation_table` (when
    ``layout.ablation_rows``) under ``ablation_caption``, then ``notes`` as paragraphs.

    Args:
        metrics: numbers per run (one seed's, or the means over seeds).
        layout: the runs compared.
        spread: the standard deviations over seeds (``None``: one seed, binomial standard errors).
        heading: first line (e.g. ``# Title``), or none.
        notes: paragraphs after the tables (setup, where the files are).
        ablation_caption: line above the ablation table (default: says what ± means).
        per_seed: each seed's metrics; with two or more seeds the :func:`paired_differences`
            table follows the main table.
    """
    if ablation_caption is None:
        ablation_caption = ("Ablations (mean ± sd over the seeds that ran them):" if spread is not None
                            else "Ablations (same budget; ± = binomial standard error):")
    parts = ([heading, ""] if heading is not None else []) + ["\n".join(report_table(metrics, layout, spread)), ""]
    if per_seed is not None and len(per_seed) > 1 and len(layout.arms) > 1:
        parts += [f"Paired differences from {layout.title(layout.arms[0])}: mean ± standard error over seeds "
                  "(per seed in brackets):", "", "\n".join(paired_differences(per_seed, layout)), ""]
    if layout.ablation_rows:
        parts += [ablation_caption, "", "\n".join(ablation_table(metrics, layout, spread)), ""]
    for i, note in enumerate(notes):
        parts += ([""] if i else []) + [note]
    return "\n".join(parts)


def plot_final_metrics(metrics: Metrics, layout: ArmsLayout, path: str) -> None:
    """Bar charts of the arms' final perplexity, NLI and CLKA per language, saved as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from megatron_prealign.platform.files import atomic_path

    panels = [("LM perplexity (lower is better)", ["ppl_en", "ppl_en_clone"]),
              ("Zero-shot NLI accuracy %", ["xnli_en", "xnli_en_clone"]), ("CLKA accuracy % (chance 25)", ["clka_en", "clka_en_clone"])]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    arms = [a for a in layout.arms if a in metrics]
    width = 0.8 / max(1, len(arms))
    for ax, (title, keys) in zip(axes, panels):
        for j, run in enumerate(arms):
            vals = [metrics[run].get(k) or 0.0 for k in keys]
            bars = ax.bar([i + (j - (len(arms) - 1) / 2) * width for i in range(len(keys))], vals, width, label=layout.title(run))
            for b, v in zip(bars, vals):
                ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(["En", "En-Clone"])
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
