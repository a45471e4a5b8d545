"""The editor's errors that name a step (`step 'a' needs 'zzz', which is not a step key`, a cycle of
needs, an unknown step type): which step, where in the document (`steps.1.needs`) and on which
line of the text, so the editor can point at it."""

from __future__ import annotations

import re
from typing import Any

import yaml

STEP_NAMED = re.compile(r"^step '(?P<key>[A-Za-z_][A-Za-z0-9_]*)'")
NEEDS_KEY = re.compile(r"^step '[^']+' needs '(?P<need>[^']+)'")
PYDANTIC_PREFIX = "Value error, "


def _mapping_get(node: yaml.Node, name: str) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == name:
                return key, value
    return None


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _step_line(text: str, index: int, field: str | None, need: str | None) -> int | None:
    """The line of the step's `field` (of the bad name in its `needs` when given), or of the step
    itself. JSON is read as YAML here: it is one, near enough for line numbers."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return None
    found = _mapping_get(root, "steps") if root is not None else None
    if found is None or not isinstance(found[1], yaml.SequenceNode):
        return None
    items = found[1].value
    if index >= len(items):
        return None
    step = items[index]
    pair = _mapping_get(step, field) if field else None
    if pair is None:
        return _line(step)
    key_node, value = pair
    if need is not None and isinstance(value, yaml.SequenceNode):
        for item in value.value:
            if isinstance(item, yaml.ScalarNode) and item.value == need:
                return _line(item)
    return _line(key_node)


def locate(problem: dict[str, Any], document: dict[str, Any], text: str) -> dict[str, Any]:
    """`problem` ({loc, message, line}) with the step it names (`step`), its path and its line,
    when its message starts with `step '<key>'` and that key is in the document."""
    message = str(problem.get("message", ""))
    if message.startswith(PYDANTIC_PREFIX):
        message = message[len(PYDANTIC_PREFIX) :]
    located = {**problem, "message": message}
    match = STEP_NAMED.match(message)
    steps = document.get("steps")
    if not match or not isinstance(steps, list):
        return located
    key = match["key"]
    index = next(
        (i for i, s in enumerate(steps) if isinstance(s, dict) and s.get("key") == key), None
    )
    if index is None:
        return located
    field = "needs" if "needs" in message else "type" if "step type" in message else None
    need = NEEDS_KEY.match(message)
    located["step"] = key
    located["loc"] = f"steps.{index}" + (f".{field}" if field else "")
    line = _step_line(text, index, field, need["need"] if need else None)
    if line is not None:
        located["line"] = line
    return located
