"""Private Redis and PostgreSQL servers for tests that stop or restart them.

They listen on free loopback ports, keep their data under a temporary folder, and are always
stopped by their owner: the machine's shared services are never touched.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.process import free_port
from tests.support.services import in_ci, reachable


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _missing(what: str) -> None:
    import pytest

    message = f"{what} is not installed on this machine"
    if in_ci():
        pytest.fail(f"{message} (CI=true: these tests must run)")
    pytest.skip(message)


def _wait_port(port: int, up: bool, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reachable("127.0.0.1", port) == up:
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} still {'closed' if up else 'open'} after {timeout} s")


class RedisServer:
    """`redis-server` that keeps nothing on disk (like the machine's)."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            _missing("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port, up=True)
        return self

    def stop(self) -> None:
        """Shut down without saving: every queued job is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        _wait_port(self.port, up=False)


class PostgresServer:
    """A PostgreSQL cluster of its own (trust auth), run as the `postgres` user."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        if self.bin is None:
            _missing("PostgreSQL server binaries")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="we-pg-"))
        os.chmod(self.dir, 0o777)
        self.data = self.dir / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_postgres:
            shutil.chown(self.dir, "postgres")
        subprocess.run(
            [
                *self._as_postgres,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> PostgresServer:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off "
            "-c max_connections=200"
        )
        subprocess.run(
            [
                *self._as_postgres,
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.dir / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return self

    def stop(self) -> None:
        subprocess.run(
            [
                *self._as_postgres,
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            check=False,
            capture_output=True,
            timeout=60,
        )
        _wait_port(self.port, up=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
