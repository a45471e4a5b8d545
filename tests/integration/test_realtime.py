"""Socket.io (DESIGN.md section 7) with a python-socketio client against a real uvicorn server:
event order, `timestamp` and `seq`, retries, unsubscribe, authentication, catch-up, rooms."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.support.realtime import LiveServer, Recorder, live_server, socket_client
from workflow_engine.api.session import COOKIE_NAME, make_session

pytestmark = pytest.mark.timeout(90)

THREE_STEPS = {
    "name": "three-steps",
    "steps": [
        {"key": "greet", "type": "transform", "config": {"output": {"m": "Hi {{ input.name }}"}}},
        {"key": "pause", "type": "delay", "config": {"ms": 200}},
        {"key": "done", "type": "log", "config": {"message": "done {{ steps.greet.output.m }}"}},
    ],
}
FAILING = {
    "name": "always-fails",
    "retryMaxAttempts": 3,
    "retryBackoffMs": 20,
    "steps": [
        {"key": "ok", "type": "transform", "config": {"output": {"a": 1}}},
        {"key": "boom", "type": "fail", "config": {"message": "kaboom"}},
    ],
}
SLOW = {
    "name": "slow",
    "steps": [
        {"key": "first", "type": "delay", "config": {"ms": 600}},
        {"key": "second", "type": "delay", "config": {"ms": 600}},
    ],
}


async def _execute(server: LiveServer, workflow: str, input: Any = None) -> str:
    response = await server.client.post(
        f"/api/workflows/{workflow}/execute", json={"input": input or {}}
    )
    assert response.status_code == 202, response.text
    execution_id: str = response.json()["executionId"]
    return execution_id


async def _create(server: LiveServer, document: dict[str, Any]) -> str:
    response = await server.client.post("/api/workflows", json=document)
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["id"]
    return workflow_id


def _assert_stream(recorder: Recorder, execution_id: str, workflow_id: str) -> None:
    """Every payload has the common fields; seq goes 1, 2, 3... with no gap and no repeat."""
    payloads = [p for _, p in recorder.of(execution_id)]
    assert payloads
    for payload in payloads:
        assert payload["workflowId"] == workflow_id
        assert payload["timestamp"].endswith("Z")
        datetime.fromisoformat(payload["timestamp"])
    assert [p["seq"] for p in payloads] == list(range(1, len(payloads) + 1))


async def test_subscriber_receives_each_step_in_order(db_url: str, tmp_path: Path) -> None:
    async with (
        live_server(db_url, tmp_path) as server,
        socket_client(server.url, auth={"token": server.token}) as client,
    ):
        workflow_id = await _create(server, THREE_STEPS)
        execution_id = await _execute(server, workflow_id, {"name": "Ada"})
        ack = await client.call("subscribe", execution_id)
        assert ack["ok"] is True, ack
        await client.wait_final(execution_id)
        assert client.names(execution_id) == [
            "started",
            *["step_started", "step_completed"] * 3,
            "completed",
        ]
        _assert_stream(client, execution_id, workflow_id)
        steps = [p for n, p in client.of(execution_id) if n == "step_completed"]
        assert [p["stepKey"] for p in steps] == ["greet", "pause", "done"]
        assert steps[0]["output"] == {"m": "Hi Ada"}
        assert all(isinstance(p["durationMs"], int) for p in steps)
        assert any(n == "log" for n, _ in client.of(execution_id))
        # Exactly what the database holds: nothing lost, nothing sent twice.
        response = await server.client.get(f"/api/executions/{execution_id}")
        assert response.json()["status"] == "completed"
        await asyncio.sleep(0.2)
        async with server.engine.db.read() as conn:
            from workflow_engine.storage.executions import list_events

            stored = await list_events(conn, execution_id)
        assert [p["seq"] for _, p in client.of(execution_id)] == [r["seq"] for r in stored]


async def test_failing_workflow_sends_retries_then_failed(db_url: str, tmp_path: Path) -> None:
    async with (
        # Without jitter (RETRY_JITTER=0) the announced delays are exactly backoff * 2^(n-1).
        live_server(db_url, tmp_path, retry_jitter=0) as server,
        socket_client(server.url, auth={"token": server.token}) as client,
    ):
        workflow_id = await _create(server, FAILING)
        execution_id = await _execute(server, workflow_id)
        assert (await client.call("subscribe", {"executionId": execution_id}))["ok"]
        await client.wait_final(execution_id)
        assert client.names(execution_id) == [
            "started",
            "step_started",
            "step_completed",
            "step_started",
            "step_retrying",
            "step_started",
            "step_retrying",
            "step_started",
            "step_failed",
            "failed",
        ]
        _assert_stream(client, execution_id, workflow_id)
        retrying = [p for n, p in client.of(execution_id) if n == "step_retrying"]
        assert [p["attempt"] for p in retrying] == [1, 2]
        assert [p["nextDelayMs"] for p in retrying] == [20, 40]
        assert all(p["stepKey"] == "boom" and "kaboom" in p["error"] for p in retrying)
        failed = client.of(execution_id)[-1][1]
        assert "kaboom" in failed["error"]


async def test_no_event_after_unsubscribe(tmp_path: Path) -> None:
    async with (
        live_server(f"sqlite:///{tmp_path / 'e.db'}", tmp_path) as server,
        socket_client(server.url, auth={"token": server.token}) as client,
    ):
        workflow_id = await _create(server, SLOW)
        execution_id = await _execute(server, workflow_id)
        assert (await client.call("subscribe", execution_id))["ok"]
        await client.wait_for(lambda r: "step_started" in r.names(execution_id))
        ack = await client.call("unsubscribe", execution_id)
        assert ack["ok"] is True
        seen = len(client.events)
        for _ in range(100):
            body = (await server.client.get(f"/api/executions/{execution_id}")).json()
            if body["status"] == "completed":
                break
            await asyncio.sleep(0.05)
        assert body["status"] == "completed"
        await asyncio.sleep(0.5)
        assert len(client.events) == seen, client.events[seen:]
        assert "completed" not in client.names(execution_id)


async def test_connection_without_a_valid_token_is_refused(tmp_path: Path) -> None:
    async with live_server(f"sqlite:///{tmp_path / 'e.db'}", tmp_path) as server:
        for auth, headers in [
            (None, None),
            ({"token": "wrong"}, None),
            ({}, {"Authorization": "Bearer wrong"}),
            (None, {"Cookie": f"{COOKIE_NAME}=1700000000.forged"}),
            (None, {"Cookie": f"{COOKIE_NAME}={make_session('another-token')}"}),
        ]:
            with pytest.raises(socketio.exceptions.ConnectionError):
                async with socket_client(server.url, auth=auth, headers=headers):
                    pass
        # The three ways in that work: auth token, bearer header, the UI's session cookie.
        for auth, headers in [
            ({"token": server.token}, None),
            (None, {"Authorization": f"Bearer {server.token}"}),
            (None, {"Cookie": f"{COOKIE_NAME}={make_session(server.token)}"}),
        ]:
            async with socket_client(server.url, auth=auth, headers=headers) as client:
                assert client.sio.connected


async def test_unknown_execution_yields_nothing(tmp_path: Path) -> None:
    async with (
        live_server(f"sqlite:///{tmp_path / 'e.db'}", tmp_path) as server,
        socket_client(server.url, auth={"token": server.token}) as client,
    ):
        ack = await client.call("subscribe", "no-such-execution")
        assert ack == {"ok": False, "error": "execution 'no-such-execution' not found"}
        assert (await client.call("subscribe", {"executionId": 42}))["ok"] is False
        assert (await client.call("subscribe_workflow", "no-such-workflow"))["ok"] is False
        workflow_id = await _create(server, THREE_STEPS)
        execution_id = await _execute(server, workflow_id, {"name": "x"})
        for _ in range(100):
            body = (await server.client.get(f"/api/executions/{execution_id}")).json()
            if body["status"] == "completed":
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert client.events == []


async def test_reconnecting_client_catches_up_after_seq(db_url: str, tmp_path: Path) -> None:
    async with live_server(db_url, tmp_path) as server:
        workflow_id = await _create(server, SLOW)
        execution_id = await _execute(server, workflow_id)
        async with socket_client(server.url, auth={"token": server.token}) as first:
            assert (await first.call("subscribe", execution_id))["ok"]
            await first.wait_for(lambda r: "step_completed" in r.names(execution_id))
            last_seen = first.of(execution_id)[-1][1]["seq"]
        # Disconnected while the execution goes on; a new connection resumes after last_seen.
        await asyncio.sleep(0.3)
        async with socket_client(server.url, auth={"token": server.token}) as second:
            ack = await second.call(
                "subscribe", {"executionId": execution_id, "afterSeq": last_seen}
            )
            assert ack["ok"]
            await second.wait_final(execution_id)
            seqs = [p["seq"] for _, p in second.of(execution_id)]
            assert seqs == list(range(last_seen + 1, last_seen + 1 + len(seqs)))
            combined = first.names(execution_id, logs=True) + second.names(execution_id, logs=True)
            assert [n for n in combined if n != "log"] == [
                "started",
                "step_started",
                "step_completed",
                "step_started",
                "step_completed",
                "completed",
            ]


async def test_rooms_for_workflow_and_all(tmp_path: Path) -> None:
    async with live_server(f"sqlite:///{tmp_path / 'e.db'}", tmp_path) as server:
        wanted = await _create(server, THREE_STEPS)
        other = await _create(server, {**THREE_STEPS, "name": "other"})
        async with (
            socket_client(server.url, auth={"token": server.token}) as by_workflow,
            socket_client(server.url, auth={"token": server.token}) as everything,
        ):
            steps = {"workflowId": "three-steps", "steps": True}
            assert (await by_workflow.call("subscribe_workflow", steps)) == {
                "ok": True,
                "workflowId": wanted,
            }
            assert (await everything.call("subscribe_all"))["ok"]
            first = await _execute(server, wanted, {"name": "a"})
            second = await _execute(server, other, {"name": "b"})
            # A client in "all" that also follows one execution gets that one once, in order.
            assert (await everything.call("subscribe", second))["ok"]
            await everything.wait_final(first)
            await everything.wait_final(second)
            await by_workflow.wait_final(first)
            expected = ["started", *["step_started", "step_completed"] * 3, "completed"]
            assert by_workflow.names(first) == expected
            assert by_workflow.of(second) == []
            assert "log" not in by_workflow.names(first, logs=True)
            # Without "steps": true a room carries the execution events only.
            assert everything.names(first) == ["started", "completed"]
            assert everything.names(second) == expected
            seqs = [p["seq"] for _, p in everything.of(second)]
            assert seqs == sorted(set(seqs))
            assert (await everything.call("unsubscribe_all"))["ok"]
            assert (await by_workflow.call("unsubscribe_workflow", wanted))["ok"]
            count = len(everything.events), len(by_workflow.events)
            third = await _execute(server, wanted, {"name": "c"})
            for _ in range(100):
                body = (await server.client.get(f"/api/executions/{third}")).json()
                if body["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            assert (len(everything.events), len(by_workflow.events)) == count


async def test_batch_subscribers_get_the_same_events_in_fewer_messages(tmp_path: Path) -> None:
    async with live_server(f"sqlite:///{tmp_path / 'e.db'}", tmp_path) as server:
        wanted = await _create(server, THREE_STEPS)
        async with socket_client(server.url, auth={"token": server.token}) as monitor:
            assert (await monitor.call("subscribe_all", {"batch": True, "steps": True}))["ok"]
            # Started together, so that their events fall into the same batches even when the
            # machine is slow.
            ids = await asyncio.gather(
                *(_execute(server, wanted, {"name": str(n)}) for n in range(5))
            )
            for execution_id in ids:
                await monitor.wait_final(execution_id)
            expected = ["started", *["step_started", "step_completed"] * 3, "completed"]
            for execution_id in ids:
                assert monitor.names(execution_id) == expected
                seqs = [p["seq"] for _, p in monitor.of(execution_id)]
                assert seqs == sorted(set(seqs))
            # Every event came inside an `events` batch, and batches held several events.
            assert 0 < monitor.batches < len(monitor.events)
