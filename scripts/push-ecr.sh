#!/usr/bin/env bash
# usage: scripts/push-ecr.sh [options]
#
# Pushes the local image to Amazon ECR: creates the repository when it is missing (with
# scan on push), logs the engine in with 'aws ecr get-login-password', tags and pushes.
# Prints the image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG) as the last
# line, ready for scripts/deploy.sh --image-uri.
#
#   --image IMAGE        local image (default: lambda-coverage:latest)
#   --repository NAME    ECR repository (default: lambda-coverage)
#   --tag TAG            tag in ECR (default: the image's revision label, else the git revision)
#   --region REGION      (default: AWS_REGION, AWS_DEFAULT_REGION or the CLI's configured region)
#   --account-id ID      (default: the account of the current credentials)
#   --dry-run            print the commands without calling AWS or the engine
#   -h, --help           this help
#
# Needs: the AWS CLI with credentials allowed to use ECR, and docker (or podman with
# CONTAINER_ENGINE=podman). The repository must be in the function's region.
# Example: scripts/build.sh && scripts/push-ecr.sh --region eu-west-1
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

IMAGE="$DEFAULT_IMAGE_NAME:latest"
REPOSITORY=lambda-coverage
TAG=""
REGION=""
ACCOUNT=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage_from_header; exit 0 ;;
    --image) IMAGE=${2:?--image needs a value}; shift 2 ;;
    --repository) REPOSITORY=${2:?--repository needs a value}; shift 2 ;;
    --tag) TAG=${2:?--tag needs a value}; shift 2 ;;
    --region) REGION=${2:?--region needs a value}; shift 2 ;;
    --account-id) ACCOUNT=${2:?--account-id needs a value}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ $REPOSITORY =~ ^[a-z0-9]+([._/-][a-z0-9]+)*$ ]] || die "--repository '$REPOSITORY' is not a valid ECR repository name"

ENGINE=$(engine)
need_engine
[ "$DRY_RUN" = 1 ] || need_aws_cli
REGION=$(aws_region)
if [ -z "$ACCOUNT" ]; then
  if [ "$DRY_RUN" = 1 ]; then
    ACCOUNT="<account-id>"
  else
    ACCOUNT=$(aws_account)
  fi
fi

if [ "$DRY_RUN" = 1 ]; then
  [ -n "$TAG" ] || TAG=$(code_revision)
else
  "$ENGINE" image inspect "$IMAGE" >/dev/null 2>&1 \
    || die "no local image '$IMAGE': build it first (scripts/build.sh)"
  if [ -z "$TAG" ]; then
    TAG=$("$ENGINE" image inspect --format '{{ index .Config.Labels "org.opencontainers.image.revision" }}' "$IMAGE" 2>/dev/null || true)
    case "$TAG" in "" | "<no value>" | unknown) TAG=$(code_revision) ;; esac
  fi
fi
REGISTRY="$ACCOUNT.dkr.ecr.$REGION.amazonaws.com"
URI="$REGISTRY/$REPOSITORY:$TAG"
log "pushing $IMAGE to $URI"

# 1. the repository, created with scan on push when missing
if [ "$DRY_RUN" = 1 ] || ! aws ecr describe-repositories --region "$REGION" \
  --repository-names "$REPOSITORY" >/dev/null 2>&1; then
  run aws ecr create-repository --region "$REGION" --repository-name "$REPOSITORY" \
    --image-scanning-configuration scanOnPush=true --output text --query repository.repositoryUri >&2
fi

# 2. log in (the password goes through a pipe, never on a command line)
printf '+ aws ecr get-login-password --region %s | %s login --username AWS --password-stdin %s\n' \
  "$REGION" "$ENGINE" "$REGISTRY" >&2
if [ "$DRY_RUN" != 1 ]; then
  aws ecr get-login-password --region "$REGION" \
    | "$ENGINE" login --username AWS --password-stdin "$REGISTRY" >&2 \
    || die "could not log $ENGINE in to $REGISTRY"
fi

# 3. tag and push
run "$ENGINE" tag "$IMAGE" "$URI" >&2
if [ "$ENGINE" = podman ]; then
  # podman builds OCI images; push the Docker v2 schema 2 form every Lambda region accepts
  run podman push --format v2s2 "$URI" >&2
else
  run docker push "$URI" >&2
fi
printf '%s\n' "$URI"
