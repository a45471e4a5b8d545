"""Error tracking and tracing in the distributed mode: `serve` and a `workers` process on
PostgreSQL and Redis, both with SENTRY_DSN and OTEL_EXPORTER_OTLP_ENDPOINT pointing at the
test's loopback Sentry server and OTLP collector. The executions run in the workers process, so
that is where their traces and failure events come from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from tests.distributed.conftest import MakeCluster
from tests.support.databases import run_sync
from tests.support.servers import RedisServer
from tests.support.target import Target
from tests.support.telemetry import Receiver, run_receiver
from tests.support.telemetry_flows import (
    FAILING,
    INPUT_VALUE,
    assert_failed_execution_event,
    assert_nothing_secret_sent,
    assert_one_trace_of_three_steps,
    run,
    telemetry_env,
    three_steps,
)
from workflow_engine.storage.db import Database

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(120)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver() as running:
        yield running


def write_sql(url: str, sql: str, **params: Any) -> None:
    """One statement against the system of record, as an operator with psql would."""

    async def go() -> None:
        db = Database(url)
        try:
            async with db.write() as conn:
                await conn.execute(text(sql), params)
        finally:
            await db.dispose()

    run_sync(go())


def test_workers_send_traces_failed_executions_and_their_unhandled_errors(
    make_cluster: MakeCluster,
    fresh_pg: str,
    redis_server: RedisServer,
    target: Target,
    receiver: Receiver,
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url, **telemetry_env(receiver))
    serve = cluster.start(workers=1)

    traced = run(serve, three_steps(target), {"name": INPUT_VALUE})
    assert traced["status"] == "completed", traced
    assert_one_trace_of_three_steps(receiver, target, traced["id"], "workers")

    failed = run(serve, FAILING, {"card": INPUT_VALUE})
    assert failed["status"] == "failed", failed
    assert_failed_execution_event(receiver, failed["id"], "workers")

    # An unhandled error in the workers: a workflow version edited by hand in the database
    # into a document the engine cannot read. Its execution's job fails in the workers process
    # with the validation error, which is reported with its traceback.
    with serve.client() as client:
        response = client.post(
            "/api/workflows",
            json={"name": "damaged", "steps": [{"key": "a", "type": "log", "config": {}}]},
        )
        assert response.status_code == 201, response.text
        write_sql(
            fresh_pg,
            "UPDATE workflow_versions SET definition = CAST(:doc AS JSONB) WHERE workflow_id = :id",
            doc='{"name": "damaged", "steps": "not a list"}',
            id=response.json()["id"],
        )
        response = client.post("/api/workflows/damaged/execute", json={"input": {}})
        assert response.status_code == 202, response.text
    crashes = receiver.wait_for(
        lambda: [
            e
            for e in receiver.events()
            if e.get("tags", {}).get("process") == "workers" and e.get("exception")
        ],
        "the Sentry event of the workers' unhandled error",
    )
    crash = crashes[0]
    assert crash["level"] == "error"
    assert "ValidationError" in {value["type"] for value in crash["exception"]["values"]}
    assert "execution job" in crash["logentry"]["formatted"]
    frames = crash["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames and not any("vars" in frame for frame in frames)

    cluster.stop()
    assert_nothing_secret_sent(receiver, "cluster-token")
