# lakepulse — the two commands a newcomer needs: `make run` (the product) and `make test` (the suite).
SHELL := /bin/bash
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
LAKEPULSE := $(BIN)/lakepulse
PYTEST_ARGS ?=

.PHONY: setup provision run up test test-purge test-unit test-integration lint bench down status clean-state

# Python environment from the lock file (uv is fetched from PyPI if the machine lacks it).
setup:
	@command -v uv >/dev/null || python3 -m pip install -q "uv==$(UV_VERSION)"
	uv sync --frozen

provision: setup
	$(LAKEPULSE) provision

# Run the product: provision everything (first time only), start every service, bootstrap, show status.
run: setup
	$(LAKEPULSE) up

up: run

# The suite CI runs: brings the whole stack up (idempotent) without demo traffic (stopped if `make run`
# started it, so no test counts its events), then unit, DAG, integration and end-to-end tests. The tests
# that delete the stack's state (`-m destructive`) run only when asked: `make test-purge`.
TEST_UP := --no-demo

test: setup
	$(LAKEPULSE) up $(TEST_UP)
	$(BIN)/python -m pytest tests -m "not destructive" $(PYTEST_ARGS)

# Deletes every piece of the stack's state (`lakepulse down --purge`), starts it again and checks each store
# is empty: CI runs it last.
test-purge: setup
	$(BIN)/python -m pytest tests -m destructive $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit tests/dags $(PYTEST_ARGS)

test-integration: setup
	$(LAKEPULSE) up $(TEST_UP)
	$(BIN)/python -m pytest tests/integration tests/e2e -m "not destructive" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check lakepulse tests dags spark_jobs streaming bench
	$(BIN)/mypy

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

status:
	$(LAKEPULSE) status

down:
	@if [ -x $(LAKEPULSE) ]; then $(LAKEPULSE) down; fi
