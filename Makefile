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
UPLOT_JS := $(VENDOR)/uPlot.iife.min.js
VENDOR_FILES := $(SOCKETIO_JS) $(SOCKETIO_JS).map $(UPLOT_JS) $(VENDOR)/uPlot.min.css
# Written last by the rule below: its being newer than the npm files means every file is there.
VENDOR_STAMP := $(VENDOR)/.fetched

.PHONY: install run test lint format lock clean image test-image

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

# Browser JavaScript comes from npm at set-up into a gitignored folder: nothing third-party is
# committed. package-lock.json pins it without recording any download URL (.npmrc):
# socket.io-client (live events) and uPlot (the charts). A file missing from the folder (or a
# changed package.json) fetches them all again; otherwise nothing runs.
$(VENDOR_STAMP): package.json package-lock.json $(if $(filter-out $(wildcard $(VENDOR_FILES)),$(VENDOR_FILES)),FORCE)
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp node_modules/socket.io-client/dist/socket.io.min.js node_modules/socket.io-client/dist/socket.io.min.js.map $(VENDOR)/
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css $(VENDOR)/
	@touch $@

.PHONY: FORCE
FORCE:

install: $(STAMP) $(VENDOR_STAMP)

run: install
	$(BIN)/workflow-engine migrate
	$(BIN)/workflow-engine serve --apply examples

# The suite runs in PYTEST_WORKERS processes (pytest-xdist; 0: in this one). Tests are isolated
# from each other: a database, a Redis server and queue names of their own.
PYTEST_WORKERS ?= 2

test: install lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

# The container image (Dockerfile), built with podman (--isolation=chroot: no container engine
# needed). Where python:3.11-slim cannot be pulled, a local Debian base is made with debootstrap
# once and reused. IMAGE=name:tag to name it, BASE_IMAGE=... to choose the base.
IMAGE ?= localhost/workflow-engine:latest
image: install
	deploy/image/build.sh $(IMAGE)

# Builds the image, then runs its own files (podman image mount + chroot, as the image's user):
# migrate, serve and two workers on PostgreSQL (127.0.0.1:5432) and a private Redis complete
# executions triggered over HTTP (tests/image). Needs root.
test-image: install
	@BUILD_LOG=$${BUILD_LOG:-test-artifacts/image-build.log}; mkdir -p test-artifacts; \
	BUILD_LOG=$$BUILD_LOG deploy/image/build.sh $(IMAGE) || { echo "[test-image] FAIL: the image did not build (see $$BUILD_LOG)"; exit 1; }
	@WORKFLOW_ENGINE_TEST_IMAGE=$(IMAGE) $(BIN)/pytest tests/image -m image -p no:cacheprovider $(PYTEST_ARGS) \
	  && echo "[test-image] PASS: $(IMAGE) runs serve and workers from its own files" \
	  || { echo "[test-image] FAIL (pytest output above)"; exit 1; }

# Re-pin dependencies after editing pyproject.toml (the pin files record no download URLs):
# requirements.txt (with the dev tools) for development and CI, and requirements-runtime.txt (the
# same versions, run-time dependencies only) for the container image.
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements.txt --python-version 3.11 --quiet
	$(BIN)/uv pip compile pyproject.toml -c requirements.txt -o requirements-runtime.txt \
	  --python-version 3.11 --quiet --no-annotate

# Benchmark (about 15 min, capped at 20): our engine next to bullmq, Celery and DBOS -> bench/RESULTS.md.
# The peers go into bench/.venv-peers. BENCH_ARGS=--quick for a smoke run, --only NAME for one.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts node_modules $(VENDOR)
