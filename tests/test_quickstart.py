"""The quickstart pipeline (examples/quickstart/run.py) and its generated NLI task.

The slow test runs ``--small`` end to end in a subprocess (hard timeout; the whole process tree is
killed when it expires) and checks every result file the README promises: each evaluation JSON
with numbers in range, the summary Markdown with both runs, the PNGs, the training logs of both
runs (PreAlign's alignment stage included). A second invocation must skip every finished stage.
Fast tests cover the NLI generator and the driver's failure path.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "examples" / "quickstart" / "run.py"
SMALL_TIMEOUT_S = 1200


def _load_driver():
    spec = importlib.util.spec_from_file_location("quickstart_run", DRIVER)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["quickstart_run"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _run_driver(args, timeout):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(DRIVER)] + args, cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"quickstart timed out after {timeout}s:\n{out.decode(errors='replace')[-6000:]}")
    return proc.returncode, out.decode("utf-8", errors="replace")


# ------------------------------------------------------------------------- fast tests
def test_nli_task_is_balanced_deterministic_and_readable(tmp_path):
    from megatron_prealign.synthetic.nli import LABELS, NLITaskConfig, generate_pairs, write_xnli_task
    from megatron_prealign.eval.nli_formats import read_nli

    pairs = generate_pairs(300, seed=5)
    assert pairs == generate_pairs(300, seed=5) and pairs != generate_pairs(300, seed=6)
    assert [sum(1 for *_, l in pairs if l == k) for k in range(3)] == [100, 100, 100]
    for premise, hyp, label in pairs:
        if label == 2:  # contradiction: negated, or exactly one adjective flipped
            assert "never" in hyp.split() or len(hyp.split()) == len(premise.split())
        if label == 1:  # neutral adds words; entailment never does
            assert len(hyp.split()) > len(premise.split())
        if label == 0:
            assert len(hyp.split()) <= len(premise.split())
    paths = write_xnli_task(str(tmp_path), NLITaskConfig(train=30, dev=9, test=12, seed=3))
    for split, n in (("train", 30), ("dev", 9), ("test", 12)):
        examples, stats = read_nli(paths[split], language="en", strict=True)
        assert len(examples) == n and stats.malformed == []
        assert {e.label for e in examples} == {0, 1, 2}
    header = Path(paths["test"]).read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert header[:2] == ["language", "gold_label"] and "sentence1" in header and "sentence2" in header
    assert sorted(os.listdir(tmp_path)) == ["train.tsv", "xnli.dev.tsv", "xnli.test.tsv"]  # no temp files
    assert LABELS == ("entailment", "neutral", "contradiction")


def test_failing_command_stops_with_command_and_error(tmp_path, capsys):
    drv = _load_driver()
    pipe = drv.Pipeline(str(tmp_path / "out"), "small", force=False, from_stage=None, seed=1)
    with pytest.raises(drv.PipelineError) as info:
        pipe.run("boom", [sys.executable, "-c", "import sys; print('the real' + ' cause'); sys.exit(3)"])
    msg = str(info.value)
    assert "exit 3" in msg and "-c" in msg and "the real cause" in msg
    assert (tmp_path / "out" / "logs" / "boom.log").read_text().count("the real cause") == 1
    # a tool's one-line error is surfaced even when a launcher buries it under 30 lines of noise
    script = "import sys; print('tool.py: er' + 'ror: bad input x'); [print('noise', i) for i in range(30)]; sys.exit(1)"
    with pytest.raises(drv.PipelineError) as info:
        pipe.run("buried", [sys.executable, "-c", script])
    assert "\nerror: tool.py: error: bad input x\n" in str(info.value)


def test_output_dir_of_another_preset_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"preset": "full", "seed": 1234}))
    rc, text = _run_driver(["--small", "--output-dir", str(out)], timeout=120)
    assert rc == 2 and "holds a full run" in text


# ------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart") / "out"
    rc, text = _run_driver(["--small", "--output-dir", str(out)], timeout=SMALL_TIMEOUT_S)
    assert rc == 0, text[-8000:]
    return out, text


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@pytest.mark.slow
@pytest.mark.distributed
def test_small_run_produces_every_result(small_run):
    out, text = small_run
    # every stage ran (banners in order) and none was skipped on a fresh directory
    banners = re.findall(r"stage (\d)/6: (\w+)", text)
    assert banners == [(str(i + 1), s) for i, s in enumerate(("corpus", "tokenizer", "data", "train", "evaluate", "summary"))]
    assert "[skip]" not in text
    # every training ran under torchrun with 2 ranks to the last iteration; PreAlign had its stage
    drv = _load_driver()
    p = drv.PRESETS["small"]
    assert drv.RUNS == ("joint", "prealign", "upper_bound", "no_knowledge")
    for run in drv.RUNS:
        log = (out / "runs" / run / "train.log").read_text()
        assert "--nproc-per-node 2" in log.splitlines()[0]
        losses = drv.training_losses(str(out / "runs" / run / "train.log"))
        assert max(losses) == p.train_iters and all(_finite(v) and 0 < v < 20 for v in losses.values())
        stages = set(re.findall(r"\| stage: (\S+) \|", log))
        assert stages == ({"prealign", "lm"} if run == "prealign" else {"lm"}), stages
        assert (out / "runs" / run / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == str(p.train_iters)
        assert "--untie-embeddings-and-output-weights" in log.splitlines()[0]
        # the training log reports the aligned-word statistics of the embeddings
        assert re.search(r"align emb centred cos: [-0-9.]+", log), run
    # the alignment stage ended with a checkpoint of its own (alignment measured before the LM stage)
    assert (out / "runs" / "prealign" / "checkpoints" / f"iter_{p.prealign_iters:07d}").is_dir()
    assert "--clone-perfect-init" in (out / "runs" / "upper_bound" / "train.log").read_text().splitlines()[0]
    blend = (out / "runs" / "no_knowledge" / "train.log").read_text().splitlines()[0]
    assert "knowledge" not in blend.split("--data-path", 1)[1].split("--", 1)[0], blend
    assert "--codeswitch" in (out / "logs" / "codeswitch_en.log").read_text().splitlines()[0]
    assert (out / "data" / "en_cs_text_document_lossmask.bin").stat().st_size > 0
    table_header = json.loads((out / "tables" / "en_clone.jsonl").read_text().splitlines()[0])
    assert table_header["languages"] == ["en_clone"] and table_header["num_entries"] > 50

    for run in drv.ARMS:
        res = out / "results" / run
        ppl = json.loads((res / f"perplexity_iter{p.train_iters:07d}.json").read_text())
        assert ppl["task"] == "perplexity"
        for lang in ("en", "en_clone"):
            v = ppl["results"][lang]["overall"]["ppl"]
            # > 1; below 1e5 (a 2-layer model after 40 steps may be worse than uniform on En-Clone, not absurd)
            assert _finite(v) and 1.0 < v < 1e5 and ppl["results"][lang]["overall"]["tokens"] > 1000, (run, lang, v)
        for task, file, n_lang in (("clka", "clka.json", 2), ("xnli", "xnli.json", 2)):
            r = json.loads((res / file).read_text())
            assert r["task"] == task and set(r["results"]) == {"en", "en_clone"}, r
            for lang, entry in r["results"].items():
                assert 0.0 <= entry["accuracy"] <= 100.0, (run, task, lang, entry)
        mixed = json.loads((res / "mixed_script.json").read_text())
        assert mixed["task"] == "mixed_script" and 0.0 <= mixed["results"]["en_clone"]["ratio"] <= 100.0
        sim = json.loads((res / "similarity.json").read_text())
        assert sim["task"] == "similarity"
        its = sorted(int(pt["iteration"]) for pt in sim["results"])
        expected = set(range(p.save_interval, p.train_iters + 1, p.save_interval))
        assert its == sorted(expected | ({p.prealign_iters} if run == "prealign" else set())), (run, its)
        for pt in sim["results"]:
            for level, value in pt["similarity"].items():
                if level.endswith("/norm_ratio"):  # a ratio of norms, not a cosine
                    assert _finite(value) and value > 0, (level, value)
                    continue
                assert _finite(value) and -1.0001 <= value <= 1.0001, (level, value)

        # the oracle control: a re-aligned checkpoint, evaluated on CLKA and NLI
        oracle = out / "results" / drv.oracle_name(run)
        clka = json.loads((oracle / "clka.json").read_text())
        assert clka["control"] == "oracle-realign" and set(clka["results"]) == {"en", "en_clone"}
        assert set(json.loads((oracle / "xnli.json").read_text())["results"]) == {"en", "en_clone"}
    control = json.loads((out / "results" / "no_knowledge" / "clka.json").read_text())
    assert control["control"] == "no-knowledge"
    # the familiarity baseline of the block-distractor test is chance, exactly
    fam = control["controls"]["familiarity"]
    assert fam["en"]["accuracy"] == pytest.approx(25.0) and fam["en_clone"]["accuracy"] == pytest.approx(25.0), fam

    # the pre-alignment stage aligned the embeddings: PreAlign's aligned words are closer
    metrics = json.loads((out / "summary" / "metrics.json").read_text())
    assert set(metrics) == set(drv.RUNS) | {drv.oracle_name(a) for a in drv.ARMS}
    for run in drv.ARMS:
        assert all(metrics[run][k] is not None for k in ("ppl_en_clone", "xnli_en_clone", "clka_en_clone",
                                                        "sim_emb_centred", "sim_layers_raw")), metrics[run]
    assert metrics["prealign"]["sim_layers_raw"] > metrics["joint"]["sim_layers_raw"]
    # the oracle re-alignment makes the clone rows copies of the English ones (plus an offset)
    assert metrics["upper_bound"]["sim_emb_centred"] > metrics["joint"]["sim_emb_centred"]

    table1 = (out / "summary" / "table1.md").read_text()
    assert "| Joint Training |" in table1 and "| PreAlign |" in table1 and "LM En-Clone" in table1
    assert "None" not in table1 and "nan" not in table1.lower()
    report = (out / "summary" / "README.md").read_text()
    rows = [line.split("|")[1:-1] for line in report.splitlines() if line.startswith(("| LM", "| ZS-CLT", "| CLKA En"))]
    rows = [cells for cells in rows if cells[0].strip() != "CLKA En-Clone"]  # the gap-share table's row
    assert len(rows) == 8, report  # 6 metrics + the two CLKA oracle rows
    for cells in rows:
        # the three arms all measured ("value" or "value ± se")
        assert all(_finite(float(c.split("±")[0])) for c in cells[1:4]), cells
    assert "familiarity baseline" in report and "No-knowledge model" in report and "gap closed" in report
    for png in ("training_lm_loss.png", "final_metrics.png", "similarity_emb.png", "similarity_out.png"):
        data = (out / "summary" / "plots" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, png
    assert not list(out.rglob("*.tmp-*")), list(out.rglob("*.tmp-*"))


@pytest.mark.slow
@pytest.mark.distributed
def test_rerun_skips_finished_stages(small_run):
    out, _ = small_run
    rc, text = _run_driver(["--small", "--output-dir", str(out)], timeout=240)
    assert rc == 0, text[-4000:]
    assert "[skip] corpus exists" in text and "[skip] tokenizer exists" in text
    assert "[skip] joint: trained to iteration" in text and "[skip] prealign: trained to iteration" in text
    assert "pretrain_prealign.py" not in text and "eval_xnli.py" not in text  # nothing recomputed
    assert "summarize_results.py" in text  # the summary is always rebuilt (cheap)


def test_ablation_runs_differ_from_prealign_only_where_the_paper_says(tmp_path, monkeypatch):
    """Each ablation's command = the arm it ablates, with exactly the documented difference."""
    drv = _load_driver()
    pipe = drv.Pipeline(str(tmp_path / "out"), "full", force=False, from_stage=None, seed=1, ablations=drv.ABLATIONS)
    monkeypatch.setattr(pipe, "blend", lambda english, knowledge=True, knowledge_prefix=None:
                        [os.path.basename(english), os.path.basename(knowledge_prefix or "period_000_text_document")])
    p = drv.PRESETS["full"]

    def flags(run):
        cmd = pipe.train_cmd(run)
        return cmd[cmd.index("--alignment-table"):]  # the common model/optimizer flags come first

    def value(run, flag):
        cmd = flags(run)
        return cmd[cmd.index(flag) + 1] if flag in cmd else None

    assert pipe.train_cmd("prealign")[:20] == pipe.train_cmd("post")[:20]  # same model and budget
    assert value("prealign", "--data-path") == value("joint_cs", "--data-path") == "en_cs_text_document"
    assert value("joint", "--data-path") == value("prealign_no_cs", "--data-path") == "en_text_document"
    assert value("on_the_fly", "--data-path") == value("post", "--data-path") == "en_text_document"
    assert value("joint_cs", "--prealign-mode") == "none" and value("prealign_no_cs", "--prealign-mode") == "init"
    assert value("on_the_fly", "--prealign-mode") == "on-the-fly" and value("on_the_fly", "--prealign-iters") is None
    assert value("post", "--prealign-mode") == "post" and value("post", "--prealign-lm-weight") == "1.0"
    assert int(value("prealign", "--prealign-iters")) == p.prealign_iters == 300
    assert int(value("prealign_short", "--prealign-iters")) == p.prealign_iters // 3 == 100  # the earlier default
    assert [x for x in flags("prealign_short") if x != str(p.prealign_iters // 3)] == \
        [x for x in flags("prealign") if x != str(p.prealign_iters)]
    assert int(value("post", "--prealign-iters")) == p.post_iters == 100  # as measured in docs/results
    assert value("post", "--prealign-lr") is None  # the post stage re-warms to --lr
    post_low = flags("post_low_lr")
    post_cmd = pipe.train_cmd("post")
    assert float(value("post_low_lr", "--prealign-lr")) == float(post_cmd[post_cmd.index("--min-lr") + 1]) == p.lr / 10
    assert [x for x in post_low if x not in ("--prealign-lr", str(p.lr / 10))] == flags("post")
    cs_k = flags("prealign_cs_knowledge")
    assert cs_k[-1] == "knowledge_cs_text_document" and cs_k[:-1] == flags("prealign")[:-1]
    assert set(drv.ABLATIONS) <= set(pipe.runs) and set(drv.ABLATIONS) <= set(pipe.oracle_runs)


def test_ablation_table_rows_follow_the_paper(tmp_path, capsys):
    """The report flags the driver passes to tools/summarize_results.py give the paper's row order and titles."""
    drv = _load_driver()
    out = tmp_path / "out"
    pipe = drv.Pipeline(str(out), "small", force=False, from_stage=None, seed=1, ablations=["post", "joint_cs"])
    assert drv.ablation_rows(pipe.ablations) == ["joint", "joint_cs", "prealign", "post", "upper_bound"]
    for i, run in enumerate(list(pipe.runs) + [drv.oracle_name(r) for r in pipe.oracle_runs]):
        folder = out / "results" / run
        folder.mkdir(parents=True)
        clka = {"en_clone": {"accuracy": 44.0 if run == "post_oracle" else 25.0 + i, "stderr": 3.5}}
        (folder / "clka.json").write_text(json.dumps({"task": "clka", "checkpoint": {"iteration": 40}, "period": None, "results": clka}))
    spec = importlib.util.spec_from_file_location("summarize_results", REPO / "tools" / "summarize_results.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(pipe.report_flags(str(out))) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = lines[lines.index("Ablations (same budget; ± = binomial standard error):") + 4:]
    titles = [line.split(" | ")[0][2:] for line in rows if line.startswith("| ")]
    assert titles == ["#1 Joint Training", "#2 Joint + input-only CS", "#4 PreAlign", "Post alignment",
                      "Upper bound (perfect init)"]
    post = rows[titles.index("Post alignment")]
    assert post.startswith("| Post alignment | – | – | 29.0 ± 3.5 |") and "| 44.0 ± 3.5 |" in post, post


def test_preset_overrides_are_checked_and_guard_the_output_dir(tmp_path):
    rc, text = _run_driver(["--small", "--set", "knowledge_bost=20", "--output-dir", str(tmp_path / "a")], timeout=120)
    assert rc == 2 and "--set knowledge_bost=20" in text and "knowledge_boost" in text
    rc, text = _run_driver(["--small", "--set", "train_iters=many", "--output-dir", str(tmp_path / "a")], timeout=120)
    assert rc == 2 and "'many' is not a valid int" in text
    rc, text = _run_driver(["--small", "--ablations", "joint,post", "--output-dir", str(tmp_path / "a")], timeout=120)
    assert rc == 2 and "unknown run(s) joint" in text
    out = tmp_path / "b"
    out.mkdir()
    drv = _load_driver()
    import dataclasses as dc
    (out / "config.json").write_text(json.dumps({"preset": "small", "seed": 1234, "sizes": dc.asdict(drv.PRESETS["small"])}))
    rc, text = _run_driver(["--small", "--set", "knowledge_boost=20", "--output-dir", str(out)], timeout=120)
    assert rc == 2 and "other sizes (knowledge_boost)" in text
