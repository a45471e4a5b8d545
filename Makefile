# Two commands do all the set-up on a machine with only Python 3.11, pip and node/npm:
#   make run   - install what is missing, migrate, start the engine (embedded mode)
#   make test  - install what is missing, lint and type-check, run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VENDOR := src/workflow_engine/web/static/vendor
SOCKETIO_JS := $(VENDOR)/socket.io.min.js

.PHONY: install run test lint format lock clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

# Browser JavaScript comes from npm at set-up into a gitignored folder: nothing third-party is
# committed. package-lock.json pins it without recording any download URL (.npmrc).
$(SOCKETIO_JS): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp node_modules/socket.io-client/dist/socket.io.min.js node_modules/socket.io-client/dist/socket.io.min.js.map $(VENDOR)/
	@touch $@

install: $(STAMP) $(SOCKETIO_JS)

run: install
	$(BIN)/workflow-engine migrate
	$(BIN)/workflow-engine serve --apply examples

test: install lint
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

# Re-pin dependencies after editing pyproject.toml (the pin file records no download URLs).
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements.txt --python-version 3.11 --quiet

# Benchmark (about 5 min, capped at 13): our engine next to bullmq, Celery and DBOS -> bench/RESULTS.md.
# The peers go into bench/.venv-peers. BENCH_ARGS=--quick for a smoke run, --only NAME for one.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts node_modules $(VENDOR)
