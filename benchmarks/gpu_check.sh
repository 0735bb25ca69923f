#!/usr/bin/env bash
# The GPU check from a fresh clone: install the project's .venv (as `make run` does), then run
# benchmarks/gpu_check.py, which prints our CUDA figures beside published ones in under 8 minutes.
#   bash benchmarks/gpu_check.sh               # on a machine with an NVIDIA GPU
#   bash benchmarks/gpu_check.sh --dry-run     # anywhere: every section at toy sizes on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
make -s .venv/.installed
echo "install: $(( $(date +%s) - start )) s (not counted in the check's own time)"
exec .venv/bin/python benchmarks/gpu_check.py "$@"
