"""Templates cannot freeze the engine (issue 12, defects 1 and 2): bombs fail their step with a
clear error while `/api/health` keeps answering, and a number that cannot be stored fails its step
at once instead of leaving the execution `running`."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import Running, StartEngine
from tests.support.flows import start

pytestmark = pytest.mark.timeout(120)

BOMBS = {
    "nested loops": (
        "{% set x = range(10000)|list %}{% for a in x %}{% for b in x %}{% endfor %}{% endfor %}",
        "took longer than 1 s",
    ),
    "range over the cap": ("{{ range(50000)|list|length }}", "range too big"),
    "center": ("{{ 'a'|center(600000000) }}", "too large"),
    "percent width": ("{{ '%0600000000d' % 1 }}", "too large"),
    "format width": ("{{ '{:>999999999}'.format(1) }}", "too large"),
    "ljust": ("{{ 'a'.ljust(10**9) }}", "too large"),
    "repeated output": ("{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}", "too large"),
    "doubling": (
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "too large",
    ),
    "huge number": ("{{ (9**999)**5 }}", "number too large"),
}


async def health_while(running: Running, execution_id: str) -> float:
    """The slowest /api/health answer while the execution runs."""
    slowest = 0.0
    while True:
        asked = time.monotonic()
        response = await running.client.get("/api/health")
        slowest = max(slowest, time.monotonic() - asked)
        assert response.status_code == 200
        body = (await running.client.get(f"/api/executions/{execution_id}")).json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return slowest
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("bomb", sorted(BOMBS))
async def test_template_bombs_fail_their_step_and_the_api_keeps_answering(
    db_url: str, start_engine: StartEngine, bomb: str
) -> None:
    template, error = BOMBS[bomb]
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {
            "name": "bomb",
            "retryMaxAttempts": 3,
            "steps": [{"key": "boom", "type": "transform", "config": {"output": template}}],
        }
    )
    asked = time.monotonic()
    execution_id = await running.execute("bomb")
    slowest = await health_while(running, execution_id)
    took = time.monotonic() - asked
    body = await running.wait(execution_id)

    assert slowest < 0.5, f"/api/health took {slowest:.2f} s while the template rendered"
    assert body["status"] == "failed"
    assert error in body["error"], body["error"]
    [step] = body["steps"]
    assert step["status"] == "failed" and step["retryCount"] == 0  # not retried
    assert took < 10


async def test_a_step_output_too_large_to_store_fails_at_once(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start(start_engine, db_url)
    await running.create_workflow(
        {
            "name": "digits",
            "steps": [
                {"key": "a", "type": "transform", "config": {"output": "{{ 10 ** 999 }}"}},
                {
                    "key": "b",
                    "type": "transform",
                    "config": {"output": "{{ steps.a.output * steps.a.output ** 3 }}"},
                },
            ],
        }
    )
    asked = time.monotonic()
    body = await running.wait(await running.execute("digits"), timeout=10)
    assert time.monotonic() - asked < 5
    assert body["status"] == "failed"
    assert "number too large" in body["error"]
    assert [s["status"] for s in body["steps"]] == ["completed", "failed"]
