#!/usr/bin/env bash
# Instructions per warm batch invocation, by part (bench/batch_counts.py), in the image
# under callgrind: each configuration run with A and B measured invocations, then the
# difference attributed per function.  Deterministic: run it on a loaded machine too.
#
#   bench/run_batch_counts.sh [--image IMAGE] [--tree DIR] [--out DIR] [--lines] [CONFIG...]
#   bench/run_batch_counts.sh --calibrate        # bench/event_costs.py: per event, per re-arming
#   MODES="block" bench/run_batch_counts.sh --calibrate --no-perf   # some modes only
#
# --tree mounts another coverage_runtime (a tree before a change) over the image's.
# --no-perf runs without -X perf: the exact totals (a trampoline per Python call adds
# a C call and a new evaluation loop per Python-to-Python call), no names per Python function.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=localhost/lambda-coverage-bench:s10
TREE=$PWD/coverage_runtime
OUT=/tmp/batch-counts
BRANCH=--branch
A=2
B=6
CONFIGS=()
CALIBRATE=
PERF=(-X perf)
while (($#)); do
    case $1 in
        --image) IMAGE=$2; shift 2 ;;
        --tree) TREE=$(realpath "$2"); shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --lines) BRANCH=; shift ;;
        --calibrate) CALIBRATE=1; shift ;;
        --no-perf) PERF=(); shift ;;
        *) CONFIGS+=("$1"); shift ;;
    esac
done
((${#CONFIGS[@]})) || CONFIGS=(off none same new new-prearm)
mkdir -p "$OUT"
chmod 777 "$OUT"

# One callgrind run in the image: callgrind's file and the perf map land in $1.
counted() {
    local run=$1
    shift
    rm -rf "$run" && mkdir -p "$run" && chmod 777 "$run"
    podman run --rm --network=host \
        -v /usr/bin/valgrind:/usr/bin/valgrind:ro -v /usr/bin/valgrind.bin:/usr/bin/valgrind.bin:ro \
        -v /usr/libexec/valgrind:/usr/libexec/valgrind:ro \
        -v "$PWD/events:/var/task/events:ro" -v "$PWD/bench:/var/task/bench:ro" \
        -v "$TREE:/opt/venv/lib/python3.14/site-packages/coverage_runtime:ro" \
        -v "$run:/tmp" --workdir /var/task \
        --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONHASHSEED=0 \
        --entrypoint valgrind "$IMAGE" --tool=callgrind --callgrind-out-file=/tmp/cg \
        python "${PERF[@]}" "$@" >"$run/log" 2>&1
    if ((${#PERF[@]})); then mv "$run"/perf-*.map "$run/perf.map"; else : >"$run/perf.map"; fi
}

if [[ -n $CALIBRATE ]]; then
    for mode in ${MODES:-plain line branch muted disabled rearm block paused}; do
        for count in 1000 3000; do
            counted "$OUT/calibrate-$mode-$count" -m bench.event_costs "$mode" "$count"
        done
        a=$OUT/calibrate-$mode-1000
        b=$OUT/calibrate-$mode-3000
        echo "== calibrate $mode (per iteration)"
        python3 -m bench.batch_counts attribute "$a/cg" "$a/perf.map" "$b/cg" "$b/perf.map" \
            --invocations 2000 --top 25
    done
    exit 0
fi
for config in "${CONFIGS[@]}"; do
    for count in $A $B; do
        counted "$OUT/$config${BRANCH:+-branch}-$count" \
            -m bench.batch_counts run --config "$config" $BRANCH --count "$count"
    done
    a=$OUT/$config${BRANCH:+-branch}-$A
    b=$OUT/$config${BRANCH:+-branch}-$B
    echo "== $config${BRANCH:+ (branches)}"
    python3 -m bench.batch_counts attribute "$a/cg" "$a/perf.map" "$b/cg" "$b/perf.map" \
        --invocations $((B - A)) --top 30
done
