"""GET /api/step-types: built-ins and plugins with their config schemas, behind the token and
documented in the OpenAPI; a plugin from STEP_MODULES runs in-process (SQLite)."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import StartEngine
from tests.support.plugins import FIXTURE, MODULE, SHOUT_WORKFLOW

pytestmark = pytest.mark.timeout(60)


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'engine.db'}"


@pytest.fixture
def shout_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The fixture plugin's module importable (no distribution, so no entry point)."""
    folder = tmp_path / "modules"
    folder.mkdir()
    shutil.copy(FIXTURE / f"{MODULE}.py", folder)
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    yield MODULE
    sys.modules.pop(MODULE, None)


async def test_the_builtins_sorted_with_their_schemas(
    tmp_path: Path, start_engine: StartEngine
) -> None:
    running = await start_engine(sqlite(tmp_path))
    response = await running.client.get("/api/step-types")
    assert response.status_code == 200, response.text
    types = response.json()["stepTypes"]
    assert [t["name"] for t in types] == [
        "approval",
        "delay",
        "fail",
        "http",
        "llm",
        "log",
        "map",
        "transform",
        "wait",
        "workflow",
    ]
    assert all(t["source"] == "builtin" and t["description"] for t in types)
    delay = types[1]
    assert delay["description"] == 'Wait `ms` milliseconds; output is `{"delayedMs": ms}`.'
    assert delay["configSchema"]["required"] == ["ms"]
    assert delay["configSchema"]["additionalProperties"] is False
    http = types[3]["configSchema"]["properties"]
    assert "json" in http and "url" in http  # by alias, as a document writes it


async def test_needs_the_token_and_is_in_the_openapi(
    tmp_path: Path, start_engine: StartEngine
) -> None:
    running = await start_engine(sqlite(tmp_path))
    wrong = {"Authorization": "Bearer not-the-token"}
    assert (await running.client.get("/api/step-types", headers=wrong)).status_code == 401
    spec = (await running.client.get("/openapi.json")).json()
    ok = spec["paths"]["/api/step-types"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StepTypeList"
    }
    info = spec["components"]["schemas"]["StepTypeInfo"]
    assert set(info["required"]) == {"name", "description", "source", "configSchema"}


async def test_a_step_module_plugin_is_listed_and_runs(
    tmp_path: Path, start_engine: StartEngine, shout_module: str
) -> None:
    running = await start_engine(sqlite(tmp_path), step_modules=[shout_module])
    types = (await running.client.get("/api/step-types")).json()["stepTypes"]
    shout = next(t for t in types if t["name"] == "shout")
    assert shout["source"] == MODULE
    assert shout["configSchema"]["properties"]["text"]["type"] == "string"
    await running.create_workflow(SHOUT_WORKFLOW)
    execution = await running.wait(await running.execute("shout-it", {"name": "ada"}))
    assert execution["status"] == "completed", execution
    assert execution["output"] == {"text": "HELLO ADA!"}
    # A config the plugin's model refuses fails the step without retrying it.
    bad = {**SHOUT_WORKFLOW, "name": "shout-bad"}
    bad["steps"] = [{"key": "loud", "type": "shout", "config": {"txt": "x"}}]
    await running.create_workflow(bad)
    failed = await running.wait(await running.execute("shout-bad"))
    assert failed["status"] == "failed" and "text" in failed["error"], failed


async def test_an_unknown_type_is_still_a_422(tmp_path: Path, start_engine: StartEngine) -> None:
    running = await start_engine(sqlite(tmp_path))
    response = await running.client.post("/api/workflows", json=SHOUT_WORKFLOW)
    assert response.status_code == 422, response.text
    assert "unknown step type 'shout'" in response.text
    editor = await running.client.post(
        "/api/ui/editor",
        json={"text": "name: x\nsteps:\n  - key: a\n    type: shout\n", "dryRun": True},
    )
    assert editor.status_code == 422
    assert "unknown step type 'shout'" in editor.json()["errors"][0]["message"]
