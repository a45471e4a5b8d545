"""The private hooks of bullmq and SQLAlchemy that we override (issue 12, point 9): both are pinned
exactly, the installed versions have every hook, and a version without one (faked here by removing
or changing it) stops the engine with an error naming the library, its version and the hook."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from bullmq import Worker
from bullmq.backends.redis_backend import RedisBackend
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_cursor
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection

from workflow_engine import bootstrap
from workflow_engine.errors import ConfigurationError
from workflow_engine.private_hooks import check_sqlalchemy_sqlite
from workflow_engine.queue import bullmq as bull_queue
from workflow_engine.queue.base import EXECUTION_OPTIONS
from workflow_engine.settings import Settings

REPO = Path(__file__).resolve().parents[2]
PINNED = {"bullmq": "bullmq", "sqlalchemy": "sqlalchemy[asyncio]"}


def _pyproject_pins() -> dict[str, str]:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for library, requirement in PINNED.items():
        matching = [d for d in dependencies if d.split("==")[0].split(">")[0] == requirement]
        assert len(matching) == 1, f"{requirement} is not in pyproject.toml's dependencies"
        assert "==" in matching[0], f"{matching[0]}: private hooks need an exact pin"
        pins[library] = matching[0].split("==")[1]
    return pins


@pytest.mark.parametrize("library", sorted(PINNED))
def test_pinned_exactly_and_the_same_everywhere(library: str) -> None:
    pin = _pyproject_pins()[library]
    for lock in ("requirements.txt", "requirements-runtime.txt"):
        text = (REPO / lock).read_text()
        assert re.search(rf"^{library}=={re.escape(pin)}$", text, re.M), f"{lock}: {library}"
    assert importlib.metadata.version(library) == pin


def test_the_installed_versions_have_every_hook() -> None:
    bull_queue.check_hooks()
    check_sqlalchemy_sqlite()


def _fails_naming(check: Any, *words: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        check()
    message = str(caught.value)
    for word in words:
        assert word in message, message
    return message


def test_a_missing_bullmq_hook_is_named_with_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(Worker, "getNextJob")
    message = _fails_naming(
        bull_queue.check_hooks,
        "bullmq 3.",
        importlib.metadata.version("bullmq"),
        "bullmq.worker.Worker.getNextJob is missing",
        "queue/bullmq.py",
    )
    assert "pinned in pyproject.toml" in message


def test_a_changed_bullmq_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    async def process_job(self: Any, job: Any) -> None:
        await self.backend.moveToCompleted(job, None, False, "t", fetch_next=False)

    monkeypatch.setattr(Worker, "processJob", process_job)
    _fails_naming(
        bull_queue.check_hooks,
        "Worker.processJob has the signature (self, job), expected (self, job, token)",
    )


def test_a_bullmq_that_no_longer_completes_through_the_backend_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Same signature, but the job is completed some other way: our fetch-on-completion would
    # never run, silently. The check reads the source.
    async def process_job(self: Any, job: Any, token: str) -> None:
        await job.moveToCompleted(None, token)

    monkeypatch.setattr(Worker, "processJob", process_job)
    _fails_naming(
        bull_queue.check_hooks, "processJob no longer contains `self.backend.moveToCompleted(`"
    )


def test_a_changed_backend_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    async def move_to_completed(self: Any, job: Any, return_value: Any, token: str) -> Any:
        return {"result": None}

    monkeypatch.setattr(RedisBackend, "moveToCompleted", move_to_completed)
    _fails_naming(bull_queue.check_hooks, "RedisBackend.moveToCompleted has the signature")


def test_a_bullmq_queue_is_not_made_without_its_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The start-up check: before any connection (nothing listens on that port)."""
    monkeypatch.delattr(Worker, "nextJobFromJobData")
    _fails_naming(
        lambda: bull_queue.BullMQQueue(
            "q", EXECUTION_OPTIONS, redis_url="redis://127.0.0.1:9", job_timeout_ms=1000
        ),
        "bullmq",
        "nextJobFromJobData is missing",
    )


def test_a_missing_sqlalchemy_hook_is_named_with_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(AsyncAdapt_aiosqlite_connection, "create_function")
    _fails_naming(
        check_sqlalchemy_sqlite,
        f"sqlalchemy {importlib.metadata.version('sqlalchemy')}",
        "AsyncAdapt_aiosqlite_connection.create_function is missing",
        "storage/sqlite_inline.py",
    )


def test_a_changed_isolation_level_setter_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def set_level(self: Any, value: Any) -> None:
        self._connection.isolation_level = value  # no longer through aiosqlite's queue

    monkeypatch.setattr(
        AsyncAdapt_aiosqlite_connection,
        "isolation_level",
        property(lambda self: None, set_level),
    )
    _fails_naming(check_sqlalchemy_sqlite, "isolation_level no longer contains `_connection._tx")


def test_a_new_call_on_the_cursor_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade whose adapter calls something our inline cursor does not have."""

    class Upgraded(AsyncAdapt_dbapi_cursor):
        def scroll(self, value: int) -> None:
            self._cursor.scroll(value)

    monkeypatch.setattr("sqlalchemy.connectors.asyncio.AsyncAdapt_dbapi_cursor", Upgraded)
    _fails_naming(
        check_sqlalchemy_sqlite, "uses `self._cursor.scroll`, which _Cursor does not provide"
    )


async def test_the_embedded_engine_does_not_start_without_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delattr(AsyncAdapt_aiosqlite_connection, "create_function")
    settings = Settings(data_dir=tmp_path, _env_file=None)
    with pytest.raises(ConfigurationError, match=r"sqlalchemy 2\..*create_function is missing"):
        await bootstrap.build(settings)
    assert not (tmp_path / "workflow-engine.db").exists()  # refused before opening anything
