"""A bounded property-based fuzz run of the whole API (schemathesis against /openapi.json):
no response may be a 5xx, and every response must match what the document says.

The fuzzer creates workflows whose http steps may point anywhere and runs them, so it and the
engine run in a network namespace of their own with only loopback (`unshare -n`), and the
engine has HTTP_ALLOWLIST_ONLY=true (tests/support/fuzz_api.py checks the isolation before it
starts anything). PostgreSQL is reached there through its Unix socket, which a network
namespace does not cut off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.databases import fresh_database
from tests.support.process import REPO
from tests.support.services import in_ci

pytestmark = pytest.mark.timeout(300)

PG_SOCKET_DIR = os.environ.get("TEST_PG_SOCKET_DIR", "/var/run/postgresql")
MAX_EXAMPLES = 25  # per operation and phase: about 1,800 requests, 45 s on 2 cores
MAX_SECONDS = 180


def _require(available: bool, why: str) -> None:
    if available:
        return
    if in_ci():
        pytest.fail(f"{why} (CI=true: the fuzz run must run)")
    pytest.skip(why)


def _can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_fuzzing_the_api_finds_no_server_error(database: str, tmp_path: Path) -> None:
    _require(_can_unshare(), "`unshare -n` is not permitted here (it needs root)")
    workdir = tmp_path / "fuzz"
    if database == "sqlite":
        run(f"sqlite:///{workdir / 'engine.db'}", workdir)
        return
    _require(Path(PG_SOCKET_DIR).is_dir(), f"no PostgreSQL socket in {PG_SOCKET_DIR}")
    with fresh_database("we_fuzz") as url:
        name = url.rsplit("/", 1)[1]
        run(f"postgresql:///{name}?host={PG_SOCKET_DIR}", workdir)


def run(database_url: str, workdir: Path) -> None:
    command = [
        "unshare",
        "-n",
        "--",
        sys.executable,
        "-m",
        "tests.support.fuzz_api",
        "--workdir",
        str(workdir),
        "--database",
        database_url,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-seconds",
        str(MAX_SECONDS),
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS + 90,
        stdin=subprocess.DEVNULL,
    )
    summary_path = workdir / "summary.json"
    assert summary_path.exists(), result.stdout + result.stderr
    summary = json.loads(summary_path.read_text())
    figures = {k: v for k, v in summary.items() if not k.endswith("_tail")}
    print(f"API fuzz run: {json.dumps(figures)}")  # shown with -s or -rA
    assert "error" not in summary, summary["error"]
    assert summary["server_errors"] == 0, summary.get("engine_log_tail", "")
    assert summary["tracebacks"] == 0, summary.get("engine_log_tail", "")
    assert summary["schemathesis_exit"] == 0, summary["schemathesis_tail"]
    assert result.returncode == 0, result.stdout + result.stderr
    # It reached the engine's logic, not only its validation: workflows made, executions run.
    by_status = summary["by_status"]
    assert summary["responses"] >= 1000, figures
    assert by_status.get("201", 0) > 0 and by_status.get("202", 0) > 0, figures
