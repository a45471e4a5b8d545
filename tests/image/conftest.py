"""Running the container image's own files without a container engine: `podman image mount`
gives its root file system, and `chroot --userspec` runs its entrypoint there as the image's user,
with the image's environment and working directory. The network is the host's (a chroot is no
namespace), so the processes reach the machine's PostgreSQL and a private Redis on 127.0.0.1.

`make test-image` builds the image and sets WORKFLOW_ENGINE_TEST_IMAGE; without it these tests
are skipped (they need root, podman and a built image)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

IMAGE_ENV = "WORKFLOW_ENGINE_TEST_IMAGE"


def image_under_test() -> str | None:
    return os.environ.get(IMAGE_ENV) or None


@dataclass(frozen=True)
class ImageConfig:
    """What `podman image inspect` says about how the image runs."""

    user: str
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    workdir: str
    exposed_ports: list[str]

    @classmethod
    def inspect(cls, image: str) -> ImageConfig:
        raw = subprocess.run(
            ["podman", "image", "inspect", "--format", "{{json .Config}}", image],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        config: dict[str, Any] = json.loads(raw)
        env = dict(item.split("=", 1) for item in config.get("Env") or [])
        return cls(
            user=config.get("User") or "",
            entrypoint=list(config.get("Entrypoint") or []),
            cmd=list(config.get("Cmd") or []),
            env=env,
            workdir=config.get("WorkingDir") or "/",
            exposed_ports=sorted(config.get("ExposedPorts") or {}),
        )


class ImageProcess:
    """The image's entrypoint (with `args`, or the image's CMD) run from its mounted files, as
    its user; output kept in files under `logdir`, printed when a test fails."""

    def __init__(
        self,
        root: Path,
        config: ImageConfig,
        *,
        env: dict[str, str],
        args: list[str] | None,
        logdir: Path,
        name: str,
    ) -> None:
        self.name = name
        self.stdout_path = logdir / f"{name}.stdout"
        self.stderr_path = logdir / f"{name}.stderr"
        self._out = self.stdout_path.open("wb")
        self._err = self.stderr_path.open("wb")
        variables = {**config.env, **env}
        argv = [
            "chroot",
            f"--userspec={config.user}",
            str(root),
            # The image's environment only (nothing of ours), in its working directory.
            "/usr/bin/env",
            "-i",
            f"--chdir={config.workdir}",
            *(f"{key}={value}" for key, value in variables.items()),
            *config.entrypoint,
            *(config.cmd if args is None else args),
        ]
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err
        )

    def uid(self) -> int:
        """The real uid the process runs as (chroot and env exec, so this is the engine)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
        raise AssertionError("no Uid line")

    def wait_output(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stdout():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited early\n{self.logs()}")
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no {text!r} after {timeout} s\n{self.logs()}")

    def wait_http(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=3, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited early\n{self.logs()}")
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise AssertionError(f"{url} not 200 after {timeout} s\n{self.logs()}")

    def wait_exit(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(
                f"{self.name} still running after {timeout} s\n{self.logs()}"
            ) from None

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()
        self._err.close()

    def stdout(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.stdout_path.read_text(errors="replace")

    def logs(self) -> str:
        if not self._err.closed:
            self._err.flush()
        state = "running" if self.proc.poll() is None else f"exit code {self.proc.returncode}"
        return (
            f"--- {self.name} ({state}): {' '.join(self.argv[:3])} ... "
            f"{' '.join(self.argv[-2:])} ---\n--- stdout ---\n{self.stdout()[-6000:]}\n"
            f"--- stderr ---\n{self.stderr_path.read_text(errors='replace')[-6000:]}"
        )


@pytest.fixture(scope="session")
def image() -> str:
    name = image_under_test()
    assert name, f"{IMAGE_ENV} is not set"  # the module's skipif makes this unreachable
    if os.geteuid() != 0:
        pytest.fail("the image tests mount the image and chroot into it: run them as root")
    return name


@pytest.fixture(scope="session")
def image_config(image: str) -> ImageConfig:
    return ImageConfig.inspect(image)


@pytest.fixture(scope="session")
def image_root(image: str) -> Iterator[Path]:
    """The image's files, mounted read-only (so the processes also prove they need no writable
    root file system); unmounted at the end."""
    mounted = subprocess.run(
        ["podman", "image", "mount", image], capture_output=True, text=True, timeout=120
    )
    assert mounted.returncode == 0, f"podman image mount {image}: {mounted.stderr}"
    try:
        yield Path(mounted.stdout.strip())
    finally:
        subprocess.run(["podman", "image", "unmount", image], capture_output=True, timeout=120)


class Processes:
    def __init__(self, root: Path, config: ImageConfig, logdir: Path) -> None:
        self.root = root
        self.config = config
        self.logdir = logdir
        self.started: list[ImageProcess] = []

    def start(self, name: str, env: dict[str, str], args: list[str] | None = None) -> ImageProcess:
        process = ImageProcess(
            self.root, self.config, env=env, args=args, logdir=self.logdir, name=name
        )
        self.started.append(process)
        return process


@pytest.fixture
def run_image(
    request: pytest.FixtureRequest, image_root: Path, image_config: ImageConfig, tmp_path: Path
) -> Iterator[Processes]:
    """`run_image.start(name, env, args)`: one process from the image; all stopped at the end."""
    processes = Processes(image_root, image_config, tmp_path)
    request.node.image_processes = processes.started
    yield processes
    for process in reversed(processes.started):
        process.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[Any]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        for process in getattr(item, "image_processes", []):
            report.sections.append((f"{process.name} output", process.logs()))
