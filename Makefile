# Two entry points, each self-sufficient on a fresh machine (needs python3.11+ and a C compiler):
#   make run   - create .venv, install strop, show what it is for on the embedded model (about a minute)
#   make test  - create .venv, install strop with test extras, lint, run the whole test suite
#
# llama-cpp-python compiles from source (5-11 min on 2 cores). The flags are the
# project's, not pip's defaults (-march=native crashed on some CPUs):
# scripts/llama-wheel.sh builds one wheel per set of flags under
# ~/.cache/strop/wheels and the venv installs exactly that file, so pip's own
# cache (keyed without the flags) is never used for it.
#   LLAMA_CPU=portable  (default) x86-64-v3: any x86-64 CPU with AVX2/FMA/F16C (Intel 2013+, AMD Zen)
#   LLAMA_CPU=baseline  any x86-64 CPU (chosen automatically when this CPU lacks AVX2)
#   LLAMA_CPU=avx512    x86-64-v4 without AMX (AVX-512 CPUs: Intel Skylake-SP+, AMD Zen 4); opt-in
#   LLAMA_CPU=native    -march=native: this machine only, and not every CPU survives it (see README)
# Stamps re-install only when pyproject.toml or the level changes.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
QUESTION ?= What is 17 + 25?
LLAMA_CPU ?= $(shell $(PYTHON) src/strop/backends/native.py default-level)
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: run solve test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.llama-$(LLAMA_CPU): scripts/llama-wheel.sh scripts/llama-level.sh src/strop/backends/native.py | $(PY)
	PYTHON=$(PY) scripts/llama-wheel.sh $(LLAMA_CPU) > $(VENV)/.llama-wheel
	$(PY) -m pip install --progress-bar off --no-deps --force-reinstall "$$(cat $(VENV)/.llama-wheel)"
	rm -f $(VENV)/.llama-portable $(VENV)/.llama-baseline $(VENV)/.llama-avx512 $(VENV)/.llama-native
	touch $@

$(VENV)/.run-installed: pyproject.toml $(VENV)/.llama-$(LLAMA_CPU) | $(PY)
	$(PY) -m pip install --progress-bar off -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.llama-$(LLAMA_CPU) | $(PY)
	$(PY) -m pip install --progress-bar off -e '.[hf,train,test]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(VENV)/bin/strop demo

solve: $(VENV)/.run-installed
	$(VENV)/bin/strop solve "$(QUESTION)"

lint: $(VENV)/.test-installed
	$(PY) -m ruff check src tests bench

test: lint
	$(PY) -m pytest -q --timeout 900

bench: $(VENV)/.test-installed
	$(PY) bench/backend_speed.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
