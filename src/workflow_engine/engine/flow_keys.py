"""The keys of flow control (`concurrency.key`, a trigger's `debounce.key`): a template over
the execution's (or the call's) input, rendered to text."""

from __future__ import annotations

import json
from typing import Any

from workflow_engine.engine import templates
from workflow_engine.errors import TemplateError
from workflow_engine.storage.flow import MAX_KEY_LENGTH


async def render_key(template: str, input: Any) -> str:
    """The key's text (a number's text for `{{ input.n }}`). An input the template cannot read
    (`input.tenantId` absent) gives the empty key: such inputs share one key rather than fail."""
    try:
        value = await templates.render_async(template, {"input": input})
    except TemplateError:
        return ""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:MAX_KEY_LENGTH]
