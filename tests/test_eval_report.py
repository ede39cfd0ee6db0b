"""The arms report (megatron_prealign.eval.report) through ``tools/summarize_results.py --layout arms``.

Fixture result JSONs are written in the evaluation tools' formats (their result dataclasses and
:func:`result_header`); every number in the asserted tables is computed by hand in the comments:
binomial standard errors, gap shares, means and sample standard deviations over seeds.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from typing import Dict, Optional, Tuple

import pytest

from megatron_prealign.eval.clka import CLKAResult, FamiliarityResult
from megatron_prealign.eval.mixed_script import MixedScriptResult
from megatron_prealign.eval.perplexity import PerplexityResult
from megatron_prealign.eval.results import result_header
from megatron_prealign.platform.files import write_json_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool():
    spec = importlib.util.spec_from_file_location("_tool_summarize_results", os.path.join(ROOT, "tools", "summarize_results.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def _write_run(folder: str, it: int, ppl: Tuple[float, float], xnli: Tuple[float, float], clka: Optional[Tuple[float, float]] = None,
               clka_se: float = 3.5, sim: Optional[Dict[str, float]] = None, mixed: Optional[float] = None,
               familiarity: Optional[float] = None, prefix: str = "") -> None:
    """One run's results at checkpoint ``it`` (``ppl``/``xnli``/``clka``: (En, En-Clone); NLI over 600 examples;
    ``prefix``: of the XNLI/CLKA file names)."""
    ck = {"load": folder, "iteration": it}
    langs = ("en", "en_clone")
    if ppl is not None:
        res = {lang: dataclasses.asdict(PerplexityResult(lang, {"ppl": v, "nll_per_token": 0.0, "tokens": 100}, 4, 4))
               for lang, v in zip(langs, ppl)}
        write_json_atomic(os.path.join(folder, f"perplexity_iter{it:07d}.json"), dict(result_header("perplexity", ck), results=res))
    if xnli is not None:
        res = {lang: {"accuracy": v, "examples": 600, "confusion": []} for lang, v in zip(langs, xnli)}  # eval_xnli's NLIAccuracy
        write_json_atomic(os.path.join(folder, f"{prefix}xnli.json"), dict(result_header("xnli", ck), results=res))
    if clka is not None:
        res = {lang: dataclasses.asdict(CLKAResult(lang, 200, v, v, chance=25.0, stderr=clka_se)) for lang, v in zip(langs, clka)}
        fam = {} if familiarity is None else {
            lang: dataclasses.asdict(FamiliarityResult(lang, 200, familiarity, 25.0, 3.06, 100.0)) for lang in langs}
        write_json_atomic(os.path.join(folder, f"{prefix}clka.json"), dict(result_header("clka", ck, period=None, control=None),
                                                                  results=res, controls={"familiarity": fam}))
    if mixed is not None:
        res = {"en_clone": dataclasses.asdict(MixedScriptResult("en_clone", 80, int(mixed * 0.8), mixed, "ids >= V", []))}
        write_json_atomic(os.path.join(folder, "mixed_script.json"), dict(result_header("mixed_script", ck), results=res))
    if sim is not None:  # eval_similarity: one point per checkpoint; the report reads the last one
        early = {k: -v for k, v in sim.items()}
        write_json_atomic(os.path.join(folder, "similarity.json"), dict(result_header("similarity", ck), results=[
            {"iteration": it, "similarity": sim}, {"iteration": it // 2, "similarity": early}]))


def _sim(centred: float) -> Dict[str, float]:
    return {"emb": centred, "emb/raw_cosine": centred - 0.1, "emb/centred_cosine": centred, "emb/norm_ratio": 0.95,
            "out/raw_cosine": 0.2, "out/centred_cosine": centred / 2, "out/norm_ratio": 1.0, "layer1": 0.4,
            "layer1/raw_cosine": 0.3, "layer1/centred_cosine": 0.5, "layer2/raw_cosine": 0.5, "layer2/centred_cosine": 0.7}


def _experiment(root: str, shift: float = 0.0, post: bool = True) -> None:
    """Arms joint / prealign / upper_bound, oracles of joint and prealign, the control, ablation ``post``."""
    r = lambda name: os.path.join(root, "results", name)  # noqa: E731
    _write_run(r("joint"), 100, (9.0, 30.0), (70.0, 20.0), (50.0, 20.0), prefix="early_")  # read first, then ignored
    _write_run(r("joint"), 200, (8.0, 20.0), (80.0, 40.0 + shift), (60.0, 25.0), clka_se=3.1, sim=_sim(0.0), mixed=1.25,
               familiarity=25.0)
    _write_run(r("prealign"), 200, (7.9, 14.0), (81.0, 61.0 + shift), (58.0, 29.0), sim=_sim(0.8), mixed=0.0)
    _write_run(r("upper_bound"), 200, (8.1, 12.0), (79.0, 58.0), (55.0, 27.0), sim=_sim(0.7), mixed=0.0)
    _write_run(r("joint_oracle"), 200, None, (80.0, 70.0), (60.0, 45.0))
    _write_run(r("prealign_oracle"), 200, None, (81.0, 75.0), (58.0, 47.0))
    _write_run(r("no_knowledge"), 200, None, None, (26.0, 25.5), clka_se=3.0)
    if post:
        _write_run(r("post"), 200, (8.5, 70.0), (75.0, 33.0), (35.0, 27.0), sim=_sim(0.9))


def _flags(root: str) -> list:
    r = lambda name: os.path.join(root, "results", name)  # noqa: E731
    return ["--layout", "arms", "--run", f"joint={r('joint')}", "--run", f"prealign={r('prealign')}",
            "--run", f"upper_bound={r('upper_bound')}", "--oracle", f"joint={r('joint_oracle')}",
            "--oracle", f"prealign={r('prealign_oracle')}", "--control", f"no_knowledge={r('no_knowledge')}",
            "--ablation", f"post={r('post')}", "--ppl-ceiling", "upper_bound", "--title", "joint=Joint Training",
            "--title", "prealign=PreAlign", "--row-title", "joint=#1 Joint Training",
            "--paper-column", "Paper", "--paper", "ppl_en_clone=21.6 → 16.5"]


def _row(lines, title):
    hits = [ln for ln in lines if ln.startswith(f"| {title} |")]
    assert len(hits) == 1, (title, lines)
    return hits[0]


def test_one_seed_report_against_hand_computed_values(tmp_path, capsys):
    _experiment(str(tmp_path))
    md, mj = str(tmp_path / "README.md"), str(tmp_path / "metrics.json")
    rc = _tool()(_flags(str(tmp_path)) + ["--heading", "# Test", "--note", "first note", "--note", "second note",
                                          "--output", md, "--metrics-json", mj, "--bar-plot", str(tmp_path / "bars.png")])
    assert rc == 0
    text = open(md, encoding="utf-8").read()
    assert text == capsys.readouterr().out  # printed as written
    lines = text.splitlines()
    assert lines[:4] == ["# Test", "", "| Metric | Joint Training | PreAlign | upper_bound | Paper |", "|---|---|---|---|---|"]
    # the latest checkpoint (200) only; the paper column where given, "–" elsewhere
    assert _row(lines, "LM En-Clone perplexity ↓") == "| LM En-Clone perplexity ↓ | 20.0 | 14.0 | 12.0 | 21.6 → 16.5 |"
    # NLI carries no stderr: binomial over 600 examples, 100 * sqrt(.4 * .6 / 600) = 2.0, sqrt(.2 * .8 / 600) = 1.63
    assert _row(lines, "ZS-CLT (NLI) En-Clone acc % ↑") == "| ZS-CLT (NLI) En-Clone acc % ↑ | 40.0 ± 2.0 | 61.0 ± 2.0 | 58.0 ± 2.0 | – |"
    assert _row(lines, "ZS-CLT (NLI) En acc % ↑") == "| ZS-CLT (NLI) En acc % ↑ | 80.0 ± 1.6 | 81.0 ± 1.6 | 79.0 ± 1.7 | – |"
    # CLKA's own stderr is shown as written by eval_clka
    assert _row(lines, "CLKA En-Clone acc % ↑ (chance 25)") == "| CLKA En-Clone acc % ↑ (chance 25) | 25.0 ± 3.1 | 29.0 ± 3.5 | 27.0 ± 3.5 | – |"
    assert _row(lines, "Mixed-script ratio % ↓") == "| Mixed-script ratio % ↓ | 1.25 | 0.00 | 0.00 | – |"
    # the last similarity point; layers: mean of 0.5 and 0.7
    assert _row(lines, "Centred cosine, layers (mean) ↑") == "| Centred cosine, layers (mean) ↑ | 0.600 | 0.600 | 0.600 | – |"
    assert _row(lines, "Centred cosine, input emb ↑") == "| Centred cosine, input emb ↑ | 0.000 | 0.800 | 0.700 | – |"
    assert _row(lines, "CLKA En-Clone after oracle re-alignment") == \
        "| CLKA En-Clone after oracle re-alignment | 45.0 ± 3.5 | 47.0 ± 3.5 | – |"
    assert "familiarity baseline (pick the option whose object occurs most in the knowledge text): 25.0 % (chance 25 %)" in text
    assert "No-knowledge model (Joint Training without the knowledge text): CLKA En 26.0 ± 3.0 %, En-Clone 25.5 ± 3.0 %." in text
    # gap shares: ppl (14 - 20) / (12 - 20) = 75 %, (12 - 20) / (12 - 20) = 100 %; NLI vs Joint's oracle 70:
    # (61 - 40) / 30 = 70 %, (58 - 40) / 30 = 60 %; CLKA vs 45: (29 - 25) / 20 = 20 %, (27 - 25) / 20 = 10 %
    gap = lines[lines.index("| Metric | PreAlign | upper_bound |"):]
    assert gap[2:5] == ["| En-Clone perplexity | 75 % | 100 % |", "| NLI En-Clone | 70 % | 60 % |", "| CLKA En-Clone | 20 % | 10 % |"]
    # default rows: the first arm, the ablations, the other arms; post has no oracle control
    assert "Ablations (same budget; ± = binomial standard error):" in lines
    titles = [ln.split(" | ")[0][2:] for ln in lines[lines.index("Ablations (same budget; ± = binomial standard error):") + 4:]
              if ln.startswith("| ")]
    assert titles == ["#1 Joint Training", "post", "PreAlign", "upper_bound"]
    assert _row(lines, "post") == "| post | 70.0 | 33.0 ± 1.9 | 27.0 ± 3.5 | 35.0 ± 3.5 | – | – | 0.90 / 0.45 |"
    assert lines[-3:] == ["first note", "", "second note"]

    metrics = json.load(open(mj))
    assert list(metrics) == ["joint", "prealign", "upper_bound", "no_knowledge", "joint_oracle", "prealign_oracle", "post"]
    assert metrics["joint"]["ppl_en_clone"] == 20.0 and metrics["joint"]["xnli_en_clone_se"] == pytest.approx(2.0)
    assert metrics["joint"]["clka_familiarity_en"] == 25.0 and metrics["prealign"]["clka_familiarity_en"] is None
    assert metrics["joint"]["sim_layers_raw"] == pytest.approx(0.4) and metrics["joint"]["sim_emb_norm_ratio"] == 0.95
    assert "sim_emb_raw" not in metrics["joint_oracle"] and metrics["joint_oracle"]["ppl_en"] is None
    assert open(tmp_path / "bars.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_seeds_report_mean_and_sd(tmp_path):
    _experiment(str(tmp_path / "s1"))
    _experiment(str(tmp_path / "s2"), shift=4.0, post=False)  # the second seed did not run the ablation
    mj, md = str(tmp_path / "metrics_seeds.json"), str(tmp_path / "README.md")
    flags = [x.replace(str(tmp_path / "s1") + os.sep, "") for x in _flags(str(tmp_path / "s1"))]  # relative folders
    rc = _tool()(flags + ["--seed-dir", f"1={tmp_path / 's1'}", "--seed-dir", f"2={tmp_path / 's2'}", "--output", md,
                          "--metrics-json", mj])
    assert rc == 0
    lines = open(md, encoding="utf-8").read().splitlines()
    # NLI En-Clone: joint 40 / 44 -> 42.0 ± sqrt(2 * 2^2 / 1) = 2.83; prealign 61 / 65 -> 63.0 ± 2.8; upper bound 0 spread
    assert _row(lines, "ZS-CLT (NLI) En-Clone acc % ↑") == "| ZS-CLT (NLI) En-Clone acc % ↑ | 42.0 ± 2.8 | 63.0 ± 2.8 | 58.0 ± 0.0 | – |"
    # gap shares of the means: (63 - 42) / (70 - 42) = 75 %, (58 - 42) / 28 = 57 %
    assert "| NLI En-Clone | 75 % | 57 % |" in lines
    # paired differences from Joint Training: NLI En-Clone prealign - joint = 21 / 21 (SE 0), upper bound 18 / 14
    # -> 16.0 ± sqrt(((18-16)^2 + (14-16)^2) / 1 / 2) = 2.0; perplexity -6 / -6; CLKA En -2 / -2
    assert _row(lines, "ZS-CLT (NLI) En-Clone (points)") == \
        "| ZS-CLT (NLI) En-Clone (points) | +21.0 ± 0.0 (+21.0 / +21.0) | +16.0 ± 2.0 (+18.0 / +14.0) |"
    assert _row(lines, "LM En-Clone perplexity") == "| LM En-Clone perplexity | -6.00 ± 0.00 (-6.00 / -6.00) | -8.00 ± 0.00 (-8.00 / -8.00) |"
    assert "| Metric | PreAlign − Joint Training | upper_bound − Joint Training |" in lines
    assert "Ablations (mean ± sd over the seeds that ran them):" in lines
    assert _row(lines, "post") == "| post | 70.0 | 33.0 | 27.0 | 35.0 | – | – | 0.90 / 0.45 |"  # one seed: no spread
    out = json.load(open(mj))
    assert out["seeds"] == [1, 2] and set(out["per_seed"]) == {"1", "2"} and "post" not in out["per_seed"]["2"]
    assert out["mean"]["joint"]["xnli_en_clone"] == pytest.approx(42.0)
    assert out["sd"]["joint"]["xnli_en_clone"] == pytest.approx(8 ** 0.5) and "xnli_en_clone_se" not in out["mean"]["joint"]
    assert "xnli_en_clone" not in out["sd"]["post"]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    _experiment(str(tmp_path))
    md = str(tmp_path / "README.md")

    def usage_error(extra, layout_flags=None):
        with pytest.raises(SystemExit) as info:
            _tool()((_flags(str(tmp_path)) if layout_flags is None else layout_flags) + extra + ["--output", md])
        assert info.value.code == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    assert usage_error(["--oracle", f"nobody={tmp_path}"]).endswith(
        "error: --oracle nobody=...: nobody is not the name of a --run or --ablation")
    assert usage_error(["--ablation-rows", "joint,typo"]).endswith("error: --ablation-rows typo: no --run or --ablation of that name")
    assert usage_error(["--control", "x=y"], ["--layout", "synthetic", "--run", f"J={tmp_path / 'results' / 'joint'}"]).endswith(
        "error: --control: only with --layout arms")
    missing = str(tmp_path / "results" / "gone")
    assert _tool()(_flags(str(tmp_path)) + ["--ablation", f"gone={missing}", "--output", md, "--metrics-json", md + ".json"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"summarize_results.py: error: run gone: {missing}: no such run folder"]
    assert not os.path.exists(md) and not os.path.exists(md + ".json")
