#!/bin/sh
# Entry point of the function image (ENTRYPOINT; the arguments are the handler, from CMD).
#
# In Lambda (AWS_LAMBDA_RUNTIME_API set): exec python -m coverage_runtime <handler>.
# Elsewhere: run the same command under the AWS Runtime Interface Emulator, taken from
# $AWS_LAMBDA_RIE, /usr/local/bin/aws-lambda-rie (baked in with --build-arg RIE_SOURCE=...)
# or /aws-lambda/aws-lambda-rie (mounted: -v ~/.aws-lambda-rie:/aws-lambda:ro).
# RIE_ADDRESS (default 0.0.0.0:8080, for `-p 9000:8080`) and RIE_API_ADDRESS (default
# 127.0.0.1:9001) set where the emulator listens; with host networking use 127.0.0.1 for both.
#
# Started as root (docker run, podman run, `sam local invoke`, which runs this under its own
# /var/rapid/aws-lambda-rie), the function itself runs as the image's unprivileged user
# (LAMBDA_RUN_AS, default `lambda`), as Lambda runs it as one of its own.
set -eu

run_function() {
  if [ "$(id -u)" = 0 ] && id "${LAMBDA_RUN_AS:-lambda}" >/dev/null 2>&1; then
    user=${LAMBDA_RUN_AS:-lambda}
    if command -v setpriv >/dev/null 2>&1; then
      exec setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --clear-groups \
        python -m coverage_runtime "$@"
    fi
    exec python -c 'import os, sys
uid, gid = int(sys.argv[1]), int(sys.argv[2])
os.setgroups([]); os.setgid(gid); os.setuid(uid)
os.execvp("python", ["python", "-m", "coverage_runtime", *sys.argv[3:]])' \
      "$(id -u "$user")" "$(id -g "$user")" "$@"
  fi
  exec python -m coverage_runtime "$@"
}

if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  run_function "$@"
fi

for rie in "${AWS_LAMBDA_RIE:-}" /usr/local/bin/aws-lambda-rie /aws-lambda/aws-lambda-rie; do
  if [ -n "$rie" ] && [ -x "$rie" ]; then
    exec "$rie" \
      --runtime-interface-emulator-address "${RIE_ADDRESS:-0.0.0.0:8080}" \
      --runtime-api-address "${RIE_API_ADDRESS:-127.0.0.1:9001}" \
      "$0" "$@"
  fi
done

echo "lambda-entrypoint: AWS_LAMBDA_RUNTIME_API is not set (not in Lambda) and no Runtime Interface" \
  "Emulator was found: mount it at /aws-lambda/aws-lambda-rie or build with --build-arg RIE_SOURCE=..." >&2
exit 1
