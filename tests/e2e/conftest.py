"""Fixtures for end-to-end tests: `workflow-engine serve` processes and a private PostgreSQL db."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import fresh_database
from tests.support.process import Serve

TOKEN = "e2e-token"
StartServe = Callable[..., Serve]


@pytest.fixture
def start_serve(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartServe]:
    """`start_serve(env={...}, args=(...), wait=True)` -> a running `Serve`.

    Defaults: DATA_DIR=tmp_path/data, API_TOKEN=TOKEN, HTTP_ALLOWLIST=127.0.0.1, LEASE_MS=2000,
    RECONCILE_INTERVAL_MS=500, a free port. Every process is stopped at teardown; a failing
    test's report includes their stdout/stderr.
    """
    started: list[Serve] = []
    request.node.e2e_serves = started

    def start(
        env: dict[str, str | None] | None = None,
        *,
        args: tuple[str, ...] = (),
        wait: bool = True,
        timeout: float = 30,
    ) -> Serve:
        values: dict[str, str | None] = {
            "DATA_DIR": str(tmp_path / "data"),
            "API_TOKEN": TOKEN,
            "HTTP_ALLOWLIST": "127.0.0.1",
            "LEASE_MS": "2000",
            "RECONCILE_INTERVAL_MS": "500",
            **(env or {}),
        }
        serve = Serve(tmp_path, values, args=args, name=f"serve{len(started)}")
        started.append(serve)
        return serve.wait_ready(timeout) if wait else serve

    yield start
    for serve in reversed(started):
        serve.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[Any]:
    outcome = yield
    report = outcome.get_result()
    serves: list[Serve] = getattr(item, "e2e_serves", [])
    if report.failed and call.when == "call":
        for n, serve in enumerate(serves):
            report.sections.append((f"serve{n} output", serve.logs()))


@pytest.fixture
def private_pg_url() -> Iterator[str]:
    """A new, EMPTY PostgreSQL database of this test's own (serve migrates it), dropped after."""
    with fresh_database("we_e2e") as url:
        yield url
