#!/usr/bin/env bash
# usage: scripts/invoke.sh [--port PORT] [--host HOST] [--dry-run] <event-file | event-name | ->
#
# Sends one event to the function running locally under the RIE (scripts/run-local.sh)
# and pretty-prints the response. The event is a JSON file, the name of a file in
# events/ (with or without .json), or '-' for standard input.
#
#   --port PORT   the RIE's port on the host (default: 9000)
#   --host HOST   (default: 127.0.0.1)
#   --dry-run     print the request without sending it
#   -h, --help    this help
#
# Exit status: 0 when the RIE answered (also for a function error, which the response
# body shows as errorType/errorMessage), 1 when it could not be reached.
# Example: scripts/invoke.sh health
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

PORT=9000
HOST=127.0.0.1
EVENT=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage_from_header; exit 0 ;;
    --port) PORT=${2:?--port needs a value}; shift 2 ;;
    --host) HOST=${2:?--host needs a value}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -) EVENT=-; shift ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *)
      [ -z "$EVENT" ] || die "one event at a time (got '$EVENT' and '$1')"
      EVENT=$1; shift ;;
  esac
done
[ -n "$EVENT" ] || die "which event? Give a JSON file, a name from events/ ($(cd "$ROOT/events" 2>/dev/null && ls -- *.json 2>/dev/null | sed 's/\.json$//' | tr '\n' ' '| sed 's/ $//')), or '-' for stdin"

if [ "$EVENT" = - ]; then
  FILE=-
elif [ -f "$EVENT" ]; then
  FILE=$EVENT
elif [ -f "$ROOT/events/$EVENT" ]; then
  FILE=$ROOT/events/$EVENT
elif [ -f "$ROOT/events/$EVENT.json" ]; then
  FILE=$ROOT/events/$EVENT.json
else
  die "no event file '$EVENT' (nor events/$EVENT.json)"
fi

need_cmd curl "Install curl (apt-get install curl)."
URL="http://$HOST:$PORT/2015-03-31/functions/function/invocations"

pretty() { # pretty FILE: indented JSON, or the body as it came
  if command -v jq >/dev/null 2>&1 && jq . "$1" 2>/dev/null; then
    return 0
  elif command -v python3 >/dev/null 2>&1 && python3 -m json.tool "$1" 2>/dev/null; then
    return 0
  fi
  cat "$1"
  echo
}

log "POST $URL < ${FILE/#$ROOT\//}"
if [ "$DRY_RUN" = 1 ]; then
  run curl -sS -XPOST "$URL" -H 'Content-Type: application/json' --data-binary "@$FILE"
  exit 0
fi
response=$(mktemp)
trap 'rm -f "$response"' EXIT
if ! status=$(curl -sS -XPOST "$URL" -H 'Content-Type: application/json' \
  --data-binary "@$FILE" -o "$response" -w '%{http_code}'); then
  die "no answer from $URL: is the function running? (scripts/run-local.sh --port $PORT)"
fi
[ "$status" = 200 ] || log "HTTP $status"
pretty "$response"
