# Two entry points, each self-sufficient on a fresh machine (needs python3.11+ and a C compiler):
#   make run   - create .venv, install strop, answer a question with the embedded model
#   make test  - create .venv, install strop with test extras, run the whole test suite
#
# llama-cpp-python compiles from source (~11 min on 2 cores); pip keeps the wheel
# in its cache, so later environments reuse it. Stamps re-install only when
# pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
QUESTION ?= What is 17 + 25?
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: run test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --progress-bar off -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --progress-bar off -e '.[hf,train,test]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(VENV)/bin/strop solve "$(QUESTION)"

test: $(VENV)/.test-installed
	$(PY) -m pytest -q --timeout 900

bench: $(VENV)/.test-installed
	$(PY) bench/backend_speed.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
