# Shared helpers of the container and AWS scripts (sourced, never run).
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRIPT=$(basename "$0")
DRY_RUN=${DRY_RUN:-0}

log() { printf '%s: %s\n' "$SCRIPT" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$SCRIPT" "$*" >&2
  exit 1
}

# usage_from_header: print the comment block at the top of the calling script
# (after the shebang) without its leading '# '.
usage_from_header() {
  sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//;p}' "$0"
}

# Print a command the way a user can paste it into a POSIX shell.
quote_cmd() {
  local out="" arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+="$arg "
    else
      out+="'${arg//\'/\'\\\'\'}' "
    fi
  done
  printf '%s\n' "${out% }"
}

# Values that are never printed (secret --env values): `run` shows *** instead.
SECRETS=()

# mask TEXT: TEXT with every value in SECRETS replaced by ***.
mask() {
  local text=$1 secret
  for secret in ${SECRETS[@]+"${SECRETS[@]}"}; do
    [ -n "$secret" ] && text=${text//"$secret"/***}
  done
  printf '%s\n' "$text"
}

# run CMD...: print it (secrets masked), then run it (only print it with --dry-run).
run() {
  printf '+ %s\n' "$(mask "$(quote_cmd "$@")")" >&2
  [ "$DRY_RUN" = 1 ] && return 0
  "$@"
}

need_cmd() { # need_cmd NAME "how to get it"
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH. $2"
}

# The container engine: docker unless CONTAINER_ENGINE says otherwise.
engine() {
  local name=${CONTAINER_ENGINE:-docker}
  case "$name" in
    docker | podman) ;;
    *) die "CONTAINER_ENGINE must be 'docker' or 'podman', not '$name'" ;;
  esac
  printf '%s\n' "$name"
}

need_engine() {
  local name
  name=$(engine)
  if [ "$DRY_RUN" = 1 ]; then
    command -v "$name" >/dev/null 2>&1 || log "note: '$name' is not installed (dry run)"
    return 0
  fi
  if [ "$name" = docker ]; then
    need_cmd docker "Install Docker (https://docs.docker.com/get-docker/), or set CONTAINER_ENGINE=podman."
  else
    need_cmd podman "Install podman (apt-get install podman), or unset CONTAINER_ENGINE to use docker."
  fi
}

# The git revision of the checkout (with -dirty when the tree has changes), or 'unknown'.
code_revision() {
  local rev
  if rev=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null); then
    if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
      rev="$rev-dirty"
    fi
    printf '%s\n' "$rev"
  else
    printf 'unknown\n'
  fi
}

DEFAULT_IMAGE_NAME=${IMAGE_NAME:-lambda-coverage}

# AWS prerequisites: the CLI, a region, and credentials (checked with sts).
need_aws_cli() {
  need_cmd aws "Install the AWS CLI (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)."
}

aws_region() { # the region from --region, AWS_REGION, AWS_DEFAULT_REGION or the CLI config
  local region=${REGION:-${AWS_REGION:-${AWS_DEFAULT_REGION:-}}}
  if [ -z "$region" ] && command -v aws >/dev/null 2>&1; then
    region=$(aws configure get region 2>/dev/null || true)
  fi
  [ -n "$region" ] || die "no AWS region: pass --region, or set AWS_REGION (or 'aws configure set region ...')"
  printf '%s\n' "$region"
}

aws_account() { # the account id of the current credentials
  local account
  if ! account=$(aws sts get-caller-identity --query Account --output text 2>/dev/null) || [ -z "$account" ]; then
    die "no usable AWS credentials ('aws sts get-caller-identity' failed): run 'aws configure' or 'aws sso login', or set AWS_PROFILE"
  fi
  printf '%s\n' "$account"
}
