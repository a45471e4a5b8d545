"""Bad input gets a clear 4xx and stores nothing; unsafe templates and addresses fail the step."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import Running, StartEngine
from tests.support.flows import counts, refuse_5xx, scalar, start
from tests.support.target import Target

pytestmark = pytest.mark.timeout(60)

GOOD = {"name": "ok", "steps": [{"key": "a", "type": "transform", "config": {"output": 1}}]}


async def expect(
    running: Running, status: int, method: str, url: str, *, text: str | None = None, **kw: Any
) -> dict[str, Any]:
    """Send one request; it must answer `status` with a JSON `detail`, and store nothing."""
    before = await counts(running)
    response = await running.client.request(method, url, **kw)
    assert response.status_code == status, (method, url, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert isinstance(body["detail"], str) and body["detail"], body
    if text is not None:
        assert text in body["detail"], body
    assert await counts(running) == before
    return body


async def test_bad_requests_get_clear_4xx_and_store_nothing(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url, max_body_bytes=2048)
    created = await running.create_workflow(GOOD)
    json_headers = {"Content-Type": "application/json"}

    # Malformed JSON.
    await expect(
        running,
        400,
        "POST",
        "/api/workflows",
        content=b'{"name": ',
        headers=json_headers,
        text="not valid JSON",
    )
    await expect(
        running,
        400,
        "POST",
        "/api/workflows/ok/execute",
        content=b"{input: 1}",
        headers=json_headers,
        text="not valid JSON",
    )
    await expect(running, 400, "POST", "/api/workflows", content=b"\xff\xfe", headers=json_headers)
    await expect(running, 400, "POST", "/api/workflows", content=b"", headers=json_headers)
    # Unknown fields, at every level, and other invalid documents.
    body = await expect(
        running, 422, "POST", "/api/workflows", json={**GOOD, "name": "x", "colour": 1}
    )
    assert "colour" in body["detail"] and "unknown field" in body["detail"]
    step = {"key": "a", "type": "transform", "config": {}, "retries": 2}
    await expect(
        running, 422, "POST", "/api/workflows", json={"name": "y", "steps": [step]}, text="retries"
    )
    await expect(running, 422, "POST", "/api/workflows", json=[GOOD])
    await expect(running, 422, "POST", "/api/workflows", json={"name": "z", "steps": []})
    await expect(
        running,
        422,
        "POST",
        "/api/workflows",
        json={"name": "z", "steps": [{"key": "a", "type": "nope"}]},
        text="unknown step type",
    )
    await expect(
        running,
        422,
        "POST",
        "/api/workflows",
        json={"name": "z", "steps": [GOOD["steps"][0], GOOD["steps"][0]]},
        text="used twice",
    )
    await expect(running, 422, "POST", "/api/workflows/ok/execute", json={"input": {}, "x": 1})
    await expect(running, 422, "POST", "/api/workflows/ok/execute", json=[1, 2])
    await expect(running, 409, "POST", "/api/workflows", json=GOOD, text="already exists")
    await expect(running, 422, "PUT", "/api/workflows/ok", json={**GOOD, "bogus": True})
    # Unknown ids.
    await expect(running, 404, "POST", "/api/workflows/no-such/execute", json={})
    await expect(
        running,
        404,
        "POST",
        "/api/workflows/00000000-0000-7000-8000-000000000000/execute",
        json={},
    )
    await expect(running, 404, "GET", "/api/workflows/no-such")
    await expect(running, 404, "PUT", "/api/workflows/no-such", json={**GOOD, "name": "no-such"})
    await expect(running, 404, "DELETE", "/api/workflows/no-such")
    await expect(running, 404, "GET", "/api/executions/no-such")
    await expect(running, 404, "PUT", "/api/triggers/no-such", json={"type": "manual"})
    # Invalid cron and timezone inside a workflow document.
    for trigger in (
        {"type": "schedule", "cron": "every minute"},
        {"type": "schedule", "cron": "* * * * *", "timezone": "Nowhere/Land"},
    ):
        await expect(
            running,
            422,
            "POST",
            "/api/workflows",
            json={**GOOD, "name": "t", "triggers": [trigger]},
        )
        await expect(running, 422, "PUT", "/api/workflows/ok", json={**GOOD, "triggers": [trigger]})
    # Bodies over the cap: announced by Content-Length, and streamed without one.
    big = {**GOOD, "name": "big", "description": "x" * 4000}
    await expect(running, 413, "POST", "/api/workflows", json=big, text="2048 bytes")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "big", "description": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'", "steps": []}'

    await expect(
        running,
        413,
        "POST",
        "/api/workflows",
        content=chunks(),
        headers=json_headers,
        text="2048 bytes",
    )
    # Wrong content type.
    await expect(
        running,
        415,
        "POST",
        "/api/workflows",
        content=b"name: ok",
        headers={"Content-Type": "application/x-yaml"},
        text="application/json",
    )
    await expect(
        running,
        415,
        "POST",
        "/api/workflows/ok/execute",
        data={"input": "1"},
        text="application/json",
    )
    # Query parameters.
    await expect(
        running, 400, "GET", "/api/executions", params={"cursor": "garbage"}, text="cursor"
    )
    await expect(running, 400, "GET", "/api/workflows", params={"cursor": "e30"})
    await expect(running, 422, "GET", "/api/executions", params={"status": "done"})
    await expect(running, 422, "GET", "/api/executions", params={"limit": 0})
    await expect(running, 422, "GET", "/api/executions", params={"limit": "many"})
    await expect(running, 422, "GET", "/api/workflows/ok/versions/abc")

    # JSON that the databases could not store.
    await expect(running, 422, "POST", "/api/workflows", json={**GOOD, "name": "a\u0000b"})
    await expect(running, 422, "POST", "/api/workflows/ok/execute", json={"input": {"k\u0000": 1}})
    for raw in (b'{"input": NaN}', b'{"input": [Infinity]}', b'{"input": 1e400}'):
        await expect(
            running, 400, "POST", "/api/workflows/ok/execute", content=raw, headers=json_headers
        )
    for depth in (200, 1000):
        raw = b'{"input": ' + b"[" * depth + b"]" * depth + b"}"
        response = await running.client.post(
            "/api/workflows/ok/execute", content=raw, headers=json_headers
        )
        assert response.status_code in (400, 422) and "nested deeper" in response.text
    await expect(running, 422, "GET", "/api/workflows/ok/versions/99999999999999999999")
    never = {"type": "schedule", "cron": "0 0 30 2 *"}
    await expect(
        running,
        422,
        "POST",
        "/api/workflows",
        json={**GOOD, "name": "n", "triggers": [never]},
        text="never fires",
    )
    # Without a token (or with a wrong one): 401, whatever the route.
    async with refuse_5xx(
        httpx.AsyncClient(transport=running.client._transport, base_url="http://engine.test")
    ) as anonymous:
        for method, url in (
            ("GET", "/api/workflows"),
            ("GET", "/api/executions"),
            ("POST", "/api/workflows/ok/execute"),
            ("DELETE", f"/api/workflows/{created['id']}"),
        ):
            before = await counts(running)
            response = await anonymous.request(method, url)
            assert response.status_code == 401, (url, response.text)
            assert "token" in response.json()["detail"]
            wrong = await anonymous.request(
                method, url, headers={"Authorization": "Bearer not-the-token"}
            )
            assert wrong.status_code == 401
            assert await counts(running) == before
        assert (await anonymous.get("/api/health")).status_code == 200
    workflow = (await running.client.get("/api/workflows/ok")).json()
    assert workflow["archivedAt"] is None and workflow["version"] == 1
    assert await scalar(running, "SELECT count(*) FROM executions") == 0


async def test_every_valid_name_can_be_looked_up(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    name = "abcdefgh-ijkl-mnop-qrst-uvwxyzabcdef"  # the shape of an id, but not one
    created = await running.create_workflow({**GOOD, "name": name})
    response = await running.client.get(f"/api/workflows/{name}")
    assert response.status_code == 200 and response.json()["id"] == created["id"]
    assert (await running.wait(await running.execute(name)))["status"] == "completed"
    await expect(running, 422, "POST", "/api/workflows", json={**GOOD, "name": created["id"]})


async def test_outputs_postgresql_cannot_store_are_made_storable(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(start_engine, db_url, lease_ms=1000)
    await running.create_workflow(
        {
            "name": "odd",
            "retryMaxAttempts": 1,
            "steps": [
                {
                    "key": "call",
                    "type": "http",
                    "config": {
                        "url": f"{target.url}/echo",
                        "method": "POST",
                        "body": '{"text": "a\\u0000b"}',
                    },
                },
                {
                    "key": "calc",
                    "type": "transform",
                    "config": {"output": {"nan": "{{ input.n | float }}", "nul": "{{ '\\x00' }}"}},
                },
            ],
        }
    )
    body = await running.wait(await running.execute("odd", {"n": "nan"}), timeout=10)
    assert body["status"] == "completed", (body["error"], body["steps"])
    assert body["steps"][0]["output"]["body"]["json"] == {"text": "a\ufffdb"}
    assert body["output"] == {"nan": None, "nul": "\ufffd"}
    assert body["steps"][1]["input"] == {"output": {"nan": None, "nul": "\ufffd"}}
    assert len(target.hits("echo")) == 1


async def test_bad_templates_fail_the_step_at_once(db_url: str, start_engine: StartEngine) -> None:
    running = await start(start_engine, db_url)
    for n, expression in enumerate(
        (
            "{{ ''.__class__.__mro__ }}",
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "{{ input.__class__ }}",
            "{{ lipsum.__globals__ }}",
            "text {{ cycler.__init__.__globals__.os }}",
            "{{ 'nan' | float }}",  # Jinja folds this into code that raises NameError
        )
    ):
        name = f"evil{n}"
        await running.create_workflow(
            {
                "name": name,
                "retryMaxAttempts": 3,
                "steps": [
                    {"key": "t", "type": "transform", "config": {"output": {"x": expression}}}
                ],
            }
        )
        body = await running.wait(await running.execute(name))
        assert body["status"] == "failed", (expression, body)
        [step] = body["steps"]
        assert step["status"] == "failed"
        assert step["error"].startswith("template error in"), step["error"]
        assert body["error"] == f"Step 't' failed: {step['error']}"
        # Not retried: it cannot succeed.
        assert step["retryCount"] == 0
        assert step["output"] is None
        assert "class 'object'" not in str(body) and "subprocess" not in str(body)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("169.254.169.254", "link-local address"),
        ("10.0.0.1", "private address"),
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
    ],
)
async def test_http_to_internal_destinations_is_blocked(
    db_url: str, start_engine: StartEngine, target: Target, host: str, reason: str
) -> None:
    running = await start(start_engine, db_url, http_allowlist=[])
    port = target.url.rsplit(":", 1)[1]
    url = f"http://{host}:{port}/count/blocked"
    await running.create_workflow(
        {
            "name": "ssrf",
            "retryMaxAttempts": 3,
            "retryBackoffMs": 10,
            "steps": [
                {"key": "get", "type": "http", "config": {"url": url}},
                {"key": "after", "type": "http", "config": {"url": f"{target.url}/count/after"}},
            ],
        }
    )
    body = await running.wait(await running.execute("ssrf"), timeout=10)
    assert body["status"] == "failed", body
    [step] = body["steps"]
    assert step["status"] == "failed" and step["retryCount"] == 0
    assert step["error"].startswith(f"Blocked destination {host}"), step["error"]
    assert reason in step["error"]
    assert "Blocked destination" in body["error"]
    assert target.hits("count/blocked") == []
    assert target.hits("count/after") == []


def _cursor(created_at: str, row_id: str = "01a22b86-0000-7000-8000-000000000000") -> str:
    raw = json.dumps([created_at, row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


HUGE = "1" * 5000  # past Python's 4,300-digit limit for int <-> str


async def test_a_5000_digit_number_in_a_body_is_a_400(
    db_url: str, start_engine: StartEngine
) -> None:
    """Issue 12, defect 4: a number Python cannot parse answered 500 (a traceback in the log)."""
    running = await start(start_engine, db_url)
    created = await running.create_workflow(GOOD)
    step = '{"key": "a", "type": "transform", "config": {"output": ' + HUGE + "}}"
    for method, url, raw in (
        ("POST", "/api/workflows/ok/execute", '{"input": {"n": ' + HUGE + "}}"),
        ("POST", "/api/workflows/ok/execute", '{"input": [-' + HUGE + "]}"),
        ("POST", "/api/workflows", '{"name": "b", "retryMaxAttempts": ' + HUGE + ', "steps": []}'),
        ("POST", "/api/workflows", '{"name": "b", "steps": [' + step + "]}"),
        ("PUT", "/api/workflows/ok", '{"name": "ok", "timeoutMs": ' + HUGE + ', "steps": []}'),
        (
            "POST",
            f"/api/workflows/{created['id']}/triggers",
            '{"type": "manual", "x": ' + HUGE + "}",
        ),
    ):
        await expect(
            running,
            400,
            method,
            url,
            content=raw.encode(),
            headers={"Content-Type": "application/json"},
            text="digits",
        )
    assert await scalar(running, "SELECT count(*) FROM executions") == 0


def _cursor(created_at: str, row_id: str = "01a22b86-0000-7000-8000-000000000000") -> str:
    raw = json.dumps([created_at, row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_a_cursor_with_an_extreme_date_is_a_400(
    db_url: str, start_engine: StartEngine
) -> None:
    """Issue 12, defect 4: a date that cannot be turned into UTC answered 500."""
    running = await start(start_engine, db_url)
    for extreme in (
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T23:59:59.999999-00:01",
    ):
        for url in ("/api/executions", "/api/workflows"):
            await expect(
                running, 400, "GET", url, params={"cursor": _cursor(extreme)}, text="cursor"
            )
    # An id no row can have (PostgreSQL refuses NUL in text: that was a 503).
    for row_id in ("a\u0000b", "x" * 5000):
        await expect(
            running,
            400,
            "GET",
            "/api/executions",
            params={"cursor": _cursor("2024-01-01T00:00:00+00:00", row_id)},
            text="cursor",
        )
    # The extremes that can be turned into UTC page as any other cursor.
    for fine in ("0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00"):
        for url in ("/api/executions", "/api/workflows"):
            response = await running.client.get(url, params={"cursor": _cursor(fine)})
            assert response.status_code == 200, response.text


async def test_a_300_character_timezone_is_a_422(db_url: str, start_engine: StartEngine) -> None:
    """Issue 12, defect 4: a timezone longer than a file name answered 500 (OSError)."""
    running = await start(start_engine, db_url)
    created = await running.create_workflow(GOOD)
    for zone in ("a" * 300, "Europe/" + "x" * 300, "Europe/Paris" + "/x" * 150):
        trigger = {"type": "schedule", "cron": "* * * * *", "timezone": zone}
        body = await expect(
            running,
            422,
            "POST",
            "/api/workflows",
            json={**GOOD, "name": "tz", "triggers": [trigger]},
            text="timezone",
        )
        assert zone not in body["detail"]  # the message quotes a bounded part of it
        await expect(running, 422, "POST", f"/api/workflows/{created['id']}/triggers", json=trigger)
        await expect(running, 422, "PUT", "/api/workflows/ok", json={**GOOD, "triggers": [trigger]})
    assert await scalar(running, "SELECT count(*) FROM triggers") == 0


async def test_a_method_a_path_does_not_take_is_a_405_listing_those_it_does(
    db_url: str, start_engine: StartEngine
) -> None:
    """Found by the API fuzz run: `Allow` named the methods of one route of the path only."""
    running = await start(start_engine, db_url)
    created = await running.create_workflow(GOOD)
    for method, url, allowed in (
        ("OPTIONS", "/api/workflows", {"GET", "POST"}),
        ("PATCH", f"/api/workflows/{created['id']}", {"GET", "PUT", "DELETE"}),
        ("GET", "/api/triggers/x", {"PUT", "DELETE"}),
        ("PUT", "/api/workflows/ok/triggers", {"GET", "POST"}),
        ("DELETE", "/api/executions", {"GET"}),
    ):
        body = await expect(running, 405, method, url)
        assert body["detail"] == "Method Not Allowed"
        response = await running.client.request(method, url)
        assert set(response.headers["allow"].split(", ")) == allowed, (method, url)


async def test_ids_and_names_no_row_can_have_are_a_4xx(
    db_url: str, start_engine: StartEngine
) -> None:
    """A control character in a path id or a workflowId filter reached PostgreSQL, which cannot
    compare text with NUL: a 503 ("database unavailable") for a request that can never match."""
    running = await start(start_engine, db_url)
    await running.create_workflow(GOOD)
    for method, url in (
        ("GET", "/api/workflows/a%00b"),
        ("GET", "/api/workflows/%01"),
        ("PUT", "/api/workflows/a%00b"),
        ("DELETE", "/api/workflows/a%00b"),
        ("POST", "/api/workflows/a%00b/execute"),
        ("GET", "/api/workflows/a%00b/versions"),
        ("GET", "/api/workflows/a%00b/triggers"),
        ("GET", "/api/executions/a%00b"),
        ("POST", "/api/executions/a%00b/cancel"),
        ("POST", "/api/executions/a%00b/rerun"),
        ("PUT", "/api/triggers/a%00b"),
        ("DELETE", "/api/triggers/a%00b"),
        ("POST", "/api/triggers/a%00b/fire"),
        ("GET", "/api/executions?workflowId=a%00b"),
        ("GET", "/api/workflows/" + "x" * 201),
    ):
        kw: dict[str, Any] = {}
        if method == "PUT":
            kw["json"] = GOOD if "workflows" in url else {"type": "manual"}
        await expect(running, 422, method, url, **kw)
