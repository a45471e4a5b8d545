"""kill -9 of `workflow-engine serve` while a fan-out or a map runs; a new `serve` finishes the
work without running a completed branch or item again."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import StartServe
from tests.support.graphs import fan_out, wait_for
from tests.support.process import wait_execution
from tests.support.target import Target

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def steps_of(client: httpx.Client, execution_id: str) -> dict[str, dict[str, Any]]:
    body = client.get(f"/api/executions/{execution_id}").json()
    return {step["stepKey"]: step for step in body["steps"]}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_during_a_fan_out(
    backend: str,
    start_serve: StartServe,
    target: Target,
    request: pytest.FixtureRequest,
) -> None:
    env: dict[str, str | None] = {}
    if backend == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("private_pg_url")
    name = f"fan-{uuid.uuid4().hex[:8]}"
    first = start_serve(env)
    with first.client() as client:
        document = fan_out(target, name, fast=4, slow=3, slow_ms=4000)
        assert client.post("/api/workflows", json=document).status_code == 201
        response = client.post(f"/api/workflows/{name}/execute", json={"input": {}})
        execution_id = response.json()["executionId"]

        def fast_done_slow_running() -> bool:
            steps = steps_of(client, execution_id)
            fast = all(steps.get(f"fast{i}", {}).get("status") == "completed" for i in range(4))
            slow = all(steps.get(f"slow{i}", {}).get("status") == "running" for i in range(3))
            return fast and slow and all(target.hits(f"slowcount/{name}-s{i}") for i in range(3))

        wait_for(fast_done_slow_running, "the fast branches to finish, the slow ones to run")
    first.kill()  # kill -9 while the slow branches' requests are in flight

    second = start_serve(env)
    with second.client() as client:
        body = wait_execution(client, execution_id, timeout=60)
    assert body["status"] == "completed", body
    # No completed branch ran again.
    for i in range(4):
        assert [h.idempotency_key for h in target.hits(f"count/{name}-f{i}")] == [
            f"{execution_id}:fast{i}"
        ]
    # Each interrupted branch was tried again with the same key.
    for i in range(3):
        keys = [h.idempotency_key for h in target.hits(f"slowcount/{name}-s{i}")]
        assert len(keys) >= 2 and set(keys) == {f"{execution_id}:slow{i}"}
    # The join ran once, after the restart.
    assert len(target.hits(f"count/{name}-join")) == 1
    assert any("resumed after an interruption" in entry["message"] for entry in body["logs"])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_in_the_middle_of_a_map(
    backend: str,
    start_serve: StartServe,
    target: Target,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    env: dict[str, str | None] = {}
    if backend == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("private_pg_url")
    name = f"map-{uuid.uuid4().hex[:8]}"
    count = 1000
    document = {
        "name": name,
        "steps": [
            {
                "key": "fetch",
                "type": "map",
                "config": {
                    "items": "{{ input.items }}",
                    "parallelism": 20,
                    "step": {
                        "type": "http",
                        "config": {"url": f"{target.url}/slowcount/{name}-{{{{ item }}}}?ms=40"},
                    },
                },
            }
        ],
    }
    first = start_serve(env)
    with first.client() as client:
        assert client.post("/api/workflows", json=document).status_code == 201
        response = client.post(
            f"/api/workflows/{name}/execute", json={"input": {"items": list(range(count))}}
        )
        execution_id = response.json()["executionId"]

        def some_items_done() -> set[int]:
            steps = steps_of(client, execution_id)
            done = {
                s["stepKey"]
                for s in steps.values()
                if s["status"] == "completed" and "[" in s["stepKey"]
            }
            return {int(key[len("fetch[") : -1]) for key in done} if len(done) >= 150 else set()

        done_before = wait_for(some_items_done, "150 items to complete", timeout=60)
    first.kill()

    second = start_serve(env)
    with second.client() as client:
        body = wait_execution(client, execution_id, timeout=120)
    assert body["status"] == "completed", body["error"]
    assert len(done_before) < count  # the kill came in the middle
    assert [out["body"]["name"] for out in body["output"]] == [f"{name}-{i}" for i in range(count)]
    for i in range(count):
        hits = target.hits(f"slowcount/{name}-{i}")
        assert hits, f"item {i} never ran"
        assert {h.idempotency_key for h in hits} == {f"{execution_id}:fetch[{i}]"}
        if i in done_before:
            assert len(hits) == 1, f"item {i} completed before the kill and ran again"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_while_a_child_execution_runs(
    backend: str,
    start_serve: StartServe,
    target: Target,
    request: pytest.FixtureRequest,
) -> None:
    env: dict[str, str | None] = {}
    if backend == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("private_pg_url")
    name = f"kid-{uuid.uuid4().hex[:8]}"
    child = {
        "name": f"{name}-child",
        "steps": [
            {
                "key": "slow",
                "type": "http",
                "config": {"url": f"{target.url}/slowcount/{name}?ms=3000"},
            },
            {
                "key": "out",
                "type": "transform",
                "config": {"output": "{{ steps.slow.output.body.name }}"},
            },
        ],
    }
    parent = {
        "name": name,
        "steps": [
            {"key": "sub", "type": "workflow", "config": {"workflow": f"{name}-child"}},
            {"key": "done", "type": "transform", "config": {"output": "{{ steps.sub.output }}!"}},
        ],
    }
    first = start_serve(env)
    with first.client() as client:
        assert client.post("/api/workflows", json=child).status_code == 201
        assert client.post("/api/workflows", json=parent).status_code == 201
        execution_id = client.post(f"/api/workflows/{name}/execute", json={}).json()["executionId"]
        wait_for(lambda: target.hits(f"slowcount/{name}"), "the child's slow step to run")
    first.kill()

    second = start_serve(env)
    with second.client() as client:
        body = wait_execution(client, execution_id, timeout=60)
        assert body["status"] == "completed", body
        assert body["output"] == f"{name}!"
        # One child for the one try of the step, however often the parent was delivered.
        assert len(body["children"]) == 1
        child_body = wait_execution(client, body["children"][0]["id"], timeout=10)
    assert child_body["status"] == "completed"
    assert child_body["parentExecutionId"] == execution_id
    keys = {h.idempotency_key for h in target.hits(f"slowcount/{name}")}
    assert keys == {f"{child_body['id']}:slow"}
