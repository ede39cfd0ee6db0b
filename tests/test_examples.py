"""The paper recipes in examples/: syntax, dry runs accepted by the real parsers, SLURM launch, README.

Every recipe is run with DRY_RUN=1 (bash only: no GPU, data or SLURM); the printed
pretrain_prealign.py flags go through ``cli.pretrain`` (parser + validation with the
world size the launch implies) and every printed ``tools/*.py`` command through that tool's own
argument parser (parsed only: ``parse_args`` is intercepted before the tool does any work).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_prealign.cli.pretrain import build_parser, validate_args

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
RECIPES = sorted(p for d in ("en_clone", "real") for p in (EXAMPLES / d).glob("*.sh"))
SCRIPTS = sorted(list(EXAMPLES.rglob("*.sh")) + list(EXAMPLES.rglob("*.sbatch")))


def _dry_run(script, *args, tmp_path, **env_extra):
    env = dict(os.environ)
    for key in ("LAUNCHER", "NNODES", "SLURM_NNODES", "SLURM_JOB_ID", "SLURM_JOB_NODELIST", "MASTER_ADDR",
                "MASTER_PORT", "GPUS_PER_NODE", "STAGES", "EXTRA_ARGS", "MODEL_SIZE", "TOKENIZER", "TP", "PP",
                "MICRO_BATCH_SIZE", "GLOBAL_BATCH_SIZE", "SAVE_INTERVAL", "PREALIGN_REPO", "SLURM_SUBMIT_DIR"):
        env.pop(key, None)
    env.update(DRY_RUN="1", DATA_DIR=str(tmp_path / "data"), CKPT_DIR=str(tmp_path / "ckpt"),
               RESULTS_DIR=str(tmp_path / "results"))
    env.update(env_extra)
    proc = subprocess.run(["bash", str(script), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{script}: exit {proc.returncode}\n{proc.stderr}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    assert not (tmp_path / "data").exists(), "a dry run must not create anything"
    return lines


def _pretrain_args(line):
    argv = shlex.split(line)
    idx = next(i for i, a in enumerate(argv) if a.endswith("pretrain_prealign.py"))
    return argv[:idx], argv[idx + 1:]


def _parse_pretrain(flags, world_size):
    args = build_parser().parse_args(flags)
    validate_args(args, world_size=world_size)
    return args


class _Parsed(Exception):
    pass


def _check_tool_command(line):
    """Parse a printed ``python tools/X.py ...`` line with the tool's own parser (no work done)."""
    argv = shlex.split(line)
    idx = next(i for i, a in enumerate(argv) if a.endswith(".py"))
    path = Path(argv[idx])
    assert path.parent == REPO / "tools" and path.is_file(), f"no such tool: {path}"
    spec = importlib.util.spec_from_file_location(f"_recipe_tool_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    original = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    argparse.ArgumentParser.parse_args = parse_only
    try:
        with pytest.raises(_Parsed):
            module.main(argv[idx + 1:])
    finally:
        argparse.ArgumentParser.parse_args = original


def test_recipes_exist():
    names = {p.relative_to(EXAMPLES).as_posix() for p in RECIPES}
    for required in ("en_clone/t1_only_target.sh", "en_clone/t1_joint.sh", "en_clone/t1_prealign.sh",
                     "en_clone/t1_full_target.sh", "en_clone/t2_on_the_fly.sh", "en_clone/t2_post.sh",
                     "en_clone/t3_2_joint_cs.sh", "en_clone/t3_3_joint_init.sh", "en_clone/t4_vanilla_cs.sh",
                     "en_clone/t5_top.sh", "real/t6_joint_1.3b.sh", "real/t6_prealign_150m.sh"):
        assert required in names
    assert (EXAMPLES / "slurm" / "launch.sbatch").is_file()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_bash_syntax(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_recipe_dry_run_is_accepted_by_the_real_parsers(tmp_path):
    """One torchrun per recipe, flags accepted by pretrain_prealign.py's parser and validation."""
    seen_modes = set()
    tool_lines = {}
    for recipe in RECIPES:
        lines = _dry_run(recipe, tmp_path=tmp_path, FIG4_PERIODS="2")
        train = [ln for ln in lines if "pretrain_prealign.py" in ln]
        if recipe.name.startswith("fig4_"):  # one launch per 250-step knowledge period (+ pre-alignment)
            assert len(train) == 2 + (recipe.name == "fig4_prealign.sh"), recipe
            periods = train[-2:]
            for p, ln in enumerate(periods):
                args = _parse_pretrain(_pretrain_args(ln)[1], world_size=8)
                assert args.exit_interval == 250
                knowledge = [x for x in args.train_data_path if "clka_fig4_" in x]
                assert len(knowledge) == 2 and all(x.endswith(f"period_{p:03d}_text_document") for x in knowledge)
            evals = [re.search(r"--iteration (\d+) .*--period (\d+)", ln).groups() for ln in lines if "eval_clka.py" in ln]
            start = 500 if recipe.name == "fig4_prealign.sh" else 0
            assert evals == [(str(start + 250), "0")] * 2 + [(str(start + 500), "1")] * 2
        else:
            assert len(train) == 1, f"{recipe}: expected one training command, got {len(train)}"
        launch, flags = _pretrain_args(train[-1])
        assert launch[:1] == ["torchrun"] and "--standalone" in launch
        assert launch[launch.index("--nproc-per-node") + 1] == "8"
        args = _parse_pretrain(flags, world_size=8)
        seen_modes.add(args.prealign_mode)
        clone = "/en_clone/" in recipe.as_posix()
        assert args.en_clone == clone, recipe
        assert (args.num_layers, args.hidden_size, args.seq_length) in {(12, 1024, 1024), (24, 1024, 1024), (24, 2048, 1024)}
        assert args.global_batch_size * args.seq_length == 1024 * 1024  # ~1M tokens (paper §4.3)
        assert args.lr_decay_style == "cosine"
        if args.prealign_mode in ("init", "post"):
            assert args.prealign_iters == 500 and args.train_iters == 24500
        else:
            assert args.prealign_iters == 0 and args.train_iters == 24000
        assert args.save == args.load  # resumable
        # Megatron-LM's per-split data: every training dataset (CLKA knowledge included) is read
        # whole, validation reads only the held-out *_valid sets
        assert args.data_path is None and args.split is None, recipe
        assert args.eval_iters > 0 and args.valid_data_path and args.test_data_path is None
        valid_prefixes = args.valid_data_path[1::2] if len(args.valid_data_path) > 1 else args.valid_data_path
        assert valid_prefixes and all(p.endswith("_valid_text_document") for p in valid_prefixes), recipe
        assert not set(valid_prefixes) & set(args.train_data_path), recipe
        if recipe.name in ("t1_only_target.sh", "t1_full_target.sh"):
            assert valid_prefixes == [str(tmp_path / "data" / "en_clone" / "clone_valid_text_document")]
        elif not recipe.name.startswith("fig4_"):
            assert any("clka/knowledge/" in x for x in args.train_data_path), recipe
            langs = {Path(p).name.split("_valid")[0] for p in valid_prefixes}
            assert langs == ({"en", "clone"} if clone else {"en", "zh", "de", "ar", "ru"}), recipe
        for ln in lines:
            if re.search(r"/tools/\w+\.py", ln):
                tool_lines.setdefault(re.search(r"/tools/(\w+)\.py", ln).group(1), set()).add(ln)
    assert seen_modes == {"init", "on-the-fly", "post", "none"}
    # data preparation and evaluation tools are called with flags they accept
    for tool in ("train_tokenizer", "preprocess_data", "build_alignment_table", "make_en_clone", "make_clka",
                 "codeswitch_dataset", "eval_perplexity", "eval_xnli", "eval_clka", "eval_similarity",
                 "eval_mixed_script"):
        assert tool in tool_lines, f"no recipe calls tools/{tool}.py"
    for tool, lines in sorted(tool_lines.items()):
        for ln in sorted(lines):
            _check_tool_command(ln)


def test_rows_differ_as_in_the_paper(tmp_path):
    def run(name, *args):
        lines = _dry_run(EXAMPLES / "en_clone" / name, *args, tmp_path=tmp_path)
        return _parse_pretrain(_pretrain_args(next(ln for ln in lines if "pretrain_prealign.py" in ln))[1], 8)

    joint, prealign, cs, vanilla = (run(n) for n in ("t1_joint.sh", "t1_prealign.sh", "t3_2_joint_cs.sh", "t4_vanilla_cs.sh"))
    top25, top75 = run("t5_top.sh", "25"), run("t5_top.sh", "75")
    blend = lambda a: a.train_data_path[1::2]  # noqa: E731
    assert joint.prealign_mode == "none" and prealign.prealign_mode == "init"
    assert "input_cs" not in blend(joint)[0] and "input_cs" in blend(prealign)[0]
    assert blend(cs)[0] == blend(prealign)[0] and cs.prealign_mode == "none"
    assert "vanilla_cs" in blend(vanilla)[0]
    assert blend(joint)[1:] == blend(prealign)[1:]  # same target + knowledge data
    assert top25.prealign_table != prealign.prealign_table and "top25" in top25.prealign_table
    assert "top25" in blend(top25)[0]  # codeswitched with the same (top-25%) table
    assert "top75" in top75.prealign_table and "top75" in blend(top75)[0]
    assert vars(top25).keys() == vars(top75).keys()
    assert joint.train_data_path[0::2] == ["100", "1", "0.01"]  # 10B : 100M tokens


def test_slurm_dry_run_prints_srun_torchrun_with_c10d(tmp_path):
    lines = _dry_run(EXAMPLES / "slurm" / "launch.sbatch", "examples/real/t6_prealign_400m.sh", tmp_path=tmp_path,
                     SLURM_NNODES="4", SLURM_JOB_ID="4242", GPUS_PER_NODE="4", MASTER_ADDR="node001")
    train = [ln for ln in lines if "pretrain_prealign.py" in ln]
    assert len(train) == 1
    launch, flags = _pretrain_args(train[0])
    assert launch[0] == "srun" and "torchrun" in launch
    tr = launch[launch.index("torchrun"):]
    opt = lambda name: tr[tr.index(name) + 1]  # noqa: E731
    assert launch[launch.index("--nodes") + 1] == "4"
    assert opt("--nnodes") == "4" and opt("--nproc-per-node") == "4"
    assert opt("--rdzv-backend") == "c10d" and opt("--rdzv-id") == "4242"
    assert re.fullmatch(r"node001:\d+", opt("--rdzv-endpoint"))
    args = _parse_pretrain(flags, world_size=16)
    assert args.num_layers == 24 and args.hidden_size == 1024 and args.prealign_mode == "init"
    # --dry-run flag instead of DRY_RUN=1, through the sbatch wrapper
    env_lines = _dry_run(EXAMPLES / "slurm" / "launch.sbatch", "examples/en_clone/t2_post.sh", "--dry-run",
                         tmp_path=tmp_path, DRY_RUN="0", SLURM_NNODES="2")
    assert any(ln.startswith("srun ") and "--nnodes 2" in ln for ln in env_lines)


def test_a_flag_typo_is_caught(tmp_path):
    lines = _dry_run(EXAMPLES / "en_clone" / "t1_prealign.sh", tmp_path=tmp_path, EXTRA_ARGS="--prealign-itres 5")
    flags = _pretrain_args(next(ln for ln in lines if "pretrain_prealign.py" in ln))[1]
    with pytest.raises(SystemExit):
        _parse_pretrain(flags, 8)
    with pytest.raises(ValueError, match="global-batch-size"):  # the world-size check is live too
        _parse_pretrain(_pretrain_args(next(ln for ln in lines if "pretrain_prealign.py" in ln))[1][:-2], 12)


def test_launcher_rejects_a_batch_the_gpus_cannot_split(tmp_path):
    env = dict(os.environ, DRY_RUN="1", DATA_DIR=str(tmp_path / "d"), GPUS_PER_NODE="4", NNODES="3", STAGES="train")
    proc = subprocess.run(["bash", str(EXAMPLES / "real" / "t6_joint_400m.sh")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "GLOBAL_BATCH_SIZE 1024 is not a multiple" in proc.stderr
    assert "pretrain_prealign.py" not in proc.stdout


def test_stages_and_existing_outputs_are_skipped(tmp_path):
    """Real (non-dry) run of the data stage with PYTHON=echo: existing outputs are not rebuilt."""
    data = tmp_path / "data"
    (data / "en_clone").mkdir(parents=True)
    (data / "en_clone" / "en_train_text_document.idx").write_bytes(b"")
    env = dict(os.environ, DRY_RUN="0", STAGES="data", PYTHON="echo", DATA_DIR=str(data),
               CKPT_DIR=str(tmp_path / "ckpt"), RESULTS_DIR=str(tmp_path / "results"))
    env.pop("EXTRA_ARGS", None)
    proc = subprocess.run(["bash", str(EXAMPLES / "en_clone" / "t1_joint.sh")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--output-prefix" in proc.stdout and "make_en_clone.py" in proc.stdout
    assert f"{data}/en_clone/en_train " not in proc.stdout + " "  # skipped: exists
    assert "exists, skipped" in proc.stderr
    assert "make_clka.py" in proc.stdout and not (data / "en_clone" / "clka").exists()  # it must create it itself
    assert "pretrain_prealign.py" not in proc.stdout and "eval_" not in proc.stdout


def test_readme_lists_every_recipe_and_nothing_else():
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    table = [ln for ln in text.splitlines() if ln.startswith("|")]
    listed = set(re.findall(r"`((?:en_clone|real)/[\w.]+\.sh)`", "\n".join(table)))
    actual = {p.relative_to(EXAMPLES).as_posix() for p in RECIPES}
    assert listed == actual, f"missing in README: {sorted(actual - listed)}; not a file: {sorted(listed - actual)}"
    for other in ("common.sh", "slurm/launch.sbatch", "summarize_tables.sh"):
        assert f"`{other}`" in text


def test_summarize_dry_run_uses_the_tool(tmp_path):
    lines = _dry_run(EXAMPLES / "summarize_tables.sh", tmp_path=tmp_path)
    assert len(lines) == 9  # tables 1-5, Fig. 4, table 6 per model size
    for ln in lines:
        _check_tool_command(ln)
    assert any("--layout synthetic" in ln for ln in lines) and any("--layout real" in ln for ln in lines)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
