"""The duration `workflow-engine prune --older-than` takes, and what a pass reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workflow_engine.engine.retention import PruneReport, parse_age
from workflow_engine.storage.retention import Removed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        (" 7d ", timedelta(days=7)),
        ("1 h", timedelta(hours=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize(
    "text", ["30x", "30", "d", "-5d", "0d", "1.5h", "30D", "", "1d2h", "99999999999999d"]
)
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=f"invalid duration '{text}'"):
        parse_age(text)


def test_summaries() -> None:
    cutoff = datetime(2026, 1, 1, tzinfo=UTC)
    removed = Removed(executions=3, steps=4, logs=5, events=6)
    assert PruneReport(cutoff, removed, 0, 1.25).summary() == (
        "Removed 3 executions that finished before 2026-01-01T00:00:00+00:00, 18 rows in all "
        "(4 steps, 5 logs, 6 events) in 1.2 s"
    )
    assert PruneReport(cutoff, Removed(executions=3), 2, 0, dry_run=True).summary() == (
        "Would remove 3 executions that finished before 2026-01-01T00:00:00+00:00 (dry run: "
        "nothing removed); kept 2 held by unfinished executions"
    )
