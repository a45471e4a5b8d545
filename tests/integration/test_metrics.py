"""`GET /metrics`: after N executions (some failing) the counters, histograms and queue gauges say
exactly what happened, and the page parses as Prometheus text."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Running, StartEngine
from tests.support.flows import start
from tests.support.target import Target

pytestmark = pytest.mark.timeout(60)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(running: Running) -> Samples:
    """Every sample of GET /metrics, keyed by (name, sorted labels); asked with a wrong token
    to show the page is open (as a Prometheus scraper would be, with none)."""
    response = await running.client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_metrics_count_executions_steps_and_http_responses(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    name = f"metrics-{uuid.uuid4().hex[:8]}"  # metrics are per process: a name of this test's own
    await running.create_workflow(
        {
            "name": name,
            "retryMaxAttempts": 1,
            "steps": [
                {
                    "key": "call",
                    "type": "http",
                    "config": {"url": f"{target.url}/status/{{{{ input.code }}}}"},
                },
                {"key": "shape", "type": "transform", "config": {"output": {"ok": True}}},
            ],
        }
    )
    before = await scrape(running)
    codes = [200, 200, 200, 404, 503]
    ids = [await running.execute(name, {"code": code}) for code in codes]
    bodies: list[dict[str, Any]] = [await running.wait(execution_id) for execution_id in ids]
    assert [b["status"] for b in bodies] == ["completed"] * 3 + ["failed"] * 2, bodies
    after = await scrape(running)

    finished = "workflow_engine_executions_finished_total"
    assert value(after, finished, workflow=name, status="completed") == 3
    assert value(after, finished, workflow=name, status="failed") == 2
    assert value(after, finished, workflow=name, status="cancelled") == 0
    duration = "workflow_engine_execution_duration_seconds"
    assert value(after, f"{duration}_count", workflow=name) == len(codes)
    assert value(after, f"{duration}_bucket", workflow=name, le="+Inf") == len(codes)
    assert value(after, f"{duration}_sum", workflow=name) > 0

    # Each execution tried its http step once; the three that got a 200 ran the transform too.
    step = "workflow_engine_step_attempt_duration_seconds_count"
    assert delta(before, after, step, step_type="http", outcome="completed") == 3
    assert delta(before, after, step, step_type="http", outcome="failed") == 2
    assert delta(before, after, step, step_type="transform", outcome="completed") == 3

    responses = "workflow_engine_http_step_responses_total"
    assert delta(before, after, responses, status_class="2xx") == 3
    assert delta(before, after, responses, status_class="4xx") == 1
    assert delta(before, after, responses, status_class="5xx") == 1
    assert delta(before, after, responses, status_class="error") == 0

    # The queues' depths are read at scrape time: both queues, every state, nothing left.
    for queue in ("workflow-dispatch", "workflow-execution"):
        for state in ("waiting", "active", "delayed"):
            assert (("workflow_engine_queue_jobs", (("queue", queue), ("state", state)))) in after
            assert value(after, "workflow_engine_queue_jobs", queue=queue, state=state) == 0
    assert not any("execution_id" in dict(labels) for _, labels in after)
    assert not any(execution_id in repr(after) for execution_id in ids)


async def test_an_unreachable_target_counts_as_an_error_and_a_timeout_as_such(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    await running.create_workflow(
        {
            "name": name,
            "retryMaxAttempts": 1,
            "steps": [
                {
                    "key": "call",
                    "type": "http",
                    "timeoutMs": 200,
                    "config": {"url": "{{ input.url }}"},
                }
            ],
        }
    )
    before = await scrape(running)
    slow = await running.execute(name, {"url": f"{target.url}/slow?ms=2000"})
    refused = await running.execute(name, {"url": "http://127.0.0.1:9/"})
    for execution_id in (slow, refused):
        assert (await running.wait(execution_id))["status"] == "failed"
    after = await scrape(running)

    step = "workflow_engine_step_attempt_duration_seconds_count"
    assert delta(before, after, step, step_type="http", outcome="timeout") == 1
    assert delta(before, after, step, step_type="http", outcome="failed") == 1
    responses = "workflow_engine_http_step_responses_total"
    assert delta(before, after, responses, status_class="error") == 2
    finished = "workflow_engine_executions_finished_total"
    assert value(after, finished, workflow=name, status="failed") == 2
