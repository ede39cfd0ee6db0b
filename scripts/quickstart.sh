#!/usr/bin/env bash
# The quickstart: set up ./.venv (scripts/setup_env.sh, installs only what is missing), then run
# PreAlign end to end on built-in data (no download): Joint Training, PreAlign, the upper bound:
#   bash scripts/quickstart.sh                     # full run, ~27 min on an idle 2-core CPU (+ setup) -> ./quickstart_out
#   bash scripts/quickstart.sh --small             # tiny sizes, a few minutes
#   bash scripts/quickstart.sh --output-dir DIR    # elsewhere; re-running skips finished stages (--force redoes)
# Every flag is passed to examples/quickstart/run.py (see its --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)
echo "[quickstart] setting up the environment (scripts/setup_env.sh)"
bash scripts/setup_env.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python examples/quickstart/run.py "$@"
echo "[quickstart] total wall time (setup included): $(( $(date +%s) - start )) s"
