"""The plugin loader (steps/plugins.py) on tiny modules and distributions written for each test.

The modules are real files on a temporary `sys.path` entry and the entry points real
`*.dist-info` folders beside them, so the loader is tested through importlib as in production.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from workflow_engine.errors import ConfigurationError
from workflow_engine.settings import Settings
from workflow_engine.steps.plugins import GROUP, load_registry

SHOUT = '''
from typing import Any
from workflow_engine.steps.base import StepConfig, StepContext, StepType

class ShoutConfig(StepConfig):
    text: str

class ShoutStep(StepType):
    """Upper-case `text`.

    More words that the API does not show.
    """

    name = "{name}"
    config_model = ShoutConfig

    async def run(self, config: ShoutConfig, ctx: StepContext) -> Any:
        return {{"text": config.text.upper()}}
'''


def shout(name: str = "shout", extra: str = "STEP_TYPES = [ShoutStep]") -> str:
    return SHOUT.format(name=name) + "\n" + extra + "\n"


class Plugins:
    """Writes modules and dist-info folders into one folder on sys.path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def module(self, name: str, source: str) -> str:
        (self.root / f"{name}.py").write_text(textwrap.dedent(source))
        self.modules.append(name)
        importlib.invalidate_caches()
        return name

    def distribution(self, name: str, entry_points: dict[str, str]) -> None:
        info = self.root / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")
        importlib.invalidate_caches()


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plugins]:
    monkeypatch.syspath_prepend(str(tmp_path))
    made = Plugins(tmp_path)
    yield made
    for name in made.modules:
        sys.modules.pop(name, None)


