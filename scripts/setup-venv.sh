#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) from requirements-dev.txt.
# Idempotent: reinstalls only when a requirements file changed. Prints the venv's python.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/setup-venv.sh [--help]

Creates .venv in the checkout with the runtime and test dependencies
(requirements-dev.txt, which includes requirements.txt). Re-running is cheap:
it reinstalls only when a requirements file changed.

Environment:
  PYTHON   interpreter to build the venv with (default: python3, 3.11 or newer)
USAGE
}
[ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ] && { usage; exit 0; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha256"

command -v "$PYTHON" >/dev/null || { echo "error: $PYTHON not found; set PYTHON to a Python 3.11+ interpreter" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "error: $PYTHON is $("$PYTHON" -V 2>&1); Python 3.11 or newer is required" >&2; exit 1; }

wanted=$(cat "$ROOT"/requirements.txt "$ROOT"/requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$wanted" ]; then
  echo "$VENV/bin/python"
  exit 0
fi
echo "setting up $VENV ..." >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements-dev.txt" >&2
echo "$wanted" > "$STAMP"
echo "$VENV/bin/python"
