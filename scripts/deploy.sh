#!/usr/bin/env bash
# usage: scripts/deploy.sh --image-uri URI --bucket BUCKET [options]
#
# Creates the Lambda function from the container image, or updates its code and
# configuration when it exists, and waits until the update is done. The function gets the
# coverage settings as environment variables and a least-privilege execution role:
# CloudWatch Logs (AWSLambdaBasicExecutionRole) and s3:PutObject on the coverage prefix only.
#
#   --image-uri URI       image in ECR (printed by scripts/push-ecr.sh)
#   --bucket BUCKET       COVERAGE_S3_BUCKET: where coverage goes (must exist)
#   --prefix PREFIX       COVERAGE_S3_PREFIX (default: coverage/)
#   --function NAME       function name (default: lambda-coverage)
#   --role-name NAME      execution role, created when missing (default: <function>-role)
#   --mode full|selective COVERAGE_MODE (default: full)
#   --branch              COVERAGE_BRANCH=true
#   --kms-key-id ID       COVERAGE_S3_SSE=aws:kms with this key (and kms:GenerateDataKey on it)
#   --expected-owner ID   COVERAGE_S3_EXPECTED_OWNER (default: the account of the credentials)
#   --env NAME=VALUE      any other variable, e.g. COVERAGE_FLUSH_INTERVAL_SECONDS=30 (repeatable)
#   --memory MB           memory size (default: 512)
#   --timeout SECONDS     timeout (default: 30)
#   --architecture A      x86_64 (default) or arm64, matching the image's platform
#   --region REGION       (default: AWS_REGION, AWS_DEFAULT_REGION or the CLI's configured region)
#   --account-id ID       (default: the account of the current credentials)
#   --dry-run             print the AWS commands without calling AWS
#   -h, --help            this help
#
# The environment given here replaces the function's whole environment on update.
# Example: scripts/deploy.sh --image-uri "$(scripts/push-ecr.sh)" --bucket my-coverage-bucket
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

IMAGE_URI=""
BUCKET=${COVERAGE_S3_BUCKET:-}
PREFIX=coverage/
FUNCTION=lambda-coverage
ROLE_NAME=""
MODE=full
BRANCH=false
KMS_KEY=""
OWNER=""
MEMORY=512
TIMEOUT=30
ARCH=x86_64
REGION=""
ACCOUNT=""
ENVS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage_from_header; exit 0 ;;
    --image-uri) IMAGE_URI=${2:?--image-uri needs a value}; shift 2 ;;
    --bucket) BUCKET=${2:?--bucket needs a value}; shift 2 ;;
    --prefix) PREFIX=${2?--prefix needs a value}; shift 2 ;;
    --function) FUNCTION=${2:?--function needs a value}; shift 2 ;;
    --role-name) ROLE_NAME=${2:?--role-name needs a value}; shift 2 ;;
    --mode) MODE=${2:?--mode needs a value}; shift 2 ;;
    --branch) BRANCH=true; shift ;;
    --kms-key-id) KMS_KEY=${2:?--kms-key-id needs a value}; shift 2 ;;
    --expected-owner) OWNER=${2:?--expected-owner needs a value}; shift 2 ;;
    --env)
      [[ ${2:-} == [A-Za-z_]*=* ]] || die "--env needs NAME=VALUE"
      ENVS+=("$2"); shift 2 ;;
    --memory) MEMORY=${2:?--memory needs a value}; shift 2 ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
    --architecture) ARCH=${2:?--architecture needs a value}; shift 2 ;;
    --region) REGION=${2:?--region needs a value}; shift 2 ;;
    --account-id) ACCOUNT=${2:?--account-id needs a value}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[ -n "$IMAGE_URI" ] || die "--image-uri is required (the URI printed by scripts/push-ecr.sh)"
[[ $IMAGE_URI == *.dkr.ecr.*.amazonaws.com/* ]] || die "--image-uri must be an ECR image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG), not '$IMAGE_URI'"
[ -n "$BUCKET" ] || die "no coverage bucket: pass --bucket BUCKET (or set COVERAGE_S3_BUCKET)"
[[ $BUCKET =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "--bucket '$BUCKET' is not a valid S3 bucket name"
case "$MODE" in full | selective) ;; *) die "--mode must be full or selective" ;; esac
case "$ARCH" in x86_64 | arm64) ;; *) die "--architecture must be x86_64 or arm64" ;; esac
[ -n "$PREFIX" ] || die "--prefix must not be empty: the function's role is scoped to PREFIX<function>/, and the combiner writes PREFIXcombined/"
[[ $PREFIX == */ ]] || PREFIX="$PREFIX/"
ROLE_NAME=${ROLE_NAME:-$FUNCTION-role}

[ "$DRY_RUN" = 1 ] || need_aws_cli
REGION=$(aws_region)
if [ -z "$ACCOUNT" ]; then
  # a dry run never calls AWS: the account is the image's (same-account ECR is the usual case)
  if [ "$DRY_RUN" = 1 ]; then ACCOUNT=${IMAGE_URI%%.*}; else ACCOUNT=$(aws_account); fi
