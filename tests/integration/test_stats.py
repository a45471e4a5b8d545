"""Aggregates of finished executions (storage/stats.py, GET /api/stats), on SQLite and PostgreSQL:
executions finished at chosen times and with chosen statuses land in the right buckets, and the
percentiles are PostgreSQL's percentile_cont on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Running, StartEngine
from tests.support.finished import Finished, insert_finished
from workflow_engine.storage.stats import WINDOWS, ExecutionStats, Tally, execution_stats

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
"""The 1h window around it runs from 11:01 to 12:01 (the end of the current minute)."""


def at(hhmmss: str, day: int = 1) -> datetime:
    h, m, s = hhmmss.split(":")
    seconds = float(s)
    return datetime(2026, 3 if day == 1 else 2, day, int(h), int(m), tzinfo=UTC) + timedelta(
        seconds=seconds
    )


def percentile_cont(values: list[float], q: float) -> float:
    """What PostgreSQL's percentile_cont(q) answers for these values."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    if low + 1 >= len(ordered):
        return ordered[low]
    return ordered[low] + (ordered[low + 1] - ordered[low]) * (position - low)


async def two_workflows(running: Running) -> dict[str, tuple[str, str]]:
    """{name: (workflow id, version id)} of workflows `alpha` and `beta`."""
    found = {}
    for name in ("alpha", "beta"):
        body = await running.create_workflow(
            {"name": name, "steps": [{"key": "a", "type": "transform", "config": {"output": 1}}]}
        )
        found[name] = (body["id"], body["activeVersionId"])
    return found


def counts(tally: Tally) -> tuple[int, int, int]:
    return tally.completed, tally.failed, tally.cancelled


def bucket(stats: ExecutionStats, start: datetime) -> Tally:
    (tally,) = [t for s, t in stats.buckets if s == start]
    return tally


async def test_the_hour_in_minutes(db_url: str, start_engine: StartEngine) -> None:
    running = await start_engine(db_url)
    workflows = await two_workflows(running)
    db = running.engine.db
    await insert_finished(
        db,
        *workflows["alpha"],
        [
            Finished("completed", at("11:30:10"), 10),
            Finished("completed", at("11:30:20"), 20),
            Finished("failed", at("11:30:40"), 30),
            Finished("cancelled", at("11:30:59.999"), 40),
            Finished("completed", at("12:00:05"), 100),
            Finished("cancelled", at("11:01:00"), None),  # cancelled before it started
            # Outside the window: before its first minute, and at its end.
            Finished("completed", at("11:00:59.999"), 1),
            Finished("completed", at("12:01:00"), 1),
        ],
    )
    await insert_finished(
        db,
        *workflows["beta"],
        [Finished("failed", at("11:45:00"), 7), Finished("failed", at("11:45:01"), 9)],
    )
    async with db.read() as conn:
        stats = await execution_stats(conn, WINDOWS["1h"], now=NOW)

    assert (stats.start, stats.end) == (at("11:01:00"), at("12:01:00"))
    assert len(stats.buckets) == 60
    assert [s for s, _ in stats.buckets][:2] == [at("11:01:00"), at("11:02:00")]
    busy = bucket(stats, at("11:30:00"))
    assert counts(busy) == (2, 1, 1)
    assert (busy.p50_ms, busy.p95_ms) == (25.0, pytest.approx(38.5))
    last = bucket(stats, at("12:00:00"))
    assert counts(last) == (1, 0, 0) and (last.p50_ms, last.p95_ms) == (100.0, 100.0)
    first = bucket(stats, at("11:01:00"))
    assert counts(first) == (0, 0, 1) and (first.p50_ms, first.p95_ms) == (None, None)
    assert counts(bucket(stats, at("11:45:00"))) == (0, 2, 0)
    empty = [
        t
        for s, t in stats.buckets
        if s not in {at(x) for x in ("11:01:00", "11:30:00", "11:45:00", "12:00:00")}
    ]
    assert all(t.finished == 0 and t.p50_ms is None for t in empty) and len(empty) == 56

    durations = [10, 20, 30, 40, 100, 7, 9]
    assert counts(stats.total) == (3, 3, 2)
    assert stats.total.p50_ms == pytest.approx(percentile_cont(durations, 0.5))
    assert stats.total.p95_ms == pytest.approx(percentile_cont(durations, 0.95))
    alpha, beta = workflows["alpha"][0], workflows["beta"][0]
    assert set(stats.workflows) == {alpha, beta}
    assert counts(stats.workflows[alpha]) == (3, 1, 2)
    assert stats.workflows[alpha].failure_rate == pytest.approx(1 / 6)
    assert stats.workflows[beta].failure_rate == 1.0

    async with db.read() as conn:
        only_beta = await execution_stats(conn, WINDOWS["1h"], workflow_id=beta, now=NOW)
    assert counts(only_beta.total) == (0, 2, 0)
    assert set(only_beta.workflows) == {beta}
    assert (only_beta.total.p50_ms, only_beta.total.p95_ms) == (8.0, pytest.approx(8.9))
    assert counts(bucket(only_beta, at("11:30:00"))) == (0, 0, 0)


