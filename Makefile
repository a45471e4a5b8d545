# Two commands do all the set-up on a machine with only Python 3.11, pip and node/npm:
#   make run   - install what is missing, migrate, start the engine (embedded mode)
#   make test  - install what is missing, lint and type-check, run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format lock clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

install: $(STAMP)

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
