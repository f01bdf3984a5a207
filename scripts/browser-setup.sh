#!/usr/bin/env bash
# Find headless Chromium for the page tests; install Debian's chromium when missing.
set -euo pipefail

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  cat <<'USAGE'
usage: scripts/browser-setup.sh [--check]

Prints the path of a Chromium the page tests can run headless ($CHROMIUM, chromium,
chromium-browser). When none is installed, installs Debian's chromium with apt-get (as
root). --check only reports (exit 1 when there is none).
USAGE
  exit 0
fi

find_chromium() {
  for candidate in "${CHROMIUM:-}" chromium chromium-browser; do
    [ -n "$candidate" ] && command -v "$candidate" >/dev/null && { command -v "$candidate"; return 0; }
  done
  return 1
}

if find_chromium; then exit 0; fi
[ "${1:-}" = "--check" ] && { echo "chromium is not installed" >&2; exit 1; }
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "chromium is not installed, and installing it needs apt-get as root" >&2
  exit 1
fi
echo "installing chromium (apt-get) ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends chromium >&2
find_chromium
