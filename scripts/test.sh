#!/usr/bin/env bash
# Run the whole test suite (unit, RIE end-to-end and container tests).
set -euo pipefail

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  cat <<'USAGE'
usage: scripts/test.sh [pytest arguments...]

Sets up .venv (scripts/setup-venv.sh), finds the AWS Runtime Interface Emulator
(scripts/lib/rie.sh: $AWS_LAMBDA_RIE, ../shared/bin, PATH, .local/bin, else it downloads
the official release once into .local/bin; RIE_RELEASE_URL points that at a mirror),
then runs pytest over tests/.
Examples:
  scripts/test.sh                      # everything, as CI runs it
  scripts/test.sh -m "not container"   # skip the slow container build
  scripts/test.sh tests/test_settings.py -q
USAGE
  exit 0
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$("$ROOT/scripts/setup-venv.sh")
cd "$ROOT"
# shellcheck source=scripts/lib/rie.sh
source "$ROOT/scripts/lib/rie.sh"
AWS_LAMBDA_RIE=$(find_rie) || exit 1
export AWS_LAMBDA_RIE
exec "$PY" -m pytest "$@"
