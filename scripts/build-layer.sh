#!/usr/bin/env bash
# usage: scripts/build-layer.sh [options]
#
# Builds lambda-coverage as a Lambda layer for zip functions on a managed Python runtime
# (and the /opt tree for AWS's base images). Prints the zip's path as the last line.
#
#   --python X.Y     the runtime's Python: 3.11, 3.12, 3.13 or 3.14 (default 3.13); coverage.py's
#                    compiled tracer is picked for it
#   --arch A         x86_64 (default) or arm64
#   --out DIR        where the zip and its unpacked tree go (default: dist/)
#   -h, --help       this help
#
# The layer holds:
#   lambda-coverage          the exec wrapper: set AWS_LAMBDA_EXEC_WRAPPER=/opt/lambda-coverage
#   lambda-coverage-lib/     coverage_runtime (the shim, without the report) and the pinned
#                            coverage.py, on a private path appended after the function's own
# boto3 and awslambdaric are the runtime's (every managed runtime and base image has them),
# or the function's own if it brings them.
#
# Publish: aws lambda publish-layer-version --layer-name lambda-coverage \
#   --zip-file fileb://dist/lambda-coverage-layer-python3.13-x86_64.zip \
#   --compatible-runtimes python3.13 --compatible-architectures x86_64
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

PY_VERSION=3.13
ARCH=x86_64
OUT="$ROOT/dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY_VERSION=${2:?--python needs X.Y}; shift 2 ;;
    --arch) ARCH=${2:?--arch needs x86_64 or arm64}; shift 2 ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    -h | --help) usage_from_header; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$PY_VERSION" in 3.11 | 3.12 | 3.13 | 3.14) ;; *) die "--python must be 3.11-3.14, not $PY_VERSION" ;; esac
case "$ARCH" in x86_64 | arm64) ;; *) die "--arch must be x86_64 or arm64, not $ARCH" ;; esac
PLATFORM_ARCH=$ARCH
[ "$ARCH" = arm64 ] && PLATFORM_ARCH=aarch64

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip (scripts/setup-venv.sh makes .venv)"
COVERAGE_PIN=$(grep -E '^coverage==' "$ROOT/requirements.txt") || die "coverage is not pinned in requirements.txt"

NAME="lambda-coverage-layer-python$PY_VERSION-$ARCH"
TREE="$OUT/$NAME"
ZIP="$OUT/$NAME.zip"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
rm -rf "$TREE" "$ZIP"
mkdir -p "$TREE/lambda-coverage-lib"
LIB="$TREE/lambda-coverage-lib"
PIP=("$PYTHON" -m pip --disable-pip-version-check -q)

log "the package, from this checkout"
"${PIP[@]}" wheel --no-deps -w "$WORK/wheel" "$ROOT"
"${PIP[@]}" install --no-deps --no-compile --target "$LIB" "$WORK"/wheel/*.whl
log "$COVERAGE_PIN for CPython $PY_VERSION on $ARCH"
"${PIP[@]}" install --no-deps --no-compile --target "$LIB" --only-binary=:all: \
  --implementation cp --python-version "$PY_VERSION" \
  --platform "manylinux2014_$PLATFORM_ARCH" --platform "manylinux_2_17_$PLATFORM_ARCH" \
  --platform "manylinux_2_28_$PLATFORM_ARCH" "$COVERAGE_PIN"
# The report runs on a workstation, not in Lambda; console scripts point at this machine.
rm -rf "$LIB/coverage_runtime/report" "$LIB/bin"
# coverage.py's .pth starts it in every process when COVERAGE_PROCESS_START is set; the shim starts it.
rm -f "$LIB"/*coverage*.pth
install -m 0755 "$ROOT/layer/lambda-coverage" "$TREE/lambda-coverage"
# /opt is read-only in Lambda: without bytecode every cold start would compile the shim.
TARGET_PYTHON=""
for candidate in "$(command -v "python$PY_VERSION" || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$PY_VERSION".*/bin/python; do
  if [ -z "$TARGET_PYTHON" ] && [ -x "$candidate" ] && [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$PY_VERSION" ]; then
    TARGET_PYTHON=$candidate
  fi
done
if [ -n "$TARGET_PYTHON" ]; then
  "$TARGET_PYTHON" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$LIB"
else
  log "no python$PY_VERSION here: the layer ships sources only (compiled at each cold start)"
fi
(cd "$TREE" && "$PYTHON" -m zipfile -c "$ZIP" lambda-coverage lambda-coverage-lib)
log "layer tree: $TREE (for an AWS base image: COPY it to /opt/)"
echo "$ZIP"
