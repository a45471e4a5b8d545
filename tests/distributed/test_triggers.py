"""Event triggers and signed webhooks across processes (PostgreSQL + Redis/BullMQ): two `serve`
processes take the calls, `workers` processes run what they start."""

from __future__ import annotations

import hashlib
import hmac
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.distributed.conftest import MakeCluster
from tests.support.dbcheck import query
from tests.support.process import Serve, wait_execution
from tests.support.servers import RedisServer
from tests.support.target import Target

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(180)]
SECRET = "dist-hook-5e1d7b"


def create(client: httpx.Client, document: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/workflows", json=document)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def test_a_hook_waits_for_the_workers_output_and_events_start_triggered_workflows(
    fresh_pg: str,
    redis_server: RedisServer,
    make_cluster: MakeCluster,
    target: Target,
    tmp_path: Path,
) -> None:
    cluster = make_cluster(fresh_pg, redis_server.url, WORKFLOW_SECRET_HOOK=SECRET)
    serve = cluster.start(workers=2)
    second = Serve(tmp_path, cluster.env, name="serve2").wait_ready()
    try:
        with serve.client() as client, second.client() as other:
            create(
                client,
                {
                    "name": "lead",
                    "steps": [
                        {"key": "call", "type": "http", "config": {"url": f"{target.url}/echo"}},
                        {
                            "key": "done",
                            "type": "transform",
                            "config": {
                                "output": {
                                    "lead": "{{ input.lead }}",
                                    "echoed": "{{ steps.call.output.body.path }}",
                                }
                            },
                        },
                    ],
                    "triggers": [
                        {"type": "webhook", "path": "new-lead", "secret": "{{ secrets.HOOK }}"}
                    ],
                },
            )
            listener = create(
                client,
                {
                    "name": "on-lead",
                    "steps": [
                        {
                            "key": "seen",
                            "type": "http",
                            "config": {"url": f"{target.url}/count/lead-{{{{ input.n }}}}"},
                        }
                    ],
                    "triggers": [{"type": "event", "event": "lead.created"}],
                },
            )

            # The hook, on the second serve: answered with what a worker produced.
            body = json.dumps({"lead": 42}).encode()
            with httpx.Client(base_url=second.url, timeout=40, trust_env=False) as anonymous:
                refused = anonymous.post(
                    "/api/hooks/new-lead", content=body, headers={"Authorization": "Bearer x"}
                )
                assert refused.status_code == 401, refused.text
                response = anonymous.post(
                    "/api/hooks/new-lead?wait=30000", content=body, headers=signed(body)
                )
            assert response.status_code == 200, response.text
            ended = response.json()
            assert ended["status"] == "completed"
            assert ended["output"] == {"lead": 42, "echoed": "/echo"}
            assert len(target.hits("echo")) == 1

            # Events through both serve processes at once: one execution per event.
            def post(n: int) -> dict[str, Any]:
                via = client if n % 2 else other
                answer = via.post(
                    "/api/events", json={"name": "lead.created", "key": str(n), "data": {"n": n}}
                )
                assert answer.status_code == 202, answer.text
                result: dict[str, Any] = answer.json()
                return result

            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(post, range(12)))
            started = [s["executionId"] for a in answers for s in a["started"]]
            assert len(started) == 12 and len(set(started)) == 12
            bodies = [wait_execution(client, e, timeout=60) for e in started]
        assert [b["status"] for b in bodies] == ["completed"] * 12, bodies
        assert sorted(b["input"]["n"] for b in bodies) == list(range(12))
        for n in range(12):
            assert len(target.hits(f"count/lead-{n}")) == 1
        rows = query(
            fresh_pg,
            "SELECT count(*) AS n, count(DISTINCT idempotency_key) AS keys FROM executions "
            "WHERE workflow_id = :w",
            w=listener["id"],
        )
        assert rows == [{"n": 12, "keys": 12}]
    finally:
        second.stop()