async def test_the_day_in_quarter_hours(db_url: str, start_engine: StartEngine) -> None:
    running = await start_engine(db_url)
    workflow_id, version_id = (await two_workflows(running))["alpha"]
    durations = list(range(1, 42))  # 41 executions in one quarter hour: interpolated ranks
    await insert_finished(
        running.engine.db,
        workflow_id,
        version_id,
        [
            Finished("completed", at("11:46:00") + timedelta(seconds=n), d)
            for n, d in enumerate(durations)
        ]
        + [
            Finished("failed", at("12:00:05"), 5000),
            Finished("completed", at("12:15:00", day=28), 3),  # the window's first instant
            Finished("completed", at("12:14:59", day=28), 3),  # just before it
        ],
    )
    async with running.engine.db.read() as conn:
        stats = await execution_stats(conn, WINDOWS["24h"], now=NOW)
    assert (stats.start, stats.end) == (at("12:15:00", day=28), at("12:15:00"))
    assert len(stats.buckets) == 96
    quarter = bucket(stats, at("11:45:00"))
    assert counts(quarter) == (41, 0, 0)
    assert quarter.p50_ms == percentile_cont(durations, 0.5) == 21
    assert quarter.p95_ms == pytest.approx(percentile_cont(durations, 0.95))
    assert counts(bucket(stats, at("12:00:00"))) == (0, 1, 0)
    assert counts(stats.buckets[0][1]) == (1, 0, 0)
    assert counts(stats.total) == (42, 1, 0)
    assert stats.total.p95_ms == pytest.approx(percentile_cont([*durations, 5000, 3], 0.95))


# --- the API ------------------------------------------------------------------------------------


def minute_of(value: datetime) -> str:
    return value.replace(second=0, microsecond=0).isoformat().replace("+00:00", "Z")


async def test_the_api_counts_what_finished(db_url: str, start_engine: StartEngine) -> None:
    running = await start_engine(db_url)
    workflows = await two_workflows(running)
    # Ten minutes ago, so the rows stay in the window (and in their bucket) if a minute turns.
    when = datetime.now(UTC) - timedelta(minutes=10)
    await insert_finished(
        running.engine.db,
        *workflows["alpha"],
        [Finished("completed", when, 10), Finished("failed", when, 20)],
    )
    await insert_finished(running.engine.db, *workflows["beta"], [Finished("completed", when, 30)])
    # And executions the engine runs itself.
    bad = await running.create_workflow(
        {
            "name": "gamma",
            "retryMaxAttempts": 1,
            "steps": [{"key": "a", "type": "fail", "config": {"message": "no"}}],
        }
    )
    for workflow in ("alpha", "gamma", "gamma"):
        await running.wait(await running.execute(workflow))

    response = await running.client.get("/api/stats")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["window"] == "1h" and body["workflowId"] is None and body["bucketSeconds"] == 60
    assert len(body["buckets"]) == 60
    (past,) = [b for b in body["buckets"] if b["start"] == minute_of(when)]
    assert (past["completed"], past["failed"], past["cancelled"]) == (2, 1, 0)
    assert past["finished"] == 3 and past["failureRate"] == pytest.approx(1 / 3)
    assert past["p50Ms"] == 20.0
    totals = body["totals"]
    assert (totals["completed"], totals["failed"], totals["cancelled"]) == (3, 3, 0)
    by_name = {w["name"]: w for w in body["workflows"]}
    assert [w["name"] for w in body["workflows"]] == ["gamma", "alpha", "beta"]  # by failure rate
    assert by_name["gamma"]["failureRate"] == 1.0 and by_name["gamma"]["workflowId"] == bad["id"]
    assert (by_name["alpha"]["completed"], by_name["alpha"]["failed"]) == (2, 1)
    assert by_name["beta"]["failureRate"] == 0.0

    one = (
        await running.client.get("/api/stats", params={"workflowId": "alpha", "window": "24h"})
    ).json()
    assert one["workflowId"] == workflows["alpha"][0] and one["bucketSeconds"] == 900
    assert len(one["buckets"]) == 96
    assert (one["totals"]["completed"], one["totals"]["failed"]) == (2, 1)
    assert [w["name"] for w in one["workflows"]] == ["alpha"]


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"window": "2h"}, 422, "window"),
        ({"window": ""}, 422, "window"),
        ({"workflowId": "no-such-workflow"}, 404, "not found"),
        ({"workflowId": "bad\x01name"}, 422, "workflowId"),
        ({"workflowId": "x" * 201}, 422, "workflowId"),
    ],
)
async def test_bad_parameters(
    db_url: str, start_engine: StartEngine, params: dict[str, str], status: int, message: str
) -> None:
    running = await start_engine(db_url)
    response = await running.client.get("/api/stats", params=params)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


async def test_empty_window(db_url: str, start_engine: StartEngine) -> None:
    running = await start_engine(db_url)
    body = (await running.client.get("/api/stats", params={"window": "24h"})).json()
    assert body["workflows"] == [] and len(body["buckets"]) == 96
    assert body["totals"] == {
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "finished": 0,
        "failureRate": None,
        "p50Ms": None,
        "p95Ms": None,
    }
