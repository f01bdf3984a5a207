#!/usr/bin/env bash
# Time `lambda-coverage report` against `coverage combine` + `coverage html` (bench/bench_report.py).
#   bench/run_report_bench.sh                         # 1,000 and 5,000 files, line data (~4 min on 2 cores)
#   bench/run_report_bench.sh --sizes 200 --kind branch
#   bench/run_report_bench.sh --json results.json
# Needs moto[server] and psutil in the venv (scripts/setup-venv.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${BENCH_VENV_PYTHON:-.venv/bin/python}"
exec "$PYTHON" bench/bench_report.py "$@"
