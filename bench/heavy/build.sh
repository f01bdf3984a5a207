#!/usr/bin/env bash
# usage: bench/heavy/build.sh PYTHON DEST
# The heavy benchmark function for a host Python, by AWS's recipe: its requirements
# `pip install --target DEST`, then its code; DEST is the task root.  Idempotent.
set -euo pipefail
PYTHON=${1:?usage: build.sh PYTHON DEST}
DEST=${2:?usage: build.sh PYTHON DEST}
HERE=$(cd "$(dirname "$0")" && pwd)
stamp="$DEST/.requirements.sha256"
wanted=$( (cat "$HERE/requirements.txt"; "$PYTHON" -V) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  rm -rf "$DEST"
  mkdir -p "$DEST"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    --target "$DEST" -r "$HERE/requirements.txt" >&2
  echo "$wanted" > "$stamp"
fi
rm -rf "$DEST/service" && cp -r "$HERE/service" "$HERE/handler.py" "$DEST/"
"$PYTHON" -m compileall -q "$DEST" >&2 || true
echo "$DEST"
