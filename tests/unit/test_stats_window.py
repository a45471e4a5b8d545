"""The charts' windows (storage/stats.py): buckets start on whole minutes or quarter hours and the
last one is the one `now` is in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workflow_engine.storage.stats import WINDOWS


def test_the_hour_ends_with_the_current_minute() -> None:
    hour = WINDOWS["1h"]
    assert hour.bucket_count == 60
    now = datetime(2026, 3, 1, 12, 0, 30, 500_000, tzinfo=UTC)
    start, end = hour.bounds(now)
    assert end == datetime(2026, 3, 1, 12, 1, tzinfo=UTC)
    assert end - start == timedelta(hours=1)
    # On the minute itself, that minute is the current bucket.
    assert hour.bounds(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))[1] == end


def test_the_day_in_quarter_hours() -> None:
    day = WINDOWS["24h"]
    assert day.bucket_count == 96
    start, end = day.bounds(datetime(2026, 3, 1, 12, 14, 59, tzinfo=UTC))
    assert (start, end) == (
        datetime(2026, 2, 28, 12, 15, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 15, tzinfo=UTC),
    )
