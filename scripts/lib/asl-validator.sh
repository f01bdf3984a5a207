# shellcheck shell=bash
# The npm asl-validator (Amazon States Language schema check of the merge state machine),
# installed into .local/node of the checkout when missing, node and npm from Debian if
# needed. Prints the path of its executable.
#
#   bash scripts/lib/asl-validator.sh        # what tests/test_merge_state_machine.py runs
#   source scripts/lib/asl-validator.sh; ASL=$(find_asl_validator)
set -euo pipefail

ASL_VALIDATOR_VERSION=4.0.0

find_asl_validator() {
  local root prefix bin
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  prefix="$root/.local/node"
  bin="$prefix/node_modules/.bin/asl-validator"
  if [ -x "$bin" ] && grep -q "\"version\": \"$ASL_VALIDATOR_VERSION\"" \
      "$prefix/node_modules/asl-validator/package.json" 2>/dev/null; then
    echo "$bin"
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing node and npm (Debian) for asl-validator ..." >&2
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
    else
      echo "error: npm not found: install node and npm (asl-validator checks the state machine)" >&2
      return 1
    fi
  fi
  echo "installing asl-validator@$ASL_VALIDATOR_VERSION into $prefix ..." >&2
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --no-save --silent \
    "asl-validator@$ASL_VALIDATOR_VERSION" >&2
  echo "$bin"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  find_asl_validator
fi
