# shellcheck shell=bash
# The one way to find the AWS Lambda Runtime Interface Emulator, for the scripts, the tests
# (tests/harness.py runs this file) and the container tests.
#
#   source scripts/lib/rie.sh; RIE=$(find_rie)        # in a script
#   bash scripts/lib/rie.sh [--no-download]           # prints the path (what the tests run)
#
# Order: $AWS_LAMBDA_RIE, ../shared/bin beside the checkout, PATH, .local/bin of the checkout,
# then the official release, downloaded once into .local/bin ($RIE_RELEASE_URL points the
# download at a mirror: any http(s):// or file:// URL of a directory holding the release
# assets aws-lambda-rie / aws-lambda-rie-arm64). Fails with one line saying what to do.

RIE_RELEASE_URL=${RIE_RELEASE_URL:-https://github.com/aws/aws-lambda-runtime-interface-emulator/releases/latest/download}

_rie_download() { # _rie_download URL FILE
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 2 --connect-timeout 15 -o "$2" "$1"
  else
    python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$1" "$2"
  fi
}

find_rie() {
  local root candidate asset target download=1
  [ "${1:-}" = "--no-download" ] && download=0
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  target="$root/.local/bin/aws-lambda-rie"
  for candidate in "${AWS_LAMBDA_RIE:-}" "$root/../shared/bin/aws-lambda-rie" \
                   "$(command -v aws-lambda-rie 2>/dev/null || true)" "$target"; do
    if [ -n "$candidate" ] && [ -f "$candidate" ] && [ -x "$candidate" ]; then
      case "$candidate" in
        */*) (cd "${candidate%/*}/" && printf '%s/%s\n' "$(pwd)" "${candidate##*/}") ;;
        *) printf '%s/%s\n' "$(pwd)" "$candidate" ;;
      esac
      return 0
    fi
  done
  if [ -n "${AWS_LAMBDA_RIE:-}" ]; then
    echo "error: AWS_LAMBDA_RIE=$AWS_LAMBDA_RIE is not an executable file" >&2
    return 1
  fi
  if [ "$download" = 0 ]; then
    echo "error: aws-lambda-rie not found (AWS_LAMBDA_RIE, ../shared/bin, PATH, .local/bin); run scripts/test.sh or scripts/demo.sh once with internet to download it, or set AWS_LAMBDA_RIE=/path/to/aws-lambda-rie" >&2
    return 1
  fi
  case "$(uname -m)" in
    x86_64 | amd64) asset=aws-lambda-rie ;;
    aarch64 | arm64) asset=aws-lambda-rie-arm64 ;;
    *) echo "error: the RIE has no release for $(uname -m); build it and set AWS_LAMBDA_RIE" >&2; return 1 ;;
  esac
  echo "aws-lambda-rie not found locally; downloading $RIE_RELEASE_URL/$asset into .local/bin" >&2
  mkdir -p "$root/.local/bin"
  if ! _rie_download "$RIE_RELEASE_URL/$asset" "$target.tmp" 2>/dev/null || [ ! -s "$target.tmp" ]; then
    rm -f "$target.tmp"
    echo "error: could not download the RIE from $RIE_RELEASE_URL/$asset (offline?): download it yourself and set AWS_LAMBDA_RIE=/path/to/aws-lambda-rie, or set RIE_RELEASE_URL to a mirror" >&2
    return 1
  fi
  chmod +x "$target.tmp"
  mv "$target.tmp" "$target"
  echo "$target"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  find_rie "$@"
fi
