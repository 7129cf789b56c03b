# lakepulse — the two commands a newcomer needs: `make run` (the product) and `make test` (the suite).
SHELL := /bin/bash
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
LAKEPULSE := $(BIN)/lakepulse
PYTEST_ARGS ?=

.PHONY: setup web browser provision run up test test-purge test-unit test-integration drill lint bench down status clean-state

# Python environment from the lock file (uv is fetched from PyPI if the machine lacks it), and the web assets.
setup: web
	@command -v uv >/dev/null || python3 -m pip install -q "uv==$(UV_VERSION)"
	uv sync --frozen

# The dashboard's front end: our ES modules in web/static are served as they are (no build step); the one npm
# package, uPlot, is installed from web/package-lock.json and its dist files copied to web/vendor (not committed).
# Runs npm only when the lock file is newer than the copy.
WEB_VENDOR := web/vendor/uPlot.iife.min.js
web: $(WEB_VENDOR)

$(WEB_VENDOR): web/package.json web/package-lock.json
	cd web && npm ci --ignore-scripts --no-audit --no-fund
	mkdir -p web/vendor
	cp web/node_modules/uplot/dist/uPlot.iife.min.js web/node_modules/uplot/dist/uPlot.min.css web/node_modules/uplot/LICENSE web/vendor/
	touch $(WEB_VENDOR)

# Debian's Chromium and ChromeDriver for the browser tests (Playwright's own browser download cannot work here;
# the tests launch /usr/bin/chromium). Installed once: skipped when both are present.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then echo "chromium: $$($(CHROMIUM) --version 2>/dev/null)"; else \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

provision: setup
	$(LAKEPULSE) provision

# Run the product: provision everything (first time only), start every service, bootstrap, show status.
run: setup
	$(LAKEPULSE) up

up: run

# The suite CI runs: brings the whole stack up (idempotent) without demo traffic (stopped if `make run`
# started it, so no test counts its events), then unit, DAG, integration and end-to-end tests. The tests
# that delete the stack's state (`-m destructive`) run only when asked: `make test-purge`; the fault drills
# (`-m drill`, kill -9 of each component) only with `make drill`.
TEST_UP := --no-demo

test: setup browser
	$(LAKEPULSE) up $(TEST_UP)
	$(BIN)/python -m pytest tests -m "not destructive and not drill" $(PYTEST_ARGS)

# Deletes every piece of the stack's state (`lakepulse down --purge`), starts it again and checks each store
# is empty: CI runs it last.
test-purge: setup
	$(BIN)/python -m pytest tests -m destructive $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit tests/dags $(PYTEST_ARGS)

test-integration: setup browser
	$(LAKEPULSE) up $(TEST_UP)
	$(BIN)/python -m pytest tests/integration tests/e2e tests/browser -m "not destructive and not drill" $(PYTEST_ARGS)

# Fault drills (issue 21): under a steady SDK load, kill -9 each component in turn (Kafka, Connect, the streaming
# job, Pinot, MinIO, an ingest worker, Trino, the Airflow scheduler mid hourly run), let supervisord restart it,
# then check the archive, Trino after a backfill and Pinot after reconcile against the acknowledged recount.
# About 25 min (not in CI: the suite already takes ~55 of CI's 90); prints the table and writes
# /tmp/drill_results.{md,json}. Needs the stack to itself.
drill: setup
	$(LAKEPULSE) up $(TEST_UP)
	$(BIN)/python -m pytest tests/drill -m drill -s $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check lakepulse tests dags spark_jobs streaming bench
	$(BIN)/mypy

# The figures of design.md section 7, one benchmark after another (needs `make run`; long: the batch rebuild of
# 10M events and the API's 24 h load dominate). Each script's docstring tells its options; BENCHMARKS.md
# records the results.
BENCHES := "ingest.py api" "ingest.py clients" "freshness.py" "archive.py" "batch.py" "api.py all" "sse.py"
bench: setup
	@for b in $(BENCHES); do echo "== bench/$$b"; $(BIN)/python bench/$$b || exit 1; done

status:
	$(LAKEPULSE) status

down:
	@if [ -x $(LAKEPULSE) ]; then $(LAKEPULSE) down; fi
