#!/usr/bin/env bash
# Cold start of the heavy function (bench/heavy: 30+ distributions `pip install --target`
# into the task root, imported at init) on host Pythons, through the RIE:
#   bench/run_heavy.sh                       # 3.13 (sysmon) and 3.11 (ctrace), 8 rounds
#   bench/run_heavy.sh 3.13 -r 12            # one Python, more rounds
# Each Python gets a venv with the runtime's requirements (.local/venvs/bench-<version>)
# and the function built by bench/heavy/build.sh (.local/bench-heavy/<version>).
set -euo pipefail
cd "$(dirname "$0")/.."
versions=()
while [ $# -gt 0 ] && [[ "$1" =~ ^3\.[0-9]+$ ]]; do versions+=("$1"); shift; done
[ ${#versions[@]} -gt 0 ] || versions=(3.13 3.11)
HOST_PY=$(scripts/setup-venv.sh)
for version in "${versions[@]}"; do
  base=""
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python "$(command -v "python$version" || true)"; do
    if [ -n "$candidate" ] && "$candidate" -c pass 2>/dev/null; then base=$candidate; break; fi
  done
  [ -n "$base" ] || { echo "python$version not found: skipped" >&2; continue; }
  venv=".local/venvs/bench-$version"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import awslambdaric, coverage' 2>/dev/null; then
    "$base" -m venv --clear "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt >&2
  fi
  root=$(bench/heavy/build.sh "$venv/bin/python" ".local/bench-heavy/$version")
  target=1.05
  "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))' || target=""
  "$HOST_PY" bench/bench_shim.py --python "$venv/bin/python" --task-root "$root" \
    --handler handler.lambda_handler --event bench/heavy/event.json -n 20 -r 8 \
    ${target:+--init-target $target} "$@"
done
