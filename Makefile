# The commands of the README. Every target installs what it needs first: the system packages
# (tools/system-deps.sh) and a virtualenv with the locked dependencies (requirements.lock).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Rebuilt when the dependencies change or a new package appears in gen/ (editable installs map
# top-level packages when they are installed).
INSTALLED := $(VENV)/.installed

.PHONY: up status demo test test-unit test-integration test-contract gen lint check-gen lock system-deps \
	bench-events bench-saga bench-gateway bench-store-drivers

# `make up INSTANCES=3` for three instances of every service.
INSTANCES ?= 2
up: system-deps $(INSTALLED)
	$(BIN)/python -m tools.up --instances $(INSTANCES)

# Every registered instance with its health and circuit breakers (of the system `make up` runs).
status: $(INSTALLED)
	$(BIN)/python -m tools.status

# A scenario through the gateway's REST API, each step printed (against `make up`).
demo: $(INSTALLED)
	$(BIN)/python -m tools.demo

test: system-deps $(INSTALLED)
	$(BIN)/pytest tests

test-unit: $(INSTALLED)
	$(BIN)/pytest tests/unit

test-integration: system-deps $(INSTALLED)
	$(BIN)/pytest tests/integration

test-contract: $(INSTALLED)
	$(BIN)/pytest tests/contract

# Benchmarks print comparable figures and a RESULT line; they are never part of `make test`.
bench-events: system-deps $(INSTALLED)
	$(BIN)/python -m bench.events

bench-saga: system-deps $(INSTALLED)
	$(BIN)/python -m bench.saga

bench-gateway: system-deps $(INSTALLED)
	$(BIN)/python -m bench.gateway

bench-store-drivers: system-deps $(INSTALLED)
	$(BIN)/python -m bench.store_drivers

gen: $(INSTALLED)
	$(BIN)/python tools/contracts.py gen
	$(BIN)/python -m gateway.config -o gateway/envoy.yaml
	$(BIN)/python -m gateway.openapi -o gateway/openapi.json

lint: $(INSTALLED) check-gen
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python tools/contracts.py deps
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/python tools/contracts.py breaking
	$(BIN)/openapi-spec-validator gateway/openapi.json

# Generated code is committed; it must be exactly what `make gen` produces from proto/.
GENERATED := gen gateway/envoy.yaml gateway/openapi.json
check-gen: gen
	@git diff --exit-code --stat -- $(GENERATED) || \
		(echo "generated files are stale: run 'make gen' and commit" && exit 1)
	@test -z "$$(git status --porcelain -- $(GENERATED))" || (git status --porcelain -- $(GENERATED); \
		echo "generated files not committed: run 'make gen' and commit" && exit 1)

# Re-pins every dependency (after a change to pyproject.toml).
lock: $(INSTALLED)
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_31 -o requirements.lock -q

system-deps:
	@PYTHON=$(PYTHON) tools/system-deps.sh

$(INSTALLED): pyproject.toml requirements.lock $(wildcard gen/*/__init__.py)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@
