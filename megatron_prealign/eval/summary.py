"""Paper-style tables and curves from evaluation result JSONs.

A *run* is a folder of result JSONs written by ``tools/eval_*.py`` (found recursively; each
has a ``task`` field: ``perplexity``, ``xnli``, ``clka``, ``mixed_script``, ``similarity``).
Tables use, per run and task, the result of the latest checkpoint iteration (CLKA: of the
evaluation without ``--period``, when there is one). Curves use every iteration.

Layouts:

* ``synthetic`` (Table 1): LM ppl En / En-Clone, ZS-CLT acc En / En-Clone, CLKA acc En-Clone / En.
* ``ablation`` (Tables 2, 3, 5; Table 4 with the mixed-script column): one target language's
  LM / ZS-CLT / CLKA (+ mixed-script ratio and English ppl when present).
* ``real`` (Table 6): LM, ZS-CLT, CLKA for En, Zh, De, Ar, Ru.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence

from megatron_prealign.eval.results import markdown_table

TASKS = ("perplexity", "xnli", "clka", "mixed_script", "similarity")
"""Result kinds the summary understands."""

LANG_NAMES = {"en": "En", "en_clone": "En-Clone", "zh": "Zh", "de": "De", "ar": "Ar", "ru": "Ru"}
"""Column titles per language code."""


def load_run(path: str) -> Dict[str, List[dict]]:
    """Every result JSON under ``path`` (recursively), grouped by task.

    Raises:
        FileNotFoundError: ``path`` is not a folder.
        ValueError: a ``.json`` file that is not valid JSON (one line naming it).
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such run folder")
    out: Dict[str, List[dict]] = defaultdict(list)
    for root, _, files in os.walk(path):
        for name in sorted(files):
            if not name.endswith(".json") or name.startswith(".tmp-"):
                continue
            full = os.path.join(root, name)
            try:
                with open(full, encoding="utf-8") as fh:
                    data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{full}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
            if isinstance(data, dict) and data.get("task") in TASKS:
                data["_file"] = full
                out[data["task"]].append(data)
    return out


def _iteration(result: dict) -> int:
    it = (result.get("checkpoint") or {}).get("iteration")
    return int(it) if it is not None else -1


def latest(results: Sequence[dict], prefer_no_period: bool = False) -> Optional[dict]:
    """The result of the highest checkpoint iteration (ties: the last file)."""
    pool = list(results)
    if prefer_no_period and any(r.get("period") is None for r in pool):
        pool = [r for r in pool if r.get("period") is None]
    return max(pool, key=_iteration) if pool else None


def metric(run: Dict[str, List[dict]], task: str, language: str) -> Optional[float]:
    """The table value of ``task`` for ``language`` in a run (``None`` when missing)."""
    res = latest(run.get(task, []), prefer_no_period=(task == "clka"))
    if res is None:
        return None
    entry = (res.get("results") or {}).get(language)
    if entry is None:
        return None
    if task == "perplexity":
        return entry["overall"]["ppl"]
    if task in ("xnli", "clka"):
        return entry["accuracy"]
    if task == "mixed_script":
        return entry["ratio"]
    return None


def table(runs: Dict[str, Dict[str, List[dict]]], layout: str, target: str = "en_clone",
          languages: Sequence[str] = ("en", "zh", "de", "ar", "ru")) -> str:
    """A Markdown table in one of the paper's layouts (see module docstring)."""
    rows: List[List[Any]] = []
    if layout == "synthetic":
        headers = ["Method", "LM En (ppl↓)", "LM En-Clone (ppl↓)", "ZS-CLT En (acc↑)", "ZS-CLT En-Clone (acc↑)",
                   "CLKA En-Clone (acc↑)", "CLKA En (acc↑)"]
        for name, run in runs.items():
            rows.append([name, metric(run, "perplexity", "en"), metric(run, "perplexity", "en_clone"),
                         metric(run, "xnli", "en"), metric(run, "xnli", "en_clone"),
                         metric(run, "clka", "en_clone"), metric(run, "clka", "en")])
    elif layout == "ablation":
        t = LANG_NAMES.get(target, target)
        headers = ["Method", f"LM {t} (ppl↓)", f"ZS-CLT {t} (acc↑)", f"CLKA {t} (acc↑)", "LM En (ppl↓)", f"Mixed-script {t} (%↓)"]
        for name, run in runs.items():
            rows.append([name, metric(run, "perplexity", target), metric(run, "xnli", target), metric(run, "clka", target),
                         metric(run, "perplexity", "en"), metric(run, "mixed_script", target)])
    elif layout == "real":
        names = [LANG_NAMES.get(l, l) for l in languages]
        headers = (["Method"] + [f"LM {n}" for n in names] + [f"ZS-CLT {n}" for n in names]
                   + [f"CLKA {n}" for n in names])
        for name, run in runs.items():
            rows.append([name] + [metric(run, "perplexity", l) for l in languages] + [metric(run, "xnli", l) for l in languages]
                        + [metric(run, "clka", l) if l != "en" else None for l in languages])
    else:
        raise ValueError(f"unknown layout {layout!r} (synthetic, ablation, real)")
    return markdown_table(headers, rows, digits=1)


