"""Summary tables and curves from fixture result JSONs."""

import json
import os

import pytest

from megatron_prealign.eval import summary


def _write(folder, name, payload):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w") as fh:
        json.dump(payload, fh)


def _fixture(root, name, it, ppl_en, ppl_clone, acc_clone, clka_clone):
    d = os.path.join(root, name)
    ck = {"iteration": it}
    _write(d, f"ppl_{it}.json", {"task": "perplexity", "checkpoint": ck, "results": {
        "en": {"overall": {"ppl": ppl_en}}, "en_clone": {"overall": {"ppl": ppl_clone}}}})
    _write(d, f"xnli_{it}.json", {"task": "xnli", "checkpoint": ck, "results": {
        "en": {"accuracy": 80.0}, "en_clone": {"accuracy": acc_clone}}})
    _write(d, f"clka_{it}.json", {"task": "clka", "checkpoint": ck, "period": None, "results": {
        "en_clone": {"accuracy": clka_clone}, "en": {"accuracy": 95.0}}})
    return d


def test_synthetic_table_uses_latest_iteration(tmp_path):
    joint = _fixture(str(tmp_path), "joint", 100, 17.0, 25.0, 70.0, 26.0)
    _fixture(str(tmp_path), "joint", 200, 16.1, 21.6, 74.9, 27.7)
    pre = _fixture(str(tmp_path), "prealign", 200, 15.9, 16.5, 79.3, 90.3)
    _write(pre, "notes.json", {"something": "else"})
    runs = {"Joint Training": summary.load_run(joint), "PreAlign": summary.load_run(pre)}
    md = summary.table(runs, "synthetic").splitlines()
    assert md[0].startswith("| Method | LM En (ppl↓) | LM En-Clone (ppl↓)")
    assert md[2] == "| Joint Training | 16.1 | 21.6 | 80.0 | 74.9 | 27.7 | 95.0 |"
    assert md[3] == "| PreAlign | 15.9 | 16.5 | 80.0 | 79.3 | 90.3 | 95.0 |"
    abl = summary.table(runs, "ablation", target="en_clone").splitlines()
    assert abl[3] == "| PreAlign | 16.5 | 79.3 | 90.3 | 15.9 | - |"
    real = summary.table(runs, "real", languages=["en", "de"]).splitlines()
    assert real[0] == "| Method | LM En | LM De | ZS-CLT En | ZS-CLT De | CLKA En | CLKA De |"
    assert real[2] == "| Joint Training | 16.1 | - | 80.0 | - | - | - |"
    with pytest.raises(ValueError, match="unknown layout"):
        summary.table(runs, "table9")
    cur = summary.curves(runs)
    assert cur["clka_en_clone"] == {"Joint Training": {100: 26.0, 200: 27.7}}
    assert cur["perplexity_en_clone"]["Joint Training"] == {100: 25.0, 200: 21.6}


def test_period_results_do_not_replace_final_clka(tmp_path):
    d = str(tmp_path / "r")
    _write(d, "clka.json", {"task": "clka", "checkpoint": {"iteration": 100}, "period": None, "results": {"de": {"accuracy": 40.0}}})
    _write(d, "clka_p3.json", {"task": "clka", "checkpoint": {"iteration": 900}, "period": 3, "results": {"de": {"accuracy": 10.0}}})
    assert summary.metric(summary.load_run(d), "clka", "de") == 40.0


def test_bad_json_is_one_line_error(tmp_path):
    (tmp_path / "x.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"x.json: invalid JSON"):
        summary.load_run(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        summary.load_run(str(tmp_path / "missing"))


def test_clka_controls_and_alignment_tables(tmp_path):
    d = str(tmp_path / "nk")
    _write(d, "clka.json", {"task": "clka", "checkpoint": {"iteration": 5}, "period": None, "control": "no-knowledge",
                            "results": {"en": {"accuracy": 26.0, "stderr": 3.1, "chance": 25.0}},
                            "controls": {"familiarity": {"en": {"accuracy": 25.0, "stderr": 3.06}}}})
    _write(d, "sim.json", {"task": "similarity", "checkpoint": {"iteration": 5}, "results": [
        {"iteration": 1, "similarity": {"emb": 0.5, "emb/centred_cosine": 0.9}},
        {"iteration": 5, "similarity": {"emb": 0.4, "emb/raw_cosine": 0.35, "emb/centred_cosine": 0.75, "emb/norm_ratio": 1.1,
                                        "emb/unaligned": 0.1}}]})
    runs = {"No knowledge": summary.load_run(d)}
    assert summary.clka_controls(runs).splitlines()[2] == "| No knowledge | En | 26.0 ± 3.1 | 25.0 | 25.0 ± 3.1 | no-knowledge |"
    assert summary.alignment_table(runs).splitlines()[2] == "| No knowledge | 5 | emb | 0.350 | 0.750 | 1.100 |"
    assert summary.curves(runs)["similarity_centred_emb"] == {"No knowledge": {1: 0.9, 5: 0.75}}
    assert summary.clka_controls({"x": {}}) is None and summary.alignment_table({"x": {}}) is None
