# Tsunagu: the two commands a newcomer needs.
#   make run   - set up (virtualenv, Python deps) and start Tsunagu on the demo config
#   make test  - set up everything the tests need (Debian packages, PostgreSQL) and run
#                lint, type checks and the whole test suite
# Both work as root on a fresh Debian 12 machine; they install what they need.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.deps-installed
CONFIG ?= examples/demo.yaml

.PHONY: run test setup sysdeps runtime-deps bench-deps lint typecheck pytest bench clean

run: setup runtime-deps
	$(BIN)/tsunagu serve --config $(CONFIG)

test: sysdeps runtime-deps setup lint typecheck pytest

setup: $(DEPS_STAMP)

$(BIN)/python:
	scripts/ensure-python.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

sysdeps:
	scripts/install-test-packages.sh

runtime-deps: | $(BIN)/python
	PYTHON=$(BIN)/python scripts/install-runtime-packages.sh

bench-deps:
	scripts/install-test-packages.sh kamailio rtpengine-daemon wrk

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest $(PYTEST_ARGS)

bench: sysdeps runtime-deps bench-deps setup
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
