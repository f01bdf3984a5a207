# shellcheck shell=bash
# find_rie: print the path of the AWS Lambda Runtime Interface Emulator binary.
# Order: $AWS_LAMBDA_RIE, ../shared/bin beside the checkout, PATH, .local/bin, then (with
# internet) the official release, downloaded once into .local/bin.

RIE_RELEASE_URL=${RIE_RELEASE_URL:-https://github.com/aws/aws-lambda-runtime-interface-emulator/releases/latest/download}

find_rie() {
  local root candidate arch asset
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  for candidate in "${AWS_LAMBDA_RIE:-}" "$root/../shared/bin/aws-lambda-rie" \
                   "$(command -v aws-lambda-rie || true)" "$root/.local/bin/aws-lambda-rie"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  case "$(uname -m)" in
    x86_64) asset=aws-lambda-rie ;;
    aarch64|arm64) asset=aws-lambda-rie-arm64 ;;
    *) echo "error: no RIE release for $(uname -m); set AWS_LAMBDA_RIE" >&2; return 1 ;;
  esac
  echo "aws-lambda-rie not found locally; downloading the official release ($asset)" >&2
  mkdir -p "$root/.local/bin"
  if ! curl -fsSL -o "$root/.local/bin/aws-lambda-rie.tmp" "$RIE_RELEASE_URL/$asset"; then
    rm -f "$root/.local/bin/aws-lambda-rie.tmp"
    echo "error: could not download the RIE; install it and set AWS_LAMBDA_RIE=/path/to/aws-lambda-rie" >&2
    return 1
  fi
  chmod +x "$root/.local/bin/aws-lambda-rie.tmp"
  mv "$root/.local/bin/aws-lambda-rie.tmp" "$root/.local/bin/aws-lambda-rie"
  echo "$root/.local/bin/aws-lambda-rie"
}
