#!/usr/bin/env bash
# The main job, locally: local S3 + the example function under the AWS RIE, invoke every
# sample event, shut down as Lambda does (SIGTERM), fetch the coverage from S3, report it.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/demo.sh [--help] [--keep-running]

Runs the example function (app.handler.lambda_handler) locally through
python -m coverage_runtime under the AWS Lambda Runtime Interface Emulator (RIE),
with a local S3 (moto's S3, scripts/local_s3.py) on 127.0.0.1:
  1. sets up .venv (scripts/setup-venv.sh)
  2. starts moto's S3 server and creates the bucket
  3. starts the function under the RIE (127.0.0.1 only)
  4. invokes every events/*.json, one at a time (bad-*.json are deliberate errors;
     admin-coverage-reset.json is skipped since it would empty the report)
  5. sends SIGTERM (Lambda's shutdown), so the runtime uploads its coverage
  6. builds the report from S3 with scripts/coverage-report.sh (lambda-coverage report):
     prints the per-file table of app/ and writes HTML, Cobertura XML, LCOV and JSON
     to coverage-report/

Options:
  --keep-running   leave S3 and the function running after the invocations (Ctrl-C to stop)

Environment:
  AWS_LAMBDA_RIE   path of the aws-lambda-rie binary (else ../shared/bin, PATH, or a download)
  DEMO_DIR         working directory for logs and data (default: .local/demo)
  REPORT_DIR       where the HTML report goes (default: coverage-report)
USAGE
}

KEEP_RUNNING=0
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    --keep-running) KEEP_RUNNING=1 ;;
    *) echo "error: unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/rie.sh
source "$ROOT/scripts/lib/rie.sh"

DEMO_DIR=${DEMO_DIR:-$ROOT/.local/demo}
REPORT_DIR=${REPORT_DIR:-$ROOT/coverage-report}
BUCKET=lambda-coverage-demo
FUNCTION=demo-function
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"

step() { printf '\n==> %s\n' "$*"; }

step "Python environment"
PY=$("$ROOT/scripts/setup-venv.sh")
RIE=$(find_rie)
echo "python: $PY"
echo "rie:    $RIE"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
S3_PORT=$(free_port)
INVOKE_PORT=$(free_port)
API_PORT=$(free_port)
S3_URL="http://127.0.0.1:$S3_PORT"
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {  # wait_port PORT PID NAME LOG
  for _ in $(seq 1 300); do
    if "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "error: $3 exited; its log:" >&2; tail -20 "$4" >&2; exit 1; }
    sleep 0.1
  done
  echo "error: $3 did not listen on 127.0.0.1:$1" >&2; exit 1
}

step "Local S3 (moto) on $S3_URL"
"$PY" "$ROOT/scripts/local_s3.py" --port "$S3_PORT" > "$DEMO_DIR/s3.log" 2>&1 &
PIDS+=($!)
wait_port "$S3_PORT" "${PIDS[-1]}" "local S3" "$DEMO_DIR/s3.log"
"$PY" - "$S3_URL" "$BUCKET" <<'EOF'
import sys, boto3
boto3.client("s3", endpoint_url=sys.argv[1]).create_bucket(Bucket=sys.argv[2])
print(f"bucket s3://{sys.argv[2]} created")
EOF

step "Function under the RIE on 127.0.0.1:$INVOKE_PORT"
env LAMBDA_TASK_ROOT="$ROOT" \
    AWS_LAMBDA_FUNCTION_NAME="$FUNCTION" \
    COVERAGE_S3_BUCKET="$BUCKET" \
    COVERAGE_S3_ENDPOINT_URL="$S3_URL" \
    COVERAGE_SOURCE="$ROOT/app" \
    COVERAGE_DATA_DIR="$DEMO_DIR/data" \
    ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN=true \
    CODE_REVISION="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    PYTHONPATH="$ROOT" \
  "$RIE" --runtime-interface-emulator-address "127.0.0.1:$INVOKE_PORT" \
         --runtime-api-address "127.0.0.1:$API_PORT" \
         "$PY" -m coverage_runtime app.handler.lambda_handler > "$DEMO_DIR/function.log" 2>&1 &
RIE_PID=$!
PIDS+=("$RIE_PID")
wait_port "$INVOKE_PORT" "$RIE_PID" "RIE" "$DEMO_DIR/function.log"

step "Invoking every event in events/ (one at a time)"
count=0
for event in "$ROOT"/events/*.json; do
  name=$(basename "$event" .json)
  # coverage_reset drops what was measured so far: it would empty the report.
  case "$name" in admin-coverage-reset) echo "  (skipping $name: it would reset the coverage)"; continue ;; esac
  status=$(curl -sS -o "$DEMO_DIR/response-$name.json" -w '%{http_code}' \
    -XPOST "http://127.0.0.1:$INVOKE_PORT/2015-03-31/functions/function/invocations" \
    -H 'Content-Type: application/json' --data-binary "@$event")
  printf '  %-40s HTTP %s  %s\n' "$name" "$status" "$(head -c 110 "$DEMO_DIR/response-$name.json")"
  count=$((count + 1))
done
echo "$count events invoked"

if [ "$KEEP_RUNNING" = 1 ]; then
  echo "function: curl -XPOST http://127.0.0.1:$INVOKE_PORT/2015-03-31/functions/function/invocations -d '{}'"
  echo "S3:       $S3_URL (bucket $BUCKET); Ctrl-C to stop"
  wait "$RIE_PID" || true
fi

step "Shutdown: SIGTERM to the RIE, as Lambda does when it retires the environment"
kill -TERM "$RIE_PID"
wait "$RIE_PID" || true
grep -h '"logger": "coverage_runtime"' "$DEMO_DIR/function.log" | grep -E 'uploaded|failed|lost' || true

step "Coverage report from s3://$BUCKET/coverage/ (scripts/coverage-report.sh)"
COVERAGE_S3_ENDPOINT_URL="$S3_URL" LAMBDA_COVERAGE_PYTHON="$PY" "$ROOT/scripts/coverage-report.sh" \
  --bucket "$BUCKET" --prefix coverage/ --function "$FUNCTION" \
  --source-root "$ROOT" --cache-dir "$DEMO_DIR/report-cache" -o "$REPORT_DIR" --no-progress
echo
echo "HTML report: $REPORT_DIR/html/index.html"
