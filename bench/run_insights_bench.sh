#!/usr/bin/env bash
# Time `lambda-coverage unused` against `lambda-coverage report` on the same data (bench/bench_insights.py).
#   bench/run_insights_bench.sh                          # 10,000 environments, two data shapes
#   bench/run_insights_bench.sh --envs 2000 --shapes paths -r 1
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${BENCH_VENV_PYTHON:-.venv/bin/python}"
exec "$PYTHON" bench/bench_insights.py "$@"
