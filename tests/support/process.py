"""Run `workflow-engine` as a user does: a separate process, configured by environment variables.

`Serve` starts `workflow-engine serve` on a free loopback port, waits for `/api/health`, keeps its
stdout and stderr in files (printed when a test fails) and is always stopped by its owner.
`run_cli` runs one short CLI command with a bounded wait.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from workflow_engine.settings import Settings

VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "workflow-engine")
REPO = Path(__file__).resolve().parents[2]
FINAL = {"completed", "failed", "cancelled"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(overrides: Mapping[str, str | None]) -> dict[str, str]:
    """The environment a user would have: ours minus every engine setting, plus `overrides`
    (a None value removes the variable)."""
    env = dict(os.environ)
    for name in Settings.model_fields:
        env.pop(name.upper(), None)
    env["PYTHONUNBUFFERED"] = "1"  # so the log files hold everything, even after kill -9
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class EngineProcess:
    """One `workflow-engine COMMAND` process with its output in files; always stopped by its
    owner (`stop`), with bounded waits everywhere."""

    def __init__(
        self, command: str, workdir: Path, env: dict[str, str], *, args: tuple[str, ...], name: str
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.env = env
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self._out = self.stdout_path.open("wb")
        self._err = self.stderr_path.open("wb")
        # cwd is a scratch folder so no `.env` of the developer's is read.
        self.proc = subprocess.Popen(
            [CLI, command, *args],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
        )

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        """The exit code; fails (and kills the process) if it runs past `timeout`."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} still running after {timeout} s\n" + self.logs()
            ) from None

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, then the exit code (bounded)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10) -> None:
        """Teardown: always leaves no process behind (a stopped one is woken up first)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._out.close()
        self._err.close()

    def stdout(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.stderr_path.read_text(errors="replace")

    def logs(self) -> str:
        state = "running" if self.proc.poll() is None else f"exit code {self.proc.returncode}"
        return (
            f"--- {self.name} pid {self.proc.pid} ({state}) ---\n"
            f"--- {self.stdout_path} ---\n{self.stdout()[-6000:]}\n"
            f"--- {self.stderr_path} ---\n{self.stderr()[-6000:]}"
        )


class Serve(EngineProcess):
    """One `workflow-engine serve` process on a free loopback port."""

    def __init__(
        self,
        workdir: Path,
        env: Mapping[str, str | None],
        *,
        args: tuple[str, ...] = (),
        name: str = "serve",
    ) -> None:
        self.port = int(env["PORT"]) if env.get("PORT") else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = clean_env({"HOST": "127.0.0.1", **env, "PORT": str(self.port)})
        self.token = full_env.get("API_TOKEN")
        super().__init__("serve", workdir, full_env, args=args, name=name)

    def wait_ready(self, timeout: float = 30) -> Serve:
        """Wait until /api/health answers 200; fail with the logs if the process dies first."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"serve exited with {self.proc.returncode} before it was ready\n"
                        + self.logs()
                    )
                try:
                    if client.get("/api/health").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"serve not ready after {timeout} s\n" + self.logs())

    def stop(self, timeout: float = 5) -> None:
        super().stop(timeout)

    # --- HTTP -----------------------------------------------------------------------------------

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        token = token or self.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=self.url, headers=headers, timeout=10, trust_env=False, **kwargs
        )

    def async_client(self, token: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        token = token or self.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=30, trust_env=False, **kwargs
        )


def wait_execution(
    client: httpx.Client, execution_id: str, *, timeout: float = 30, statuses: set[str] = FINAL
) -> dict[str, Any]:
    """Poll GET /api/executions/{id} until its status is in `statuses`; returns the body."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/api/executions/{execution_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in statuses:
            return body
        time.sleep(0.1)
    raise AssertionError(f"execution {execution_id} not in {statuses} after {timeout} s: {body}")


def run_cli(
    args: list[str], workdir: Path, env: Mapping[str, str | None], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `workflow-engine ARGS` to its end (bounded), capturing its output."""
    return subprocess.run(
        [CLI, *args],
        cwd=workdir,
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
