"""examples/slurm/launch.sbatch under a SIGTERM (SLURM's --signal=B:TERM@120), with stub srun/scontrol.

The batch shell must forward the signal to the training ranks (srun ... pkill -TERM -f on the
worker command line), stop the recipe before it evaluates a partial run, requeue and exit 0; with
no signal the recipe's exit status passes through.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SBATCH = REPO / "examples" / "slurm" / "launch.sbatch"


def _setup(tmp_path: Path, recipe_body: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    for name in ("srun", "scontrol"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/bash\necho "{name} $*" >> "{calls}"\n')
        stub.chmod(0o755)
    (tmp_path / "recipe.sh").write_text(recipe_body)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PREALIGN_REPO=str(tmp_path),
               SLURM_JOB_ID="4242", SLURM_NNODES="2", GPUS_PER_NODE="1")
    env.pop("SLURM_JOB_NODELIST", None)
    return env, calls


def test_sigterm_is_forwarded_to_the_ranks_then_requeue(tmp_path):
    assert "#SBATCH --signal=B:TERM@120" in SBATCH.read_text() and "#SBATCH --requeue" in SBATCH.read_text()
    env, calls = _setup(tmp_path, 'touch "$PREALIGN_REPO/started"\n'
                                  'for i in $(seq 600); do sleep 0.05; done\n'
                                  'touch "$PREALIGN_REPO/evaluated"\n')
    proc = subprocess.Popen(["bash", str(SBATCH), "recipe.sh"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    log = calls.read_text().splitlines()
    assert log[0].startswith("srun --overlap --nodes 2 --ntasks-per-node 1 pkill -TERM -f -- -u "), log
    assert "scontrol requeue 4242" in log, log
    assert not (tmp_path / "evaluated").exists()


def test_without_a_signal_the_recipe_status_passes_through(tmp_path):
    env, calls = _setup(tmp_path, "exit 3\n")
    res = subprocess.run(["bash", str(SBATCH), "recipe.sh"], env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 3, res.stdout + res.stderr
    assert not calls.exists()


def test_worker_pattern_matches_ranks_not_torchrun():
    import re

    text = SBATCH.read_text()
    pattern = re.search(r"RANK_PATTERN='([^']+)'", text).group(1)
    rank = "/venv/bin/python -u /repo/pretrain_prealign.py --num-layers 2"
    torchrun = "/venv/bin/python /venv/bin/torchrun --nnodes 2 --nproc-per-node 8 /repo/pretrain_prealign.py --x"
    assert re.search(pattern, rank) and not re.search(pattern, torchrun)
