# Every target bootstraps its own environment: a private uv in .tools/, the project in .venv/.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
STACK ?= dev
UV_VERSION := 0.13.8
TOOLS := .tools
VENV := .venv
UV := $(TOOLS)/bin/uv
BIN := $(VENV)/bin

# uv must use the machine's Python 3.11+, never download one.
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1

.PHONY: help bootstrap test lint typecheck unit preview lock clean

help:
	@echo "make preview [STACK=dev]  offline preview: resource tree, cost, policy; writes build/STACK/"
	@echo "make test                 ruff, mypy and every test"
	@echo "make lock                 re-pin requirements/dev.txt after changing pyproject.toml"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(BIN)/.bootstrapped: $(UV) pyproject.toml requirements/dev.txt
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --python $(BIN)/python requirements/dev.txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --editable .
	touch $@

bootstrap: $(BIN)/.bootstrapped

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: bootstrap
	$(BIN)/mypy

unit: bootstrap
	$(BIN)/pytest

test: lint typecheck unit

preview: bootstrap
	$(BIN)/mlstack preview $(STACK) --out build/$(STACK)

# Pins the whole dependency tree as name==version lines: no lock file that records download addresses.
lock: $(UV)
	$(UV) pip compile --quiet --python-version 3.11 --extra dev --no-header --no-annotate \
		--output-file requirements/dev.txt pyproject.toml

clean:
	rm -rf $(VENV) $(TOOLS) build .mypy_cache .ruff_cache .pytest_cache
