"""Secrets stay secret once transformed (issue 12, defect 3): they render for real only in an
http step's headers; anywhere else a workflow using them is refused, and nothing stored or
shown holds them, whatever filters were applied."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import StartEngine
from tests.support.flows import start
from tests.support.target import Target

LONG = "Tok3n-Value-XYZ"
SHORT = "Zq"  # shorter than redaction by value handles; letters no id or timestamp contains

TRANSFORMS = {
    "upper": ("{{ secrets.API_KEY|upper }}", LONG.upper()),
    "reverse": ("{{ secrets.API_KEY|reverse }}", LONG[::-1]),
    "slice": ("{{ secrets.API_KEY[1:] }}", LONG[1:]),
    "spaced": ("{{ secrets.API_KEY|list|join(' ') }}", " ".join(LONG)),
    "short": ("{{ secrets.PIN }}", SHORT),
}


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKFLOW_SECRET_API_KEY", LONG)
    monkeypatch.setenv("WORKFLOW_SECRET_PIN", SHORT)


async def test_transformed_secrets_reach_the_request_and_nothing_stored(
    db_url: str, start_engine: StartEngine, target: Target, secret_env: None
) -> None:
    running = await start(start_engine, db_url)
    headers = {f"X-{name}": template for name, (template, _) in TRANSFORMS.items()}
    await running.create_workflow(
        {
            "name": "uses-secrets",
            "steps": [
                {
                    "key": "call",
                    "type": "http",
                    "config": {"url": f"{target.url}/echo", "headers": headers},
                },
                {"key": "after", "type": "log", "config": {"message": "done"}},
            ],
        }
    )
    execution_id = await running.execute("uses-secrets")
    body = await running.wait(execution_id)
    assert body["status"] == "completed", body["error"]

    [hit] = target.hits("echo")
    sent = {key.lower(): value for key, value in hit.headers.items()}
    for name, (_, expected) in TRANSFORMS.items():
        assert sent[f"x-{name}"] == expected  # the request got the real, transformed value

    shown = json.dumps(body)
    events = await running.client.get(f"/api/executions/{execution_id}")
    for _, expected in TRANSFORMS.values():
        assert expected not in shown
        assert expected not in events.text
    stored_headers = body["steps"][0]["input"]["headers"]
    assert stored_headers["X-upper"] == "***"


@pytest.mark.parametrize(
    ("step", "place"),
    [
        (
            {
                "key": "leak",
                "type": "transform",
                "config": {"output": "{{ secrets.API_KEY|upper }}"},
            },
            "config.output",
        ),
        (
            {
                "key": "leak",
                "type": "http",
                "config": {"url": "http://127.0.0.1/?k={{ secrets.PIN }}"},
            },
            "config.url",
        ),
        (
            {
                "key": "leak",
                "type": "log",
                "if": "{{ secrets.PIN == 'x' }}",
                "config": {"message": "m"},
            },
            "if",
        ),
        (
            {
                "key": "leak",
                "type": "map",
                "config": {
                    "items": [1],
                    "step": {"type": "transform", "config": {"output": "{{ secrets.PIN }}"}},
                },
            },
            "config.output",
        ),
    ],
)
async def test_secrets_outside_http_headers_are_refused(
    db_url: str, start_engine: StartEngine, step: dict[str, Any], place: str
) -> None:
    running = await start(start_engine, db_url)
    response = await running.client.post("/api/workflows", json={"name": "leaky", "steps": [step]})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "step 'leak'" in detail and place in detail and "secrets" in detail
    assert (await running.client.get("/api/workflows")).json()["workflows"] == []


async def test_an_output_template_may_not_read_secrets(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    response = await running.client.post(
        "/api/workflows",
        json={
            "name": "leaky-output",
            "output": {"k": "{{ secrets.API_KEY }}"},
            "steps": [{"key": "a", "type": "log", "config": {"message": "m"}}],
        },
    )
    assert response.status_code == 422
    assert "output uses secrets" in response.json()["detail"]
