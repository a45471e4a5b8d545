"""A `workflow-engine workers` process serves its own metrics on METRICS_PORT: the queue depth
while work waits for it, and the executions it ran once they are done."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.distributed.conftest import MakeCluster
from tests.support.process import free_port, wait_execution
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(120)]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=5, trust_env=False)
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_workers_process_shows_its_queue_depth_and_its_executions(
    make_cluster: MakeCluster, fresh_pg: str, redis_server: RedisServer
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url)
    serve = cluster.start_serve()
    port = free_port()
    [workers] = cluster.start_workers(env={"METRICS_PORT": str(port)}, args=("--concurrency", "1"))
    assert f"Metrics on http://127.0.0.1:{port}/metrics" in workers.stdout()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    total = 4
    with serve.client() as client:
        response = client.post(
            "/api/workflows",
            json={
                "name": "slow-metrics",
                "steps": [{"key": "wait", "type": "delay", "config": {"ms": 700}}],
            },
        )
        assert response.status_code == 201, response.text
        ids = []
        for _ in range(total):
            response = client.post("/api/workflows/slow-metrics/execute", json={"input": {}})
            assert response.status_code == 202, response.text
            ids.append(response.json()["executionId"])

        # One runs at a time: the others wait in the execution queue, and the scrape says so.
        deadline = time.monotonic() + 20
        seen: list[tuple[float, float]] = []
        while time.monotonic() < deadline:
            samples = scrape(metrics_url)
            waiting = value(
                samples, "workflow_engine_queue_jobs", queue="workflow-execution", state="waiting"
            )
            active = value(
                samples, "workflow_engine_queue_jobs", queue="workflow-execution", state="active"
            )
            seen.append((waiting, active))
            if waiting >= 1 and active == 1:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"no queued work seen in the workers' metrics: {seen}")

        for execution_id in ids:
            assert wait_execution(client, execution_id, timeout=30)["status"] == "completed"

        # serve ran none of them (distributed mode) but sees the same queues, now empty.
        served = client.get("/metrics")
        assert served.status_code == 200
        on_serve = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(served.text)
            for s in f.samples
        }
    finished = "workflow_engine_executions_finished_total"
    assert value(on_serve, finished, workflow="slow-metrics", status="completed") == 0
    assert (
        value(on_serve, "workflow_engine_queue_jobs", queue="workflow-execution", state="waiting")
        == 0
    )
    after = scrape(metrics_url)
    assert value(after, finished, workflow="slow-metrics", status="completed") == total
    duration = "workflow_engine_execution_duration_seconds_count"
    assert value(after, duration, workflow="slow-metrics") == total
    step = "workflow_engine_step_attempt_duration_seconds_count"
    assert value(after, step, step_type="delay", outcome="completed") == total
    assert (
        value(after, "workflow_engine_queue_jobs", queue="workflow-execution", state="waiting") == 0
    )
