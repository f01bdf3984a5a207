#!/usr/bin/env bash
# The merge state machine's plan, map children and reduce at 10,000 and 100,000 environments
# on local S3 (bench/bench_scale.py).
#   bench/run_scale_bench.sh                               # 10,000 and 100,000, line data
#   bench/run_scale_bench.sh --sizes 10000 --kind branch
#   bench/run_scale_bench.sh --sizes 10000 --modules 200 --json /tmp/scale.json
# Needs moto[server] and psutil in the venv (scripts/setup-venv.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${BENCH_VENV_PYTHON:-.venv/bin/python}"
exec "$PYTHON" bench/bench_scale.py "$@"
