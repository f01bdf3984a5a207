#!/usr/bin/env bash
# usage: scripts/run-local.sh [options] [-- handler]
#
# Runs the image locally under the AWS Runtime Interface Emulator (RIE), as Lambda would:
# read-only file system with a writable /tmp, the RIE listening on a loopback port.
# Invoke it with scripts/invoke.sh; stop it with Ctrl-C (or 'docker stop'), which sends
# SIGTERM as Lambda's shutdown does, so the final coverage snapshot is uploaded.
#
#   --image IMAGE       image to run (default: lambda-coverage:latest)
#   --port PORT         host port of the invoke endpoint on 127.0.0.1 (default: 9000)
#   --name NAME         container name (default: lambda-coverage-local)
#   --rie PATH          the RIE binary to mount (default: scripts/lib/rie.sh finds it:
#                       $AWS_LAMBDA_RIE, ../shared/bin, PATH, .local/bin, else downloads it)
#   --no-rie-mount      do not mount an RIE (the image has one baked in: build.sh --with-rie)
#   --bucket BUCKET     COVERAGE_S3_BUCKET (default: $COVERAGE_S3_BUCKET; unset = no uploads)
#   --s3-endpoint URL   COVERAGE_S3_ENDPOINT_URL, a local S3 such as moto (sets test credentials
#                       when none are set); a 127.0.0.1 endpoint needs --host-network
#   --host-network      share the host's network (Linux): the RIE listens on 127.0.0.1:PORT
#                       and 127.0.0.1:PORT+1 itself, and 127.0.0.1 services are reachable
#   --env NAME=VALUE    extra environment variable (repeatable), e.g. --env COVERAGE_MODE=selective
#   --detach            run in the background and print the container name
#   --dry-run           print the command without running it
#   -h, --help          this help
#
# AWS credentials and region of the calling shell (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_SESSION_TOKEN, AWS_REGION) are passed through when set.
# Engine: docker (default), or podman with CONTAINER_ENGINE=podman.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

IMAGE="$DEFAULT_IMAGE_NAME:latest"
PORT=9000
NAME=lambda-coverage-local
RIE=""
MOUNT_RIE=1
BUCKET=${COVERAGE_S3_BUCKET:-}
ENDPOINT=""
HOST_NETWORK=0
DETACH=0
ENVS=()
HANDLER=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage_from_header; exit 0 ;;
    --image) IMAGE=${2:?--image needs a value}; shift 2 ;;
    --port) PORT=${2:?--port needs a value}; shift 2 ;;
    --name) NAME=${2:?--name needs a value}; shift 2 ;;
    --rie) RIE=${2:?--rie needs a value}; shift 2 ;;
    --no-rie-mount) MOUNT_RIE=0; shift ;;
    --bucket) BUCKET=${2:?--bucket needs a value}; shift 2 ;;
    --s3-endpoint) ENDPOINT=${2:?--s3-endpoint needs a value}; shift 2 ;;
    --host-network) HOST_NETWORK=1; shift ;;
    --env)
      [[ ${2:-} == ?*=* ]] || die "--env needs NAME=VALUE"
      ENVS+=("$2"); shift 2 ;;
    --detach) DETACH=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; HANDLER=("$@"); break ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
if ! [[ $PORT =~ ^[0-9]+$ ]] || [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65534 ]; then
  die "--port must be a TCP port number"
fi

ENGINE=$(engine)
need_engine

# shellcheck source=scripts/lib/rie.sh
source "$ROOT/scripts/lib/rie.sh"

cmd=("$ENGINE" run --rm --name "$NAME" --read-only --tmpfs /tmp)
[ "$DETACH" = 1 ] && cmd+=(--detach)
if [ "$MOUNT_RIE" = 1 ]; then
  if [ -n "$RIE" ]; then
    if [ ! -f "$RIE" ] || [ ! -x "$RIE" ]; then die "--rie $RIE is not an executable file"; fi
    RIE=$(cd "$(dirname "$RIE")" && printf '%s/%s\n' "$(pwd)" "$(basename "$RIE")")
  else
    RIE=$(find_rie) || die "no RIE to mount: pass --rie PATH, or build the image with it (scripts/build.sh --with-rie official) and use --no-rie-mount"
  fi
  cmd+=(--volume "$RIE:/aws-lambda/aws-lambda-rie:ro")
fi
if [ "$HOST_NETWORK" = 1 ]; then
  cmd+=(--network=host --env "RIE_ADDRESS=127.0.0.1:$PORT" --env "RIE_API_ADDRESS=127.0.0.1:$((PORT + 1))")
else
  case "$ENDPOINT" in
    *://127.0.0.1* | *://localhost*)
      log "warning: $ENDPOINT is the container's own loopback without --host-network" ;;
  esac
  cmd+=(--publish "127.0.0.1:$PORT:8080")
fi
cmd+=(--env "AWS_LAMBDA_FUNCTION_NAME=${AWS_LAMBDA_FUNCTION_NAME:-$NAME}")
cmd+=(--env "AWS_LAMBDA_FUNCTION_VERSION=\$LATEST")
for var in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_REGION AWS_DEFAULT_REGION; do
  [ -n "${!var:-}" ] && cmd+=(--env "$var")
done
if [ -n "$ENDPOINT" ]; then
  cmd+=(--env "COVERAGE_S3_ENDPOINT_URL=$ENDPOINT")
  if [ -z "${AWS_ACCESS_KEY_ID:-}" ]; then
    cmd+=(--env AWS_ACCESS_KEY_ID=testing --env AWS_SECRET_ACCESS_KEY=testing)
  fi
  [ -z "${AWS_REGION:-}" ] && cmd+=(--env AWS_REGION=us-east-1)
fi
[ -n "$BUCKET" ] && cmd+=(--env "COVERAGE_S3_BUCKET=$BUCKET")
for pair in ${ENVS[@]+"${ENVS[@]}"}; do
  cmd+=(--env "$pair")
done
cmd+=("$IMAGE" ${HANDLER[@]+"${HANDLER[@]}"})

log "running $IMAGE as '$NAME'; invoke it at http://127.0.0.1:$PORT/2015-03-31/functions/function/invocations (scripts/invoke.sh --port $PORT EVENT)"
[ -z "$BUCKET" ] && log "note: no --bucket / COVERAGE_S3_BUCKET: coverage is measured but not uploaded"
run "${cmd[@]}"