def fails(modules: list[str]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_registry(modules)
    message = caught.value.message
    assert "\n" not in message
    return message


# --- good plugins ----------------------------------------------------------------------------


def test_without_plugins_only_the_builtins() -> None:
    registry = load_registry([])
    assert registry.names() == [
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
    assert {entry.source for entry in registry.entries()} == {"builtin"}


def test_a_module_listing_its_step_types(plugins: Plugins) -> None:
    plugins.module("good_steps", shout())
    registry = load_registry(["good_steps"])
    assert "shout" in registry.names()
    assert registry.source("shout") == "good_steps"
    (entry,) = [e for e in registry.entries() if e.name == "shout"]
    assert entry.description == "Upper-case `text`."
    assert entry.step_type.validate_config({"text": "hi"}).model_dump() == {"text": "hi"}


def test_a_module_may_list_instances(plugins: Plugins) -> None:
    plugins.module("instance_steps", shout(extra="STEP_TYPES = (ShoutStep(),)"))
    assert load_registry(["instance_steps"]).source("shout") == "instance_steps"


def test_an_entry_point_of_an_installed_distribution(plugins: Plugins) -> None:
    plugins.module("acme_shout", shout(extra=""))
    plugins.distribution("acme-steps", {"shout": "acme_shout:ShoutStep"})
    registry = load_registry([])
    assert registry.source("shout") == "acme-steps"
    assert registry.get("shout") is not None


# --- what is refused, and how it is said ----------------------------------------------------


def test_a_module_that_does_not_exist(plugins: Plugins) -> None:
    message = fails(["no_such_steps_module"])
    assert message == (
        "STEP_MODULES: cannot import 'no_such_steps_module': ModuleNotFoundError: "
        "No module named 'no_such_steps_module' (is it installed, or on PYTHONPATH?)"
    )


def test_a_module_that_fails_to_import(plugins: Plugins) -> None:
    plugins.module("broken_steps", "import a_dependency_that_is_missing\n")
    message = fails(["broken_steps"])
    assert message == (
        "STEP_MODULES: cannot import 'broken_steps': ModuleNotFoundError: "
        "No module named 'a_dependency_that_is_missing'"
    )


def test_a_module_that_raises_while_importing(plugins: Plugins) -> None:
    plugins.module("raising_steps", "raise RuntimeError('no API key\\nset one')\n")
    message = fails(["raising_steps"])
    assert message == (
        "STEP_MODULES: cannot import 'raising_steps': RuntimeError: no API key set one"
    )


def test_a_module_without_step_types(plugins: Plugins) -> None:
    plugins.module("empty_steps", shout(extra=""))
    assert fails(["empty_steps"]) == (
        "module 'empty_steps' (STEP_MODULES) has no STEP_TYPES: "
        "add `STEP_TYPES = [YourStep, ...]` to it"
    )


def test_step_types_that_are_not_a_list(plugins: Plugins) -> None:
    plugins.module("str_steps", shout(extra="STEP_TYPES = 'ShoutStep'"))
    assert "STEP_TYPES must be a list of StepType subclasses or instances, not a str" in fails(
        ["str_steps"]
    )


def test_a_listed_object_that_is_not_a_step_type(plugins: Plugins) -> None:
    plugins.module("func_steps", "def shout(text):\n    return text\nSTEP_TYPES = [shout]\n")
    assert fails(["func_steps"]) == (
        "module 'func_steps' (STEP_MODULES): function func_steps.shout is not a StepType "
        "subclass or instance (workflow_engine.steps.base.StepType)"
    )


def test_an_entry_point_that_is_not_a_step_type(plugins: Plugins) -> None:
    plugins.module("acme_helpers", "class Shout:\n    name = 'shout'\n")
    plugins.distribution("acme-helpers", {"shout": "acme_helpers:Shout"})
    assert fails([]) == (
        "entry point 'shout' (acme_helpers:Shout) of distribution 'acme-helpers': "
        "class acme_helpers.Shout is not a StepType subclass or instance "
        "(workflow_engine.steps.base.StepType)"
    )


def test_an_entry_point_that_cannot_be_loaded(plugins: Plugins) -> None:
    plugins.module("acme_typo", shout(extra=""))
    plugins.distribution("acme-typo", {"shout": "acme_typo:ShoutStp"})
    message = fails([])
    assert message.startswith(
        "entry point 'shout' (acme_typo:ShoutStp) of distribution 'acme-typo': cannot load it: "
        "AttributeError:"
    ), message


def test_an_entry_point_named_unlike_its_step_type(plugins: Plugins) -> None:
    plugins.module("acme_yell", shout(extra=""))
    plugins.distribution("acme-yell", {"yell": "acme_yell:ShoutStep"})
    assert fails([]) == (
        "entry point 'yell' (acme_yell:ShoutStep) of distribution 'acme-yell': class "
        "acme_yell.ShoutStep is named 'shout': the entry point must have its step type's name"
    )


def test_a_name_taken_by_a_builtin(plugins: Plugins) -> None:
    plugins.module("delay_steps", shout(name="delay"))
    assert fails(["delay_steps"]) == (
        "step type 'delay' is defined twice: by the built-in step types and by module "
        "'delay_steps' (STEP_MODULES); rename one of them"
    )


def test_a_name_taken_by_another_plugin(plugins: Plugins) -> None:
    plugins.module("acme_shout2", shout(extra=""))
    plugins.distribution("acme-steps", {"shout": "acme_shout2:ShoutStep"})
    plugins.module("other_shout", shout())
    assert fails(["other_shout"]) == (
        "step type 'shout' is defined twice: by entry point 'shout' (acme_shout2:ShoutStep) of "
        "distribution 'acme-steps' and by module 'other_shout' (STEP_MODULES); rename one of them"
    )


BASE = (
    "from typing import Any\n"
    "from pydantic import BaseModel\n"
    "from workflow_engine.steps.base import StepConfig, StepType\n"
    "class Config(StepConfig):\n    pass\n"
)
RUN = "    async def run(self, config: Any, ctx: Any) -> Any:\n        return None\n"


@pytest.mark.parametrize(
    ("listed", "body", "expected"),
    [
        (
            "Nameless",
            f"class Nameless(StepType):\n    config_model = Config\n{RUN}",
            "class bad_steps.Nameless has no `name`: a step type's name is a letter followed by "
            "letters, digits, '_', '.' or '-' (64 at most)",
        ),
        (
            "Spaced",
            f"class Spaced(StepType):\n    name = 'my step'\n    config_model = Config\n{RUN}",
            "class bad_steps.Spaced has an invalid `name` 'my step'",
        ),
        (
            "Numbered",
            f"class Numbered(StepType):\n    name = 42\n    config_model = Config\n{RUN}",
            "class bad_steps.Numbered has an invalid `name` 42",
        ),
        (
            "NoModel",
            f"class NoModel(StepType):\n    name = 'no_model'\n{RUN}",
            "class bad_steps.NoModel: `config_model` must be a StepConfig subclass "
            "(workflow_engine.steps.base.StepConfig), not None",
        ),
        (
            "PlainModel",
            "class Plain(BaseModel):\n    x: int = 0\n"
            f"class PlainModel(StepType):\n    name = 'plain'\n    config_model = Plain\n{RUN}",
            "class bad_steps.PlainModel: `config_model` must be a StepConfig subclass "
            "(workflow_engine.steps.base.StepConfig), not class bad_steps.Plain",
        ),
        (
            "Abstract",
            "class Abstract(StepType):\n    name = 'abstract'\n    config_model = Config\n",
            "cannot create class bad_steps.Abstract: TypeError: Can't instantiate abstract class",
        ),
    ],
    ids=["no-name", "bad-name", "name-not-str", "no-config-model", "not-step-config", "abstract"],
)
def test_a_step_type_that_is_not_well_formed(
    plugins: Plugins, listed: str, body: str, expected: str
) -> None:
    plugins.module("bad_steps", f"{BASE}{body}\nSTEP_TYPES = [{listed}]\n")
    message = fails(["bad_steps"])
    assert message.startswith("module 'bad_steps' (STEP_MODULES): "), message
    assert expected in message, message


def test_step_modules_setting_is_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEP_MODULES", " acme.steps, other ,, ")
    assert Settings(_env_file=None).step_modules == ["acme.steps", "other"]
    monkeypatch.delenv("STEP_MODULES")
    assert Settings(_env_file=None).step_modules == []
