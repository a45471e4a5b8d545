"""Flow control's pure parts: the document's `concurrency` and `debounce`, the key rendering,
and our priority as BullMQ's."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.engine.flow_keys import render_key
from workflow_engine.queue.bullmq import priority_options

STEPS = [{"key": "t", "type": "transform", "config": {"output": 1}}]


def document(**extra: Any) -> dict[str, Any]:
    return {"name": "flow", "steps": STEPS, **extra}


def test_concurrency_and_debounce_are_read_and_kept() -> None:
    definition = WorkflowDefinition.model_validate(
        document(
            concurrency={"key": "{{ input.tenantId }}", "limit": 2},
            triggers=[
                {
                    "type": "event",
                    "event": "e",
                    "debounce": {"key": "{{ input.id }}", "periodMs": 5},
                },
                {"type": "webhook", "debounce": {"periodMs": 5000}},
            ],
        )
    )
    stored = definition.document()
    assert stored["concurrency"] == {"key": "{{ input.tenantId }}", "limit": 2}
    assert stored["triggers"][0]["debounce"] == {"key": "{{ input.id }}", "periodMs": 5}
    assert stored["triggers"][1]["debounce"] == {"key": "", "periodMs": 5000}
    assert "concurrency" not in WorkflowDefinition.model_validate(document()).document()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"concurrency": {"key": "{{ input.t }}", "limit": 0}}, "limit"),
        ({"concurrency": {"key": "", "limit": 2}}, "key"),
        ({"concurrency": {"key": "x", "limit": 2, "per": "minute"}}, "per"),
        ({"triggers": [{"type": "event", "event": "e", "debounce": {"periodMs": 0}}]}, "periodMs"),
        ({"triggers": [{"type": "schedule", "cron": "* * * * *", "debounce": {}}]}, "debounce"),
    ],
)
def test_bad_flow_control_is_refused(extra: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as raised:
        WorkflowDefinition.model_validate(document(**extra))
    assert says in str(raised.value)


async def test_keys_are_text_and_a_missing_value_is_the_empty_key() -> None:
    assert await render_key("{{ input.tenantId }}", {"tenantId": "acme"}) == "acme"
    assert await render_key("{{ input.n }}", {"n": 7}) == "7"
    assert await render_key("{{ input.a }}-{{ input.b }}", {"a": 1, "b": "x"}) == "1-x"
    assert await render_key("{{ input.tenantId }}", {}) == ""
    assert await render_key("{{ input.tenantId }}", {"tenantId": None}) == ""
    assert len(await render_key("{{ input.long }}", {"long": "k" * 1000})) == 255


def test_our_priorities_map_onto_where_bullmq_keeps_a_job() -> None:
    # The default stays in `wait` (the seed's LLEN), higher at its head, lower after it.
    assert priority_options(5) == {}
    assert priority_options(10) == priority_options(6) == {"lifo": True}
    assert [priority_options(p)["priority"] for p in (4, 1)] == [1, 4]
