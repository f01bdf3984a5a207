#!/usr/bin/env bash
# Build one coverage report from the per-environment data files in S3.
# A thin wrapper over `lambda-coverage report` (coverage_runtime/report/cli.py).
set -euo pipefail

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  cat <<'USAGE'
usage: scripts/coverage-report.sh [lambda-coverage report options...]

Lists the coverage data objects under s3://$COVERAGE_S3_BUCKET/$COVERAGE_S3_PREFIX,
downloads them in parallel (cached by ETag), merges them, maps /var/task to the
current checkout and writes coverage-report/{html/index.html,coverage.xml,
coverage.lcov,coverage.json,summary.json,merged.coverage} plus a terminal table.

Environment:
  COVERAGE_S3_BUCKET         bucket (or --bucket)
  COVERAGE_S3_PREFIX         key prefix (default coverage/)
  COVERAGE_S3_ENDPOINT_URL   local S3 only (tests, demo)
  LAMBDA_COVERAGE_PYTHON     interpreter to run with (default: the checkout's .venv,
                             created by scripts/setup-venv.sh when missing)

Examples:
  scripts/coverage-report.sh --function orders --since 7d
  scripts/coverage-report.sh --revision "$GIT_SHA" --fail-under 80 --format xml,json
  scripts/coverage-report.sh --help-all     # every option of lambda-coverage report
Exit status: 0 done, 1 error, 2 total below --fail-under.
USAGE
  exit 0
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--help-all" ]; then
  set -- --help
fi
PY=${LAMBDA_COVERAGE_PYTHON:-}
if [ -z "$PY" ]; then
  PY=$("$ROOT/scripts/setup-venv.sh")
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m coverage_runtime.report.cli report "$@"
