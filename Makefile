# lakepulse — the two commands a newcomer needs: `make run` (the product) and `make test` (the suite).
SHELL := /bin/bash
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
LAKEPULSE := $(BIN)/lakepulse
PYTEST_ARGS ?=

.PHONY: setup provision run up test test-unit test-integration lint bench down status clean-state

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

# The suite CI runs: brings the stack up (idempotent), then unit, DAG and integration tests. The speed
# layer's always-on job is left out: streaming tests run their own job on private topics, and on 2 cores
# its seven queries would slow every other test.
TEST_SKIP := --skip streaming --skip alerts

test: setup
	$(LAKEPULSE) up $(TEST_SKIP)
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit tests/dags $(PYTEST_ARGS)

test-integration: setup
	$(LAKEPULSE) up $(TEST_SKIP)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check lakepulse tests dags spark_jobs streaming bench
	$(BIN)/mypy

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

status:
	$(LAKEPULSE) status

down:
	@if [ -x $(LAKEPULSE) ]; then $(LAKEPULSE) down; fi
