#!/usr/bin/env bash
# usage: scripts/build.sh [options] [-- extra build arguments for the engine]
#
# Builds the function image from the Dockerfile, tagged with the git revision and
# 'latest', for linux/amd64 with a single-architecture manifest (--provenance=false),
# the form Lambda accepts. Prints the image reference (NAME:REVISION) as the last line.
#
#   --name NAME         image name (default: lambda-coverage, or $IMAGE_NAME)
#   --tag TAG           tag instead of the git revision
#   --base-image IMAGE  build on another base (default: the Dockerfile's python:3.14-slim)
#   --with-rie SOURCE   bake the Runtime Interface Emulator in: a URL (https://, file://) or a
#                       file inside the build context; 'official' = the latest AWS release
#   --platform P        target platform (default: linux/amd64; linux/arm64 for Graviton)
#   --dry-run           print the command without running it
#   -h, --help          this help
#
# Engine: docker (default), or podman with CONTAINER_ENGINE=podman.
# Example: scripts/build.sh && scripts/run-local.sh
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

OFFICIAL_RIE=https://github.com/aws/aws-lambda-runtime-interface-emulator/releases/latest/download/aws-lambda-rie
NAME=$DEFAULT_IMAGE_NAME
TAG=""
BASE_IMAGE=""
RIE_SOURCE=""
PLATFORM=linux/amd64
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage_from_header; exit 0 ;;
    --name) NAME=${2:?--name needs a value}; shift 2 ;;
    --tag) TAG=${2:?--tag needs a value}; shift 2 ;;
    --base-image) BASE_IMAGE=${2:?--base-image needs a value}; shift 2 ;;
    --with-rie) RIE_SOURCE=${2:?--with-rie needs a value}; shift 2 ;;
    --platform) PLATFORM=${2:?--platform needs a value}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[ "$RIE_SOURCE" = official ] && RIE_SOURCE=$OFFICIAL_RIE

ENGINE=$(engine)
need_engine
REVISION=$(code_revision)
TAG=${TAG:-$REVISION}
IMAGE="$NAME:$TAG"

cmd=("$ENGINE" build --platform "$PLATFORM")
# BuildKit adds a provenance attestation by default, which turns the image into a
# multi-manifest index that Lambda rejects; podman never adds one.
[ "$ENGINE" = docker ] && cmd+=(--provenance=false)
cmd+=(--build-arg "CODE_REVISION=$REVISION")
[ -n "$BASE_IMAGE" ] && cmd+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[ -n "$RIE_SOURCE" ] && cmd+=(--build-arg "RIE_SOURCE=$RIE_SOURCE")
cmd+=(--tag "$IMAGE")
[ "$TAG" != latest ] && cmd+=(--tag "$NAME:latest")
cmd+=(${EXTRA[@]+"${EXTRA[@]}"} "$ROOT")

log "building $IMAGE (revision $REVISION, platform $PLATFORM, ${BASE_IMAGE:-default base image}${RIE_SOURCE:+, RIE baked in})"
run "${cmd[@]}" >&2
printf '%s\n' "$IMAGE"