def _pm(value: Optional[float], se: Optional[float]) -> Optional[str]:
    if value is None:
        return None
    return f"{value:.1f} ± {se:.1f}" if se is not None and se == se else f"{value:.1f}"


def clka_controls(runs: Dict[str, Dict[str, List[dict]]]) -> Optional[str]:
    """Markdown: every run's final CLKA accuracy per language beside its controls (chance,
    familiarity baseline, binomial standard errors) and the run's control label; ``None``
    when no run has a CLKA result."""
    rows: List[List[Any]] = []
    for name, run in runs.items():
        res = latest(run.get("clka", []), prefer_no_period=True)
        if res is None:
            continue
        fam = ((res.get("controls") or {}).get("familiarity")) or {}
        for lang, entry in (res.get("results") or {}).items():
            f = fam.get(lang)
            rows.append([name, LANG_NAMES.get(lang, lang), _pm(entry.get("accuracy"), entry.get("stderr")), entry.get("chance"),
                         _pm(f["accuracy"], f.get("stderr")) if f else None, res.get("control") or "-"])
    if not rows:
        return None
    return markdown_table(["Run", "CLKA", "acc ± se", "chance", "familiarity ± se", "control"], rows, digits=1)


def alignment_table(runs: Dict[str, Dict[str, List[dict]]]) -> Optional[str]:
    """Markdown: raw cosine, centred cosine and norm ratio per level at each run's latest
    similarity point; ``None`` when no run has them."""
    rows: List[List[Any]] = []
    for name, run in runs.items():
        res = max(run.get("similarity", []), key=_iteration, default=None)
        if not res or not res.get("results"):
            continue
        pt = max(res["results"], key=lambda p: int(p["iteration"]))
        sim = pt["similarity"]
        for level in [k for k in sim if "/" not in k]:
            if f"{level}/centred_cosine" in sim:
                rows.append([name, int(pt["iteration"]), level, sim.get(f"{level}/raw_cosine"), sim[f"{level}/centred_cosine"],
                             sim.get(f"{level}/norm_ratio")])
    if not rows:
        return None
    return markdown_table(["Run", "iteration", "level", "raw cos", "centred cos", "norm ratio"], rows, digits=3)


def curves(runs: Dict[str, Dict[str, List[dict]]]) -> Dict[str, Dict[str, Dict[int, float]]]:
    """Series for plots: ``{plot name: {run name: {iteration: value}}}``.

    CLKA accuracy per language (per period when evaluated per period), perplexity and XNLI per
    language, aligned-word similarity per level.
    """
    out: Dict[str, Dict[str, Dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for name, run in runs.items():
        for task, key in (("perplexity", "ppl"), ("xnli", "accuracy"), ("clka", "accuracy")):
            for res in run.get(task, []):
                it = _iteration(res)
                for lang, entry in (res.get("results") or {}).items():
                    value = entry["overall"]["ppl"] if task == "perplexity" else entry["accuracy"]
                    out[f"{task}_{lang}"][name][it] = value
        for res in run.get("similarity", []):
            for pt in res.get("results", []):
                for level, value in pt["similarity"].items():
                    if "/" not in level:
                        out[f"similarity_{level}"][name][int(pt["iteration"])] = value
                    elif level.endswith("/centred_cosine"):
                        out[f"similarity_centred_{level.split('/')[0]}"][name][int(pt["iteration"])] = value
    return {k: {r: dict(v) for r, v in d.items() if len(v) > 1} for k, d in out.items()
            if any(len(v) > 1 for v in d.values())}
