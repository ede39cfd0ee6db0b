#!/bin/bash
# GPU check of issue 10 on one H100/H200 (under 8 minutes): TE spec + bf16, pre-alignment and LM
# steps of a 150M GPT (12 x 768), tokens/s and MFU of the Joint and PreAlign arms, and the
# alignment/LM loss of the TE spec against the local spec with the same weights.
#
#   bash bench/gpu_check.sh                # prints RESULT lines, then "gpu_check: PASS|FAIL"
#   bash bench/gpu_check.sh --iters 60     # extra flags go to bench/gpu_check.py
#
# Exit status: 0 pass, 1 a check failed, 2 no CUDA (only the CPU-safe parts ran), 124 time limit.
# GPU_CHECK_TIMEOUT (seconds, default 470) bounds the whole run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export CUDA_DEVICE_MAX_CONNECTIONS=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
PYTHON="${PYTHON:-python}"
if "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
    "$PYTHON" -c "import transformer_engine.pytorch" 2>/dev/null \
        || { echo "gpu_check: TransformerEngine is not importable (pip install transformer-engine[pytorch])"; exit 1; }
fi
exec timeout --kill-after=10 "${GPU_CHECK_TIMEOUT:-470}" "$PYTHON" bench/gpu_check.py "$@"
