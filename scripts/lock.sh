#!/usr/bin/env bash
# Regenerates requirements/test.lock and requirements/demo.lock from pyproject.toml's ranges, with hashes.
# The demo lock is constrained to the test lock's versions, so `make demo` runs what `make test` tested.
# requirements/weights.lock (packages installed without their declared dependencies) is kept by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.venv-lock
PIP_TOOLS=pip-tools==7.7.0
# The tools' venv is shared with scripts/test-versions.sh (uv): add to it, never clear it.
test -x $TOOLS/bin/python || python3 -m venv $TOOLS
test -x $TOOLS/bin/pip-compile || $TOOLS/bin/pip install -q $PIP_TOOLS
# CUSTOM_COMPILE_COMMAND: what the locks' header says regenerates them.
export CUSTOM_COMPILE_COMMAND="make lock"
compile() {
  $TOOLS/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
    --no-emit-find-links -c requirements/constraints.txt "$@"
}
compile pyproject.toml --extra test --extra analysis --extra gemma --extra serve -o requirements/test.lock
compile pyproject.toml -c requirements/test.lock -o requirements/demo.lock
echo "locked: $(grep -c '==' requirements/test.lock) packages for make test, $(grep -c '==' requirements/demo.lock) for make demo"
