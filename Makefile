# The two commands of the README: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements-test.txt 2>/dev/null | cksum | cut -d' ' -f1)

# The CPU build of torch on machines without an NVIDIA GPU (fast, small); users with a GPU keep the
# CUDA build pip chooses. Pinning torch through a constraints file stops other packages from
# upgrading it to a multi-GB CUDA build.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(HAS_GPU),1)
TORCH_SPEC ?= torch>=2.1
else
TORCH_SPEC ?= torch==2.13.0
endif

.PHONY: demo test lint typecheck pytest env clean docs

$(STAMP): pyproject.toml requirements-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	echo "$(TORCH_SPEC)" > $(VENV)/constraints.txt
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(VENV)/constraints.txt "$(TORCH_SPEC)"
	$(PIP) install -q -c $(VENV)/constraints.txt -e ".[dev]" -r requirements-test.txt
	rm -f $(VENV)/.installed-*
	touch $@

env: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nnseg demo demo_work

lint: $(STAMP)
	$(VENV)/bin/ruff check nnseg tests benchmarks examples docs/build_api.py
	$(VENV)/bin/ruff format --check nnseg tests benchmarks examples docs/build_api.py

docs: $(STAMP)
	$(PY) docs/build_api.py

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) demo_work .pytest_cache .mypy_cache .ruff_cache
