#!/usr/bin/env bash
# Run the shim benchmark from the repository root with the project's venv.
#   bench/run.sh                                  # the venv's Python (3.11: CTracer)
#   bench/run.sh --python /tmp/venv313/bin/python # the function under another Python
#   bench/run.sh -r 5 -n 100 --json out.json      # fewer repeats, raw samples saved
# Needs the AWS RIE ($AWS_LAMBDA_RIE, ../shared/bin/aws-lambda-rie or PATH) and
# moto[server] in the venv (requirements-dev.txt); scripts/setup-venv.sh makes the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${BENCH_VENV_PYTHON:-.venv/bin/python}"
exec "$PYTHON" bench/bench_shim.py "$@"