fi
OWNER=${OWNER:-$ACCOUNT}
uri_region=${IMAGE_URI#*.dkr.ecr.}
uri_region=${uri_region%%.amazonaws.com/*}
[ "$uri_region" = "$REGION" ] || die "the image is in $uri_region but the function would be in $REGION: Lambda needs the ECR repository in the function's region"
AWS=(aws --region "$REGION")

json_string() { # a JSON string literal
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/\\r}
  printf '"%s"' "$s"
}

# ------------------------------------------------------------------ environment (DESIGN §4)
VARS=(
  "COVERAGE_S3_BUCKET=$BUCKET"
  "COVERAGE_S3_PREFIX=$PREFIX"
  "COVERAGE_ENABLED=true"
  "COVERAGE_MODE=$MODE"
  "COVERAGE_BRANCH=$BRANCH"
)
[[ $OWNER =~ ^[0-9]{12}$ ]] && VARS+=("COVERAGE_S3_EXPECTED_OWNER=$OWNER")
if [ -n "$KMS_KEY" ]; then
  VARS+=("COVERAGE_S3_SSE=aws:kms" "COVERAGE_S3_KMS_KEY_ID=$KMS_KEY")
fi
VARS+=(${ENVS[@]+"${ENVS[@]}"})
declare -A value=()
order=()
for pair in "${VARS[@]}"; do # a later value of the same name wins
  key=${pair%%=*}
  # Never printed: values of secret-looking names, and credentials inside URLs.
  if [[ ${key^^} =~ (TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|API_KEY|ACCESS_KEY) ]]; then
    SECRETS+=("${pair#*=}")
  elif [[ ${pair#*=} =~ ://([^/@]+)@ ]]; then
    SECRETS+=("${BASH_REMATCH[1]}")
  fi
  [ -n "${value[$key]+set}" ] || order+=("$key")
  value[$key]=${pair#*=}
done
env_json='{"Variables":{'
sep=""
for key in "${order[@]}"; do
  env_json+="$sep$(json_string "$key"):$(json_string "${value[$key]}")"
  sep=,
done
env_json+='}}'

# ------------------------------------------------------------------ role
PARTITION=aws
case "$REGION" in cn-*) PARTITION=aws-cn ;; us-gov-*) PARTITION=aws-us-gov ;; esac
ROLE_ARN="arn:$PARTITION:iam::$ACCOUNT:role/$ROLE_NAME"
trust='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
policy='{"Version":"2012-10-17","Statement":[{"Sid":"PutCoverageObjects","Effect":"Allow","Action":"s3:PutObject","Resource":"arn:'$PARTITION':s3:::'$BUCKET'/'$PREFIX$FUNCTION'/*"},{"Sid":"HealthCheckHeadBucket","Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:'$PARTITION':s3:::'$BUCKET'"}'
if [ -n "$KMS_KEY" ]; then
  kms_arn=$KMS_KEY
  [[ $kms_arn == arn:* ]] || kms_arn="arn:$PARTITION:kms:$REGION:$ACCOUNT:key/$KMS_KEY"
  policy+=',{"Sid":"EncryptCoverageObjects","Effect":"Allow","Action":"kms:GenerateDataKey","Resource":"'$kms_arn'"}'
fi
policy+=']}'

log "deploying $IMAGE_URI as function '$FUNCTION' in $REGION (role $ROLE_NAME, coverage to s3://$BUCKET/$PREFIX)"
if [ "$DRY_RUN" != 1 ]; then
  aws s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1 \
    || die "bucket '$BUCKET' does not exist or is not accessible with these credentials"
fi

role_created=0
if [ "$DRY_RUN" = 1 ] || ! aws iam get-role --role-name "$ROLE_NAME" >/dev/null 2>&1; then
  run aws iam create-role --role-name "$ROLE_NAME" --assume-role-policy-document "$trust" \
    --description "lambda-coverage function $FUNCTION: logs and coverage uploads only" >/dev/null
  role_created=1
fi
run aws iam attach-role-policy --role-name "$ROLE_NAME" \
  --policy-arn "arn:$PARTITION:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
run aws iam put-role-policy --role-name "$ROLE_NAME" --policy-name coverage-upload \
  --policy-document "$policy"

# ------------------------------------------------------------------ function
if [ "$DRY_RUN" != 1 ] && "${AWS[@]}" lambda get-function --function-name "$FUNCTION" >/dev/null 2>&1; then
  run "${AWS[@]}" lambda update-function-code --function-name "$FUNCTION" \
    --image-uri "$IMAGE_URI" --output text --query LastUpdateStatus >&2
  run "${AWS[@]}" lambda wait function-updated --function-name "$FUNCTION"
  run "${AWS[@]}" lambda update-function-configuration --function-name "$FUNCTION" \
    --role "$ROLE_ARN" --memory-size "$MEMORY" --timeout "$TIMEOUT" \
    --environment "$env_json" --output text --query LastUpdateStatus >&2
  run "${AWS[@]}" lambda wait function-updated --function-name "$FUNCTION"
else
  create=("${AWS[@]}" lambda create-function --function-name "$FUNCTION" --package-type Image
    --code "ImageUri=$IMAGE_URI" --role "$ROLE_ARN" --architectures "$ARCH"
    --memory-size "$MEMORY" --timeout "$TIMEOUT" --environment "$env_json"
    --output text --query FunctionArn)
  if [ "$DRY_RUN" = 1 ]; then
    run "${create[@]}"
  else
    # A new role takes a few seconds before Lambda can assume it.
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
      if out=$(run "${create[@]}" 2>&1); then
        printf '%s\n' "$out" >&2
        break
      fi
      if [ "$role_created" = 1 ] && [[ $out == *"cannot be assumed"* ]] && [ "$attempt" -lt 10 ]; then
        log "the new role is not usable yet; retrying in 5 s"
        sleep 5
        continue
      fi
      die "create-function failed: $out"
    done
  fi
  run "${AWS[@]}" lambda wait function-active --function-name "$FUNCTION"
fi
log "done: function '$FUNCTION' runs $IMAGE_URI; coverage goes to s3://$BUCKET/$PREFIX$FUNCTION/"
