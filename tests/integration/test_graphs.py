"""Workflows as graphs (DESIGN.md section 14): parallel branches, joins, skip propagation,
if/else, the `output` template, failing branches, `map`, sub-workflows and bad graphs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Running, StartEngine
from tests.support.flows import parse_time, start
from tests.support.target import Target
from workflow_engine.storage.executions import list_events

pytestmark = pytest.mark.timeout(90)


def by_key(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["stepKey"]: step for step in body["steps"]}


async def run(
    running: Running, document: dict[str, Any], input: Any = None, timeout: float = 60
) -> dict[str, Any]:
    await running.create_workflow(document)
    execution_id = await running.execute(document["name"], input or {})
    return await running.wait(execution_id, timeout=timeout)


async def test_fan_out_runs_branches_at_once_and_joins_once(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    branches = [
        {"key": f"b{i}", "type": "delay", "needs": [], "config": {"ms": 1000}} for i in range(10)
    ]
    join = {
        "key": "join",
        "type": "transform",
        "needs": [b["key"] for b in branches],
        "config": {"output": {"n": "{{ steps | length }}"}},
    }
    body = await run(running, {"name": "fan", "steps": [*branches, join]})

    assert body["status"] == "completed", body["error"]
    steps = by_key(body)
    first_done = min(parse_time(steps[f"b{i}"]["completedAt"]) for i in range(10))
    for i in range(10):
        assert parse_time(steps[f"b{i}"]["startedAt"]) < first_done
    last_done = max(parse_time(steps[f"b{i}"]["completedAt"]) for i in range(10))
    assert parse_time(steps["join"]["startedAt"]) >= last_done
    assert [s["stepKey"] for s in body["steps"]].count("join") == 1
    join_starts = [
        entry for entry in body["logs"] if entry["message"].startswith("Step 'join' started")
    ]
    assert len(join_starts) == 1
    # The output is the last step's (in list order) that completed: the join's.
    assert body["output"] == {"n": 10}


async def test_branches_started_together_share_their_start_live_and_stored(
    db_url: str, start_engine: StartEngine
) -> None:
    """The engine starts the ready branches at one instant: their rows say so, and each
    `step_started` event (what a live page draws a bar from) carries that same time, so the
    live view and a reload agree."""
    running = await start(start_engine, db_url)
    branches = [f"b{n}" for n in range(4)]
    body = await run(
        running,
        {
            "name": "together",
            "steps": [
                *({"key": k, "type": "delay", "needs": [], "config": {"ms": 50}} for k in branches),
                {"key": "join", "type": "transform", "needs": branches, "config": {"output": 1}},
            ],
        },
    )
    assert body["status"] == "completed", body
    steps = by_key(body)
    starts = {parse_time(steps[k]["startedAt"]) for k in branches}
    assert len(starts) == 1, starts
    async with running.engine.db.read() as conn:
        history = await list_events(conn, body["id"])
    stamped = {
        row["data"]["stepKey"]: row["timestamp"] for row in history if row["type"] == "step_started"
    }
    assert {stamped[k] for k in branches} == starts
    assert stamped["join"] == parse_time(steps["join"]["startedAt"])


async def test_parallelism_bounds_running_steps(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    steps = [
        {"key": f"s{i}", "type": "delay", "needs": [], "config": {"ms": 300}} for i in range(6)
    ]
    body = await run(running, {"name": "bounded", "parallelism": 2, "steps": steps})

    assert body["status"] == "completed"
    spans = [(parse_time(s["startedAt"]), parse_time(s["completedAt"])) for s in body["steps"]]
    for start_at, _ in spans:
        overlapping = sum(1 for a, b in spans if a <= start_at < b)
        assert overlapping <= 2


async def test_if_else_with_a_join(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    document = {
        "name": "branch",
        "steps": [
            {"key": "check", "type": "transform", "config": {"output": "{{ input.big }}"}},
            {
                "key": "yes",
                "type": "transform",
                "needs": ["check"],
                "if": "{{ steps.check.output }}",
                "config": {"output": "big"},
            },
            {
                "key": "no",
                "type": "transform",
                "needs": ["check"],
                "if": "{{ not steps.check.output }}",
                "config": {"output": "small"},
            },
            {
                "key": "join",
                "type": "transform",
                "needs": ["yes", "no"],
                "config": {"output": "{{ steps.yes.output or steps.no.output }}"},
            },
        ],
    }
    await running.create_workflow(document)
    big = await running.wait(await running.execute("branch", {"big": True}))
    small = await running.wait(await running.execute("branch", {"big": False}))

    assert big["status"] == small["status"] == "completed"
    assert {k: s["status"] for k, s in by_key(big).items()} == {
        "check": "completed",
        "yes": "completed",
        "no": "skipped",
        "join": "completed",
    }
    assert big["output"] == "big"
    assert by_key(small)["yes"]["status"] == "skipped"
    assert small["output"] == "small"


async def test_skips_propagate_through_explicit_needs_only(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    body = await run(
        running,
        {
            "name": "skips",
            "steps": [
                {"key": "a", "type": "transform", "if": False, "config": {"output": 1}},
                {"key": "b", "type": "transform", "needs": ["a"], "config": {"output": 2}},
                {"key": "c", "type": "transform", "config": {"output": 3}},
            ],
        },
    )
    assert body["status"] == "completed"
    assert {k: s["status"] for k, s in by_key(body).items()} == {
        "a": "skipped",
        "b": "skipped",  # its only need was skipped
        "c": "completed",  # no `needs`: runs after the previous step whatever its status
    }
    assert body["output"] == 3


async def test_output_template(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    body = await run(
        running,
        {
            "name": "shaped",
            "output": {"sum": "{{ steps.a.output + steps.b.output }}", "who": "{{ input.who }}"},
            "steps": [
                {"key": "a", "type": "transform", "needs": [], "config": {"output": 2}},
                {"key": "b", "type": "transform", "needs": [], "config": {"output": 40}},
            ],
        },
        {"who": "me"},
    )
    assert body["status"] == "completed"
    assert body["output"] == {"sum": 42, "who": "me"}


async def test_a_failing_branch_stops_its_siblings(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    body = await run(
        running,
        {
            "name": "breaks",
            "retryMaxAttempts": 1,
            "steps": [
                {"key": "slow", "type": "delay", "needs": [], "config": {"ms": 20_000}},
                {"key": "bad", "type": "fail", "needs": [], "config": {"message": "boom"}},
                {"key": "after", "type": "transform", "needs": ["slow", "bad"], "config": {}},
            ],
        },
    )
    assert body["status"] == "failed"
    assert body["error"] == "Step 'bad' failed: boom"
    steps = by_key(body)
    assert steps["bad"]["status"] == "failed"
    assert steps["slow"]["status"] == "failed"
    assert steps["slow"]["error"] == "Cancelled: step 'bad' failed"
    assert "after" not in steps
    assert body["durationMs"] < 10_000


async def test_map_outputs_in_item_order(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    body = await run(
        running,
        {
            "name": "mapper",
            "steps": [
                {
                    "key": "double",
                    "type": "map",
                    "config": {
                        "items": "{{ input.numbers }}",
                        "parallelism": 3,
                        "step": {
                            "type": "transform",
                            "config": {"output": {"i": "{{ index }}", "v": "{{ item * 2 }}"}},
                        },
                    },
                }
            ],
        },
        {"numbers": [5, 4, 3, 2, 1, 0, 7]},
    )
    assert body["status"] == "completed", body["error"]
    assert body["output"] == [{"i": i, "v": v * 2} for i, v in enumerate([5, 4, 3, 2, 1, 0, 7])]
    keys = [s["stepKey"] for s in body["steps"]]
    assert keys == ["double"] + [f"double[{i}]" for i in range(7)]
    assert all(s["status"] == "completed" for s in body["steps"])


@pytest.mark.timeout(300)  # a thousand requests take long on a loaded machine (parallel CI)
async def test_map_of_a_thousand_items_over_http_hits_each_item_once(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    items = list(range(1000))
    body = await run(
        running,
        {
            "name": "fetch-all",
            "steps": [
                {
                    "key": "fetch",
                    "type": "map",
                    "config": {
                        "items": "{{ input.items }}",
                        "parallelism": 20,
                        "step": {
                            "type": "http",
                            "config": {"url": f"{target.url}/count/item-{{{{ item }}}}"},
                        },
                    },
                }
            ],
        },
        {"items": items},
        timeout=240,
    )
    assert body["status"] == "completed", body["error"]
    assert [out["body"]["name"] for out in body["output"]] == [f"item-{i}" for i in items]
    for i in items:
        hits = target.hits(f"count/item-{i}")
        assert len(hits) == 1
        assert hits[0].idempotency_key == f"{body['id']}:fetch[{i}]"


async def test_a_failing_item_fails_the_map(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    body = await run(
        running,
        {
            "name": "map-fails",
            "retryMaxAttempts": 1,
            "steps": [
                {
                    "key": "each",
                    "type": "map",
                    "config": {
                        "items": [1, 2, 3],
                        "parallelism": 1,
                        "step": {
                            "type": "transform",
                            "config": {"output": "{{ 10 // (item - 2) }}"},
                        },
                    },
                },
                {"key": "never", "type": "transform", "config": {}},
            ],
        },
    )
    assert body["status"] == "failed"
    steps = by_key(body)
    assert steps["each[0]"]["status"] == "completed"
    assert steps["each[1]"]["status"] == "failed"
    assert "each[2]" not in steps
    assert steps["each"]["status"] == "failed"
    assert steps["each"]["error"].startswith("item 1 failed:")
    assert "never" not in steps


async def test_sub_workflow_output_and_links(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {
            "name": "child",
            "steps": [
                {"key": "shout", "type": "transform", "config": {"output": "{{ input.x | upper }}"}}
            ],
        }
    )
    body = await run(
        running,
        {
            "name": "parent",
            "steps": [
                {
                    "key": "sub",
                    "type": "workflow",
                    "config": {"workflow": "child", "input": {"x": "{{ input.word }}"}},
                },
                {
                    "key": "after",
                    "type": "transform",
                    "config": {"output": "{{ steps.sub.output }}!"},
                },
            ],
        },
        {"word": "hi"},
    )
    assert body["status"] == "completed", body["error"]
    assert by_key(body)["sub"]["output"] == "HI"
    assert body["output"] == "HI!"
    [child] = body["children"]
    assert child["parentExecutionId"] == body["id"]
    assert child["parentStepKey"] == "sub"
    assert child["status"] == "completed"
    detail = (await running.client.get(f"/api/executions/{child['id']}")).json()
    assert detail["parentExecutionId"] == body["id"]
    assert detail["output"] == "HI"
    listed = (await running.client.get("/api/executions")).json()["executions"]
    assert child["id"] in {e["id"] for e in listed}


async def test_a_failed_child_fails_its_step(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {
            "name": "bad-child",
            "retryMaxAttempts": 1,
            "steps": [{"key": "f", "type": "fail", "config": {"message": "nope"}}],
        }
    )
    body = await run(
        running,
        {
            "name": "parent2",
            "steps": [{"key": "sub", "type": "workflow", "config": {"workflow": "bad-child"}}],
        },
    )
    assert body["status"] == "failed"
    assert "nope" in body["error"]
    assert [c["status"] for c in body["children"]] == ["failed"]


@pytest.mark.parametrize(
    ("durable_delay_min_ms", "child_status"),
    # The child's delay sleeps in its worker (running), or, durable, parks it (waiting).
    [(60_000, "running"), (1_000, "waiting")],
)
async def test_cancelling_a_parent_cancels_its_child(
    db_url: str, start_engine: StartEngine, durable_delay_min_ms: int, child_status: str
) -> None:
    running = await start(start_engine, db_url, durable_delay_min_ms=durable_delay_min_ms)
    await running.create_workflow(
        {"name": "sleepy", "steps": [{"key": "z", "type": "delay", "config": {"ms": 30_000}}]}
    )
    await running.create_workflow(
        {
            "name": "boss",
            "steps": [{"key": "sub", "type": "workflow", "config": {"workflow": "sleepy"}}],
        }
    )
    parent_id = await running.execute("boss")
    with_child = await running.wait(
        parent_id,
        until=lambda e: bool(e["children"]) and e["children"][0]["status"] == child_status,
    )
    child_id = with_child["children"][0]["id"]
    response = await running.client.post(f"/api/executions/{parent_id}/cancel")
    assert response.status_code == 202
    parent = await running.wait(parent_id, timeout=10)
    child = await running.wait(child_id, timeout=10)
    assert parent["status"] == "cancelled"
    assert child["status"] == "cancelled"
    assert [s["status"] for s in child["steps"]] == ["failed"]


async def test_rerun_of_a_graph_carries_completed_steps(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url)
    body = await run(
        running,
        {
            "name": "rerun-graph",
            "retryMaxAttempts": 1,
            "steps": [
                {
                    "key": "a",
                    "type": "http",
                    "needs": [],
                    "config": {"url": f"{target.url}/count/ra"},
                },
                {
                    # after a: a failing sibling would stop a still in flight, and a stopped
                    # step is not completed, so it would run again
                    "key": "b",
                    "type": "http",
                    "needs": ["a"],
                    "config": {"url": f"{target.url}/flaky/rb?fail=1"},
                },
                {
                    "key": "c",
                    "type": "transform",
                    "needs": ["a", "b"],
                    "config": {"output": "done"},
                },
            ],
        },
    )
    assert body["status"] == "failed"
    response = await running.client.post(f"/api/executions/{body['id']}/rerun")
    assert response.status_code == 202
    again = await running.wait(response.json()["executionId"])
    assert again["status"] == "completed", again["error"]
    assert len(target.hits("count/ra")) == 1  # carried over, not run again
    assert len(target.hits("flaky/rb")) == 2
    assert again["output"] == "done"


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [
                {"key": "a", "type": "log", "needs": ["b"]},
                {"key": "b", "type": "log", "needs": ["a"]},
            ],
            "step 'a' is part of a cycle",
        ),
        ([{"key": "a", "type": "log", "needs": ["zzz"]}], "step 'a' needs 'zzz', which is not"),
        ([{"key": "a", "type": "log", "needs": ["a"]}], "step 'a' needs itself"),
    ],
)
async def test_bad_needs_are_refused(
    db_url: str, start_engine: StartEngine, steps: list[dict[str, Any]], message: str
) -> None:
    running = await start(start_engine, db_url)
    response = await running.client.post("/api/workflows", json={"name": "bad", "steps": steps})
    assert response.status_code == 422
    assert message in response.text
    listed = (await running.client.get("/api/workflows")).json()
    assert listed["workflows"] == []
