"""The test plugin (tests/fixtures/plugin_step: a `shout` step type) installed as a real package,
and the check that an engine runs it.

The package is pip-installed into a folder of its own (`--target`), never into the project's
venv: processes see it through `PYTHONPATH`, as they would see a package installed beside the
engine. pip builds it offline from a copy, so the repository stays clean.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support.process import REPO, wait_execution

FIXTURE = REPO / "tests" / "fixtures" / "plugin_step"
DISTRIBUTION = "workflow-engine-shout"
MODULE = "shout_step"

SHOUT_WORKFLOW: dict[str, Any] = {
    "name": "shout-it",
    "steps": [
        {"key": "greet", "type": "transform", "config": {"output": "hello {{ input.name }}"}},
        {"key": "loud", "type": "shout", "config": {"text": "{{ steps.greet.output }}!"}},
    ],
}


def install_plugin(folder: Path) -> Path:
    """Install the fixture package into `folder/site`; returns that folder (for PYTHONPATH)."""
    source = folder / "plugin_step"
    shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("__pycache__"))
    site = folder / "site"
    command = [
        *(sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"),
        *("--no-index", "--disable-pip-version-check", "--quiet", "--target", str(site)),
        str(source),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    assert (site / f"{MODULE}.py").exists(), sorted(p.name for p in site.iterdir())
    return site


def check_shout(client: httpx.Client, *, source: str = DISTRIBUTION) -> None:
    """The engine behind `client` lists `shout` (from `source`) and runs a workflow using it."""
    listed = client.get("/api/step-types")
    assert listed.status_code == 200, listed.text
    shout = {t["name"]: t for t in listed.json()["stepTypes"]}["shout"]
    assert shout["source"] == source
    assert shout["description"] == 'Upper-case `text`; output is `{"text": TEXT}`.'
    assert shout["configSchema"]["required"] == ["text"]
    created = client.post("/api/workflows", json=SHOUT_WORKFLOW)
    assert created.status_code == 201, created.text
    started = client.post("/api/workflows/shout-it/execute", json={"input": {"name": "ada"}})
    assert started.status_code == 202, started.text
    execution = wait_execution(client, started.json()["executionId"])
    assert execution["status"] == "completed", execution
    assert execution["output"] == {"text": "HELLO ADA!"}
    loud = {s["stepKey"]: s for s in execution["steps"]}["loud"]
    assert loud["output"] == {"text": "HELLO ADA!"}
