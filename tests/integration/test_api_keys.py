"""Named API keys with roles (issue 12, "API keys with roles"), on SQLite and PostgreSQL:

- a viewer key gets 403 on every write route of the app (the routes are walked, so a new one is
  covered), an operator on every admin route, a trigger key on everything but executing its
  own workflows;
- a revoked key gets 401 on the very next request (bearer and UI session);
- the database holds no key in clear; `last_used_at` is recorded;
- the audit log, the execution's `audit` and `triggeredBy` name the key that acted.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from sqlalchemy import select

from tests.conftest import TOKEN, Running, StartEngine
from tests.support.flows import start
from tests.support.realtime import live_server, socket_client
from workflow_engine.api.permissions import api_routes, declared
from workflow_engine.api.session import COOKIE_NAME
from workflow_engine.app import create_app
from workflow_engine.domain.access import CLI, Permission
from workflow_engine.engine.keys import KeyRing
from workflow_engine.settings import Settings
from workflow_engine.storage.tables import metadata

pytestmark = pytest.mark.timeout(120)

SLOW = {
    "name": "slow",
    "steps": [{"key": "wait", "type": "delay", "config": {"ms": 60_000}}],
}
QUICK = {
    "name": "quick",
    "steps": [{"key": "hi", "type": "transform", "config": {"output": {"m": "hi"}}}],
    "triggers": [{"type": "manual"}],
}
BROKEN = {"name": "broken", "steps": [{"key": "boom", "type": "fail", "config": {}}]}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def new_key(running: Running, name: str, role: str, **extra: Any) -> dict[str, Any]:
    response = await running.client.post("/api/keys", json={"name": name, "role": role, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["key"].startswith("wfe_") and body["prefix"] == body["key"][:12]
    return body


def all_routes(tmp_path: Path) -> list[tuple[str, str, Permission]]:
    """(method, path, permission) of every /api route of the app."""
    settings = Settings(data_dir=tmp_path / "routes", _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings, token="unused")
    return [
        (method, path, declared(route)[0])
        for path, route in api_routes(app)
        for method in sorted(route.methods)
        if method != "HEAD"
    ]


async def world(running: Running) -> dict[str, str]:
    """A workflow, a trigger, an unfinished execution (its long delay waits), a key: real values
    for every path param."""
    quick = await running.create_workflow(QUICK)
    await running.create_workflow(SLOW)
    execution = await running.execute("slow")
    await running.wait(execution, until=lambda e: e["status"] in ("running", "waiting"))
    spare = await new_key(running, "spare", "viewer")
    return {
        "workflow_id": quick["id"],
        "trigger_id": quick["triggers"][0]["id"],
        "execution_id": execution,
        "key_id": spare["id"],
        "number": "1",
        "step_key": "wait",
    }


def fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no test value for a parameter of {path}"
    return path


async def test_each_role_is_refused_what_it_may_not_do_on_every_route(
    db_url: str, start_engine: StartEngine, tmp_path: Path
) -> None:
    running = await start(start_engine, db_url)
    values = await world(running)
    viewer = (await new_key(running, "eyes", "viewer"))["key"]
    operator = (await new_key(running, "ops-key", "operator"))["key"]
    trigger = (await new_key(running, "ci", "trigger", workflows=["quick"]))["key"]
    routes = all_routes(tmp_path)
    writes = [(m, p, perm) for m, p, perm in routes if m != "GET"]
    assert len(writes) >= 12
    tried = 0
    for method, path, permission in routes:
        if permission is Permission.SIGNED:
            continue  # no key opens a signed webhook: test_hook_triggers.py
        url = fill(path, values)
        for key, role in ((viewer, "viewer"), (operator, "operator"), (trigger, "trigger")):
            allowed = {
                "viewer": {Permission.PUBLIC, Permission.READ},
                "operator": {
                    Permission.PUBLIC,
                    Permission.READ,
                    Permission.EXECUTE,
                    Permission.OPERATE,
                },
                "trigger": {Permission.PUBLIC, Permission.EXECUTE},
            }[role]
            if permission in allowed:
                continue
            response = await running.client.request(
                method, url, headers=bearer(key), json={} if method != "GET" else None
            )
            assert response.status_code == 403, (role, method, url, response.text)
            assert role in response.json()["detail"], response.text
            tried += 1
    assert tried >= 40
    # Nothing was changed by the refused requests.
    workflow = (await running.client.get("/api/workflows/quick")).json()
    assert workflow["version"] == 1 and len(workflow["triggers"]) == 1
    assert (await running.client.get(f"/api/executions/{values['execution_id']}")).json()[
        "status"
    ] in ("running", "waiting")
    keys = (await running.client.get("/api/keys")).json()["keys"]
    assert [k["name"] for k in keys if k["revokedAt"] is None] == ["ci", "ops-key", "eyes", "spare"]
    # What they may do, they can.
    assert (await running.client.get("/api/workflows", headers=bearer(viewer))).status_code == 200
    assert (await running.client.get("/api/queues", headers=bearer(viewer))).status_code == 200
    started = await running.client.post("/api/workflows/quick/execute", headers=bearer(operator))
    assert started.status_code == 202
    fired = await running.client.post(
        f"/api/triggers/{values['trigger_id']}/fire", headers=bearer(operator)
    )
    assert fired.status_code == 202
    cancelled = await running.client.post(
        f"/api/executions/{values['execution_id']}/cancel", headers=bearer(operator)
    )
    assert cancelled.status_code == 202, cancelled.text


async def test_a_trigger_key_executes_only_its_workflows(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    quick = await running.create_workflow(QUICK)
    await running.create_workflow(SLOW)
    key = (await new_key(running, "ci", "trigger", workflows=[quick["id"]]))["key"]
    for ref in (quick["id"], "quick"):  # by id and by name
        response = await running.client.post(
            f"/api/workflows/{ref}/execute", headers=bearer(key), json={"input": {"n": 1}}
        )
        assert response.status_code == 202, response.text
        execution = await running.wait(response.json()["executionId"])
        assert execution["status"] == "completed"
        assert execution["triggeredBy"] == "ci"
    for ref in ("slow", "no-such-workflow"):
        response = await running.client.post(f"/api/workflows/{ref}/execute", headers=bearer(key))
        assert response.status_code == 403, response.text
        assert "not one of its workflows" in response.json()["detail"]
    reads = await running.client.get(f"/api/executions/{execution['id']}", headers=bearer(key))
    assert reads.status_code == 403
    assert "may only start its workflows" in reads.json()["detail"]


async def test_a_revoked_key_is_refused_on_the_very_next_request(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    created = await new_key(running, "leaving", "operator")
    key = created["key"]
    # Used (and so cached) just before, by bearer and by a UI session.
    assert (await running.client.get("/api/workflows", headers=bearer(key))).status_code == 200
    login = await running.client.post(
        "/login",
        content=f"token={key}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert login.status_code == 303
    cookie = {"Cookie": f"{COOKIE_NAME}={login.cookies[COOKIE_NAME]}", "Authorization": ""}
    assert (await running.client.get("/monitoring", headers=cookie)).status_code == 200
    assert (await running.client.get("/api/executions", headers=cookie)).status_code == 200

    revoked = await running.client.delete(f"/api/keys/{created['id']}")
    assert revoked.status_code == 200 and revoked.json()["revokedAt"] is not None

    response = await running.client.get("/api/workflows", headers=bearer(key))
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    assert (await running.client.get("/api/executions", headers=cookie)).status_code == 401
    page = await running.client.get("/monitoring", headers=cookie)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    # Revoking again changes nothing; its name may be given to a new key.
    again = await running.client.delete("/api/keys/leaving")
    assert again.status_code == 404  # a name finds live keys only
    assert (await running.client.delete(f"/api/keys/{created['id']}")).json() == revoked.json()
    await new_key(running, "leaving", "viewer")


async def test_a_revocation_by_another_process_applies_at_once_without_the_cache(
    db_url: str, start_engine: StartEngine
) -> None:
    """API_KEY_CACHE_MS=0: every request asks the database, so a revocation made elsewhere (the
    CLI, another replica whose message is lost) is seen on the next request."""
    running = await start(start_engine, db_url, api_key_cache_ms=0)
    created = await new_key(running, "elsewhere", "viewer")
    assert (await running.client.get("/api/workflows", headers=bearer(created["key"]))).is_success
    other = KeyRing(running.engine.db)  # another process's key ring on the same database
    await other.revoke("elsewhere", actor=CLI)
    response = await running.client.get("/api/workflows", headers=bearer(created["key"]))
    assert response.status_code == 401


async def test_no_key_is_stored_in_clear_and_last_use_is_recorded(
    db_url: str, start_engine: StartEngine, tmp_path: Path
) -> None:
    running = await start(start_engine, db_url)
    quick = await running.create_workflow(QUICK)
    viewer = await new_key(running, "eyes", "viewer")
    trigger = await new_key(running, "ci", "trigger", workflows=["quick"])
    listed = {k["name"]: k for k in (await running.client.get("/api/keys")).json()["keys"]}
    assert listed["eyes"]["lastUsedAt"] is None
    assert "key" not in listed["eyes"] and viewer["key"] not in json.dumps(listed)
    assert (await running.client.get("/api/workflows", headers=bearer(viewer["key"]))).is_success
    execute = await running.client.post(
        "/api/workflows/quick/execute", headers=bearer(trigger["key"])
    )
    assert execute.status_code == 202
    await running.wait(execute.json()["executionId"])
    listed = {k["name"]: k for k in (await running.client.get("/api/keys")).json()["keys"]}
    assert listed["eyes"]["lastUsedAt"] is not None and listed["ci"]["lastUsedAt"] is not None
    assert listed["ci"]["workflows"] == [quick["id"]]  # named at creation, stored by id

    dump = []
    async with running.engine.db.read() as conn:
        for table in metadata.sorted_tables:
            dump += [repr(tuple(row)) for row in await conn.execute(select(table))]
    text = "\n".join(dump)
    assert listed["eyes"]["prefix"] in text  # the dump does hold the keys' rows
    assert TOKEN not in text
    for secret in (viewer["key"], trigger["key"]):
        assert secret not in text
        assert secret[12:] not in text  # not even the part after the shown prefix
    if db_url.startswith("sqlite"):
        files = await asyncio.to_thread(lambda: list(tmp_path.glob("engine.db*")))
        raw = b"".join([await asyncio.to_thread(p.read_bytes) for p in files])
        assert raw
        for secret in (viewer["key"], trigger["key"]):
            assert secret[12:].encode() not in raw


async def test_the_audit_log_names_who_did_what(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    admin = (await new_key(running, "release-bot", "admin"))["key"]
    operator = (await new_key(running, "ops-key", "operator"))["key"]
    created = await running.client.post("/api/workflows", headers=bearer(admin), json=SLOW)
    assert created.status_code == 201
    workflow_id = created.json()["id"]
    saved = await running.client.put(
        "/api/workflows/slow",
        headers=bearer(admin),
        json={**SLOW, "description": "v2", "triggers": [{"type": "manual"}]},
    )
    assert saved.status_code == 200
    await running.create_workflow(BROKEN)

    started = await running.client.post("/api/workflows/slow/execute", headers=bearer(operator))
    execution_id = started.json()["executionId"]
    await running.wait(execution_id, until=lambda e: e["status"] in ("running", "waiting"))
    cancel = await running.client.post(
        f"/api/executions/{execution_id}/cancel", headers=bearer(operator)
    )
    assert cancel.status_code == 202
    cancelled = await running.wait(execution_id)
    assert cancelled["status"] == "cancelled"
    assert cancelled["triggeredBy"] == "ops-key"
    assert [(a["action"], a["actor"], a["summary"]) for a in cancelled["audit"]] == [
        ("execution.cancelled", "ops-key", "cancelled by ops-key")
    ]
    failed = await running.wait(await running.execute("broken"))
    assert failed["status"] == "failed" and failed["triggeredBy"] == "API_TOKEN"
    rerun = await running.client.post(
        f"/api/executions/{failed['id']}/rerun", headers=bearer(operator)
    )
    new_id = rerun.json()["executionId"]
    assert (await running.wait(new_id))["triggeredBy"] == "ops-key"
    source = (await running.client.get(f"/api/executions/{failed['id']}")).json()
    assert [a["summary"] for a in source["audit"]] == [f"re-run as {new_id} by ops-key"]

    workflow = (await running.client.get(f"/api/workflows/{workflow_id}")).json()
    assert [a["summary"] for a in workflow["audit"]] == [
        "created by release-bot",
        "saved as version 2 by release-bot",
    ]
    # GET /api/audit (admin): everything, newest first, filtered by target or actor.
    log = (await running.client.get("/api/audit")).json()["entries"]
    assert [(e["action"], e["actor"]) for e in log][:3] == [
        ("execution.rerun", "ops-key"),
        ("execution.cancelled", "ops-key"),
        ("workflow.created", "API_TOKEN"),
    ]
    assert [(e["action"], e["actor"]) for e in log][-2:] == [
        ("key.created", "API_TOKEN"),
        ("key.created", "API_TOKEN"),
    ]
    assert all(e["actorKeyId"] for e in log if e["actor"] in ("ops-key", "release-bot"))
    filtered = await running.client.get(
        "/api/audit", params={"targetType": "workflow", "targetId": workflow_id}
    )
    assert [e["action"] for e in filtered.json()["entries"]] == [
        "workflow.saved",
        "workflow.created",
    ]
    by_actor = await running.client.get("/api/audit", params={"actor": "ops-key", "limit": 1})
    page = by_actor.json()
    assert len(page["entries"]) == 1 and page["nextCursor"]
    rest = await running.client.get(
        "/api/audit", params={"actor": "ops-key", "cursor": page["nextCursor"]}
    )
    assert [e["action"] for e in rest.json()["entries"]] == ["execution.cancelled"]
    # The key's own history: created, revoked, by whom.
    ops_id = next(
        k["id"]
        for k in (await running.client.get("/api/keys")).json()["keys"]
        if k["name"] == "ops-key"
    )
    await running.client.delete(f"/api/keys/{ops_id}", headers=bearer(admin))
    history = await running.client.get(
        "/api/audit", params={"targetType": "key", "targetId": ops_id}
    )
    assert [e["summary"] for e in history.json()["entries"]] == [
        "revoked by release-bot",
        "created with role operator by API_TOKEN",
    ]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"name": "x", "role": "superuser"}, 422, "role"),
        ({"name": "x", "role": "trigger"}, 422, "needs the workflows"),
        ({"name": "x", "role": "viewer", "workflows": ["quick"]}, 422, "only trigger keys"),
        ({"name": "x", "role": "trigger", "workflows": ["nope"]}, 422, "'nope' not found"),
        ({"name": "API_TOKEN", "role": "viewer"}, 422, "reserved"),
        ({"name": "has space", "role": "viewer"}, 422, "a key's name"),
        ({"name": "taken", "role": "viewer"}, 409, "already exists"),
        ({"name": "x", "role": "viewer", "extra": 1}, 422, "unknown field"),
        ({"role": "viewer"}, 422, "name"),
    ],
)
async def test_bad_key_requests_get_a_clear_4xx(
    db_url: str, start_engine: StartEngine, body: dict[str, Any], status: int, message: str
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(QUICK)
    await new_key(running, "taken", "admin")
    response = await running.client.post("/api/keys", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"], response.text
    assert (await running.client.delete("/api/keys/no-such-key")).status_code == 404


async def test_sockets_follow_the_key_role_and_revocation(tmp_path: Path) -> None:
    async with live_server(f"sqlite:///{tmp_path / 'e.db'}", tmp_path) as server:
        await server.client.post("/api/workflows", json=QUICK)

        async def key(name: str, role: str, **extra: Any) -> dict[str, Any]:
            response = await server.client.post(
                "/api/keys", json={"name": name, "role": role, **extra}
            )
            assert response.status_code == 201, response.text
            body: dict[str, Any] = response.json()
            return body

        viewer = await key("eyes", "viewer")
        trigger = await key("ci", "trigger", workflows=["quick"])
        with pytest.raises(socketio.exceptions.ConnectionError):
            async with socket_client(server.url, auth={"token": trigger["key"]}):
                pass
        async with socket_client(server.url, auth={"token": viewer["key"]}) as client:
            assert (await client.call("subscribe_all"))["ok"] is True
            revoked = await server.client.delete(f"/api/keys/{viewer['id']}")
            assert revoked.status_code == 200
            async with asyncio.timeout(10):
                while client.sio.connected:
                    await asyncio.sleep(0.02)
        with pytest.raises(socketio.exceptions.ConnectionError):
            async with socket_client(server.url, auth={"token": viewer["key"]}):
                pass
        async with httpx.AsyncClient(base_url=server.url, trust_env=False) as anonymous:
            refused = await anonymous.get("/api/workflows", headers=bearer(viewer["key"]))
            assert refused.status_code == 401
