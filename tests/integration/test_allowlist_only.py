"""HTTP_ALLOWLIST_ONLY=true: http steps reach what HTTP_ALLOWLIST lists and nothing else."""

from __future__ import annotations

import pytest

from tests.conftest import StartEngine
from tests.support.flows import start
from tests.support.target import Target

pytestmark = pytest.mark.timeout(60)


async def test_http_steps_reach_the_allowlist_alone(
    db_url: str, start_engine: StartEngine, target: Target
) -> None:
    running = await start(
        start_engine, db_url, http_allowlist=["127.0.0.1"], http_allowlist_only=True
    )
    # Public addresses are refused too (tests/unit/test_ssrf_guard.py shows it without a
    # network); here only addresses that the usual guard also blocks, so that nothing could
    # leave the machine if this setting stopped working.
    port = target.url.rsplit(":", 1)[1]
    for name, url in (
        ("listed", f"{target.url}/count/listed"),
        ("other-loopback", f"http://127.0.0.2:{port}/count/other"),
        ("private", "http://10.0.0.1/"),
    ):
        await running.create_workflow(
            {
                "name": name,
                "retryMaxAttempts": 3,
                "retryBackoffMs": 10,
                "steps": [{"key": "call", "type": "http", "config": {"url": url}}],
            }
        )
        body = await running.wait(await running.execute(name), timeout=15)
        [step] = body["steps"]
        if name == "listed":
            assert body["status"] == "completed", body
            continue
        assert body["status"] == "failed", body
        assert step["retryCount"] == 0, step  # blocked: not retried
        assert "not in HTTP_ALLOWLIST" in step["error"], step["error"]
    assert len(target.hits("count/listed")) == 1
    assert target.hits("count/other") == []
