"""`workflow-engine serve` (embedded mode) runs a step type from an installed package, and a
STEP_MODULES it cannot import stops `serve` and `workers` with one clear line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import StartServe
from tests.support.plugins import FIXTURE, MODULE, check_shout, install_plugin
from tests.support.process import free_port, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

NO_MODULE = (
    "STEP_MODULES: cannot import 'no_such_steps': ModuleNotFoundError: "
    "No module named 'no_such_steps' (is it installed, or on PYTHONPATH?)"
)


def test_serve_runs_a_step_type_from_an_installed_package(
    tmp_path: Path, start_serve: StartServe
) -> None:
    site = install_plugin(tmp_path / "plugin")
    serve = start_serve({"PYTHONPATH": str(site)})
    with serve.client() as client:
        check_shout(client)


def test_the_same_step_type_through_step_modules(tmp_path: Path, start_serve: StartServe) -> None:
    modules = tmp_path / "modules"  # the module alone: no distribution, so no entry point
    modules.mkdir()
    shutil.copy(FIXTURE / f"{MODULE}.py", modules)
    serve = start_serve({"PYTHONPATH": str(modules), "STEP_MODULES": MODULE})
    with serve.client() as client:
        check_shout(client, source=MODULE)


def _assert_one_clear_line(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [NO_MODULE]  # no traceback, nothing else
    assert result.stdout == ""  # not even "Listening on": it stops before binding its port


def test_serve_with_a_step_module_that_does_not_exist(tmp_path: Path) -> None:
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "PORT": str(free_port()),
        "API_TOKEN": "t",
        "STEP_MODULES": "no_such_steps",
    }
    result = run_cli(["serve"], tmp_path, env, timeout=30)
    _assert_one_clear_line(result)


def test_workers_with_a_step_module_that_does_not_exist(tmp_path: Path) -> None:
    # Step types are checked before Redis is reached: no Redis is needed to see the error.
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "STEP_MODULES": "no_such_steps",
    }
    result = run_cli(["workers"], tmp_path, env, timeout=30)
    _assert_one_clear_line(result)
