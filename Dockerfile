# syntax=docker/dockerfile:1
# One image for every process (DESIGN section 15): `serve` by default, `workers` or `migrate` when
# given as the command, as the seed's two Dockerfiles do:
#   docker run IMAGE                  -> workflow-engine serve     (API, Socket.io, UI on :3000)
#   docker run IMAGE workers          -> workflow-engine workers   (distributed mode: REDIS_URL)
#   docker run IMAGE migrate          -> workflow-engine migrate
# Build: `make image` (podman, here with a local Debian base); with Docker:
#   make install && docker build -t workflow-engine .   (make install does the npm part)
# The UI's browser JavaScript (socket.io-client, uPlot) is fetched from npm at set-up into the gitignored
# src/workflow_engine/web/static/vendor/ and copied in from the build context: nothing
# third-party is committed, and the build fails with a message when it was not fetched.

ARG BASE_IMAGE=python:3.11-slim

# --- build: a virtual environment with the pinned run-time dependencies and the package -------
FROM ${BASE_IMAGE} AS build

# pip's index (a mirror or a proxy of PyPI). A CA bundle for it, when it needs one, is passed as
# the build secret `pip_cert` (never stored in a layer): --secret id=pip_cert,src=/path/ca.pem
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PIP_INDEX_URL=${PIP_INDEX_URL} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python3 -m venv /opt/workflow-engine
WORKDIR /src

# Dependencies first (their layer is reused until the pins change). URL-free pins, no dev tools.
COPY requirements-runtime.txt ./
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    /opt/workflow-engine/bin/pip install --no-deps --only-binary=:all: -r requirements-runtime.txt

COPY pyproject.toml README.md ./
COPY src ./src
RUN --mount=type=secret,id=pip_cert \
    for file in socket.io.min.js uPlot.iife.min.js uPlot.min.css; do \
      if [ ! -s src/workflow_engine/web/static/vendor/$file ]; then \
        echo "$file is missing from src/workflow_engine/web/static/vendor/:" \
             "run 'make install' before building the image" >&2; \
        exit 1; \
      fi; \
    done; \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    /opt/workflow-engine/bin/pip install --no-deps ./ \
    && /opt/workflow-engine/bin/python -c "import workflow_engine.web.render as r; \
assert all((r.STATIC_DIR / 'vendor' / f).is_file() for f in ('socket.io.min.js', 'uPlot.iife.min.js', 'uPlot.min.css')), 'UI files missing from the package'"

# --- run time: the base, the environment, a user without privileges --------------------------
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="workflow-engine" \
      org.opencontainers.image.description="Workflow execution engine: serve (API, Socket.io, UI) or workers"

# A fixed numeric id, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
# DATA_DIR (the embedded mode's SQLite file, a generated API token) is the user's: mount a volume
# there to keep them. With DATABASE_URL and API_TOKEN set, nothing writes to the file system.
RUN groupadd --gid 10001 engine \
    && useradd --no-log-init --uid 10001 --gid engine --home-dir /var/lib/workflow-engine \
       --create-home --shell /usr/sbin/nologin engine \
    && install -d -o engine -g engine -m 0750 /var/lib/workflow-engine/data

COPY --from=build /opt/workflow-engine /opt/workflow-engine

# HOST=0.0.0.0: a container is reached through its own network interface, not its loopback.
# The engine still refuses AUTH_DISABLED=true on any non-loopback bind: set API_TOKEN (or let
# `serve` generate one into DATA_DIR/api-token and print it).
ENV PATH=/opt/workflow-engine/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    METRICS_PORT=9464 \
    DATA_DIR=/var/lib/workflow-engine/data

WORKDIR /var/lib/workflow-engine
USER 10001:10001
# 3000: serve (API, Socket.io, UI). 9464: the workers' Prometheus metrics endpoint (GET /metrics).
EXPOSE 3000 9464
ENTRYPOINT ["workflow-engine"]
CMD ["serve"]
