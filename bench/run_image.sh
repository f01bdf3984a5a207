#!/usr/bin/env bash
# The benchmark inside the built image (its own Python, 3.14), through the RIE: builds the
# image (scripts/container-setup.sh + scripts/build.sh), then prints the table; see
# bench/bench_image.py --help.
#   bench/run_image.sh                      # 6 rounds, 100 warm invocations per event
#   bench/run_image.sh -r 3 -n 30 --json out.json
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(scripts/setup-venv.sh)
exec "$PY" bench/bench_image.py "$@"
