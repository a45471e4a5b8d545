from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from workflow_engine.domain.definition import (
    WorkflowDefinition,
    next_fire_time,
    validate_timezone,
)


def doc(**extra: Any) -> dict[str, Any]:
    return {"name": "w", "steps": [{"key": "a", "type": "transform"}], **extra}


def test_design_example_is_accepted() -> None:
    definition = WorkflowDefinition.model_validate(
        doc(
            description="d",
            retryMaxAttempts=3,
            retryBackoffMs=1000,
            timeoutMs=300000,
            rateLimitMaxConcurrent=None,
            rateLimitPerMinute=None,
            steps=[
                {"key": "greet", "name": "Greet", "type": "transform", "config": {"output": 1}},
                {
                    "key": "call",
                    "type": "http",
                    "if": "{{ input.call }}",
                    "retryMaxAttempts": 5,
                    "timeoutMs": 10000,
                    "config": {"url": "https://x"},
                },
            ],
            triggers=[{"type": "schedule", "cron": "*/5 * * * *", "timezone": "Europe/Paris"}],
        )
    )
    assert definition.steps[1].if_ == "{{ input.call }}"
    assert definition.document()["steps"][1]["if"] == "{{ input.call }}"


@pytest.mark.parametrize(
    "bad",
    [
        doc(unknown=1),
        doc(steps=[]),
        doc(steps=[{"key": "a", "type": "transform", "extra": 1}]),
        doc(steps=[{"key": "a", "type": "t"}, {"key": "a", "type": "t"}]),
        doc(steps=[{"key": "bad key", "type": "t"}]),
        doc(name=" "),
        doc(retryMaxAttempts=0),
        doc(triggers=[{"type": "schedule", "cron": "not a cron"}]),
        doc(triggers=[{"type": "schedule", "cron": "* * * * *", "timezone": "Mars/Base"}]),
        doc(triggers=[{"type": "carrier-pigeon"}]),
    ],
)
def test_invalid_documents_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        WorkflowDefinition.model_validate(bad)


def test_next_fire_time_honours_the_timezone() -> None:
    after = datetime(2026, 1, 1, 7, 30, tzinfo=UTC)  # 08:30 in Paris
    slot = next_fire_time("0 9 * * *", "Europe/Paris", after)
    assert slot.astimezone(UTC) == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "zone",
    [
        "a" * 300,  # longer than a file name: OSError from the file system, once a 500
        "Europe/" + "x" * 300,
        "Europe",  # a directory of the zone database
        "../../etc/passwd",
        "",
        "Europe/Paris\x00",
    ],
)
def test_a_timezone_that_is_no_zone_is_a_value_error(zone: str) -> None:
    with pytest.raises(ValueError, match="unknown timezone") as caught:
        validate_timezone(zone)
    assert len(str(caught.value)) < 120
    with pytest.raises(ValidationError):
        WorkflowDefinition.model_validate(
            doc(triggers=[{"type": "schedule", "cron": "* * * * *", "timezone": zone}])
        )


def test_the_longest_zone_names_are_accepted() -> None:
    assert validate_timezone("America/Argentina/ComodRivadavia").key.startswith("America")
