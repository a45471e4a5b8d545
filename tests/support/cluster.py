"""A distributed deployment in processes: one `serve` and N `workflow-engine workers`, sharing a
PostgreSQL database and a Redis, started as a user starts them (environment variables)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.support.process import CLI, Serve, clean_env


class Workers:
    """One `workflow-engine workers` process."""

    def __init__(
        self, workdir: Path, env: dict[str, str | None], *, name: str, args: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self._out = self.stdout_path.open("wb")
        self._err = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [CLI, "workers", *args],
            cwd=workdir,
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
        )

    def wait_ready(self, timeout: float = 30) -> Workers:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "All systems ready" in self.stdout():
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited early\n{self.logs()}")
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready after {timeout} s\n{self.logs()}")

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} still running after {timeout} s") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._out.close()
        self._err.close()

    def stdout(self) -> str:
        self._out.flush()
        return self.stdout_path.read_text(errors="replace")

    def logs(self) -> str:
        self._err.flush()
        state = "running" if self.proc.poll() is None else f"exit code {self.proc.returncode}"
        return (
            f"--- {self.name} pid {self.proc.pid} ({state}) ---\n{self.stdout()[-4000:]}\n"
            f"--- stderr ---\n{self.stderr_path.read_text(errors='replace')[-6000:]}"
        )


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
