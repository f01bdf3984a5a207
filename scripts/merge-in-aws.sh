#!/usr/bin/env bash
# Merge coverage in AWS with the deployed merge state machine and download the reports.
set -euo pipefail

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ] || [ $# = 0 ]; then
  cat <<'USAGE'
usage: scripts/merge-in-aws.sh --state-machine ARN [filters] [options]

Starts one execution of the merge state machine (template.yaml deployed with
EnableMergeStateMachine=true; ARN = the stack's MergeStateMachineArn output), prints
the distributed map's progress while it runs, and downloads what the reduce wrote
(merged.coverage, summary.json, coverage.json/.xml/.lcov) into coverage-report/.

  --function NAME --version V --revision R   filters (repeat or comma list)
  --since DATE --until DATE                  init dates: YYYY-MM-DD, today, Nd
  --measure auto|line|branch
  --batch-size N --max-concurrency N --tolerated-failure-percentage P
  --name NAME         execution name (default merge-<UTC time>-<random>)
  -o DIR              download directory (default coverage-report)
  --no-wait           start it and print the execution ARN
  --dry-run           print the calls (as AWS CLI commands), make none

Credentials and region come from the usual AWS configuration (AWS_PROFILE, AWS_REGION).
Exit status: 0 done, 1 error or failed run, 2 invalid arguments.
USAGE
  exit 0
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${LAMBDA_COVERAGE_PYTHON:-}
if [ -z "$PY" ]; then
  PY=$("$ROOT/scripts/setup-venv.sh")
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m coverage_runtime.report.aws_merge "$@"
