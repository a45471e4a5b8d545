"""LOG_FORMAT=json in the distributed mode: `serve` and a `workers` process print nothing but
JSON lines, their log records (a Redis warning) included, from start to a graceful stop."""

from __future__ import annotations

import pytest
import redis

from tests.distributed.conftest import MakeCluster
from tests.e2e.test_json_logs import EXAMPLES, json_lines
from tests.support.process import run_cli, wait_execution
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(120)]


def test_serve_and_workers_print_only_json_lines(
    make_cluster: MakeCluster, fresh_pg: str, redis_server: RedisServer
) -> None:
    # A policy that may drop queued jobs: both processes log a warning about it at start.
    with redis.Redis.from_url(redis_server.url) as client:
        client.config_set("maxmemory-policy", "allkeys-lru")
    cluster = make_cluster(fresh_pg, redis_server.url, LOG_FORMAT="json")
    serve = cluster.start(workers=1)
    [workers] = cluster.workers
    applied = run_cli(
        ["apply", EXAMPLES, "--url", serve.url, "--token", "cluster-token"],
        cluster.workdir,
        {"DATA_DIR": str(cluster.workdir / "cli-data")},
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    with serve.client() as client:
        response = client.post(
            "/api/workflows/hello-world/execute", json={"input": {"name": "Ada"}}
        )
        assert response.status_code == 202, response.text
        body = wait_execution(client, response.json()["executionId"], timeout=20)
        assert body["output"]["greeting"] == "Hello Ada!"
    assert workers.terminate() == 0
    assert serve.terminate() == 0

    for process in (serve, workers):
        _stdout, stderr = json_lines(process)
        warnings = [e for e in stderr if e["level"] == "WARNING"]
        assert any("maxmemory-policy" in e["message"] for e in warnings), stderr
    stdout, _ = json_lines(workers)
    messages = [entry["message"] for entry in stdout]
    for line in (
        "[Workflow Engine] Starting workers...",
        "[Dispatcher] Worker started",
        "[Executor] Worker started with concurrency 5",
        "[Workflow Engine] Registering schedule triggers...",
        "[Workflow Engine] All systems ready",
        "[Workflow Engine] Stopped",
    ):
        assert line in messages, messages
