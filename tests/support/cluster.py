"""A distributed deployment in processes: one `serve` and N `workflow-engine workers`, sharing a
PostgreSQL database and a Redis, started as a user starts them (environment variables)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.process import EngineProcess, Serve, clean_env


class Workers(EngineProcess):
    """One `workflow-engine workers` process."""

    def __init__(
        self, workdir: Path, env: dict[str, str | None], *, name: str, args: tuple[str, ...] = ()
    ) -> None:
        super().__init__("workers", workdir, clean_env(env), args=args, name=name)

    def wait_ready(self, timeout: float = 30) -> Workers:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "All systems ready" in self.stdout():
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited early\n{self.logs()}")
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready after {timeout} s\n{self.logs()}")


class Cluster:
    """serve + workers on one database and one Redis; everything stopped by `stop()`."""

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str,
        redis_url: str,
        env: dict[str, str | None] | None = None,
    ) -> None:
        self.workdir = workdir
        self.env: dict[str, str | None] = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DATA_DIR": str(workdir / "data"),
            "API_TOKEN": "cluster-token",
            "HTTP_ALLOWLIST": "127.0.0.1",
            "LEASE_MS": "3000",
            "RECONCILE_INTERVAL_MS": "500",
            "SHUTDOWN_GRACE_MS": "5000",
            # No metrics endpoint unless a test asks for one on a port of its own: several
            # workers processes (and other test runs) share this machine's ports.
            "METRICS_PORT": "0",
            **(env or {}),
        }
        self.serve: Serve | None = None
        self.workers: list[Workers] = []

    def start_serve(self) -> Serve:
        self.serve = Serve(self.workdir, self.env, name="serve").wait_ready()
        return self.serve

    def start_workers(
        self,
        count: int = 1,
        *,
        env: dict[str, str | None] | None = None,
        args: tuple[str, ...] = (),
    ) -> list[Workers]:
        started = [
            Workers(
                self.workdir,
                {**self.env, **(env or {})},
                name=f"workers{len(self.workers) + n}",
                args=args,
            )
            for n in range(count)
        ]
        for workers in started:
            workers.wait_ready()
        self.workers += started
        return started

    def start(self, *, workers: int) -> Serve:
        """`serve` and `workers` processes of `workers`, all ready; returns `serve`."""
        serve = self.start_serve()
        self.start_workers(workers)
        return serve

    def logs(self) -> str:
        parts = [w.logs() for w in self.workers]
        if self.serve is not None:
            parts.append(self.serve.logs())
        return "\n".join(parts)

    def stop(self) -> None:
        for workers in self.workers:
            workers.stop()
        if self.serve is not None:
            self.serve.stop()
