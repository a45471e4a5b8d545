"""Aggregates of finished executions (storage/stats.py, GET /api/stats), on SQLite and PostgreSQL:
executions finished at chosen times and with chosen statuses land in the right buckets, and the
percentiles are PostgreSQL's percentile_cont on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Running, StartEngine
from tests.support.finished import Finished, insert_finished
from workflow_engine.storage import stats_rollup
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

    # Once the minutes that ended 10 minutes ago are rolled up (11:01 to 11:49), the hour reads
    # them from the rollup: the same counts and per-minute percentiles, and the hour's
    # percentiles within 2%.
    assert await settle_all(running, NOW, "1h") == 49
    async with db.read() as conn:
        rolled = await execution_stats(conn, WINDOWS["1h"], now=NOW)
        rolled_beta = await execution_stats(conn, WINDOWS["1h"], workflow_id=beta, now=NOW)
    for got, exact in ((rolled, stats), (rolled_beta, only_beta)):
        same_buckets(got, exact)
        assert got.total.p50_ms == pytest.approx(exact.total.p50_ms, rel=0.02)
        assert got.total.p95_ms == pytest.approx(exact.total.p95_ms, rel=0.02)


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


# --- the rollup of past quarter hours ---------------------------------------------------------


QUARTER = WINDOWS["24h"].bucket
MINUTE = WINDOWS["1h"].bucket


async def settle_all(running: Running, now: datetime, window: str = "24h") -> int:
    """Roll up every settled bucket of the window before `now`; how many there were."""
    period = WINDOWS[window]
    start, _ = period.bounds(now)
    async with running.engine.db.read() as conn:
        todo = await stats_rollup.unsettled(conn, period.bucket, start, now)
    async with running.engine.db.write() as conn:
        await stats_rollup.settle(conn, period.bucket, todo, now)
    return len(todo)


def same_buckets(a: ExecutionStats, b: ExecutionStats) -> None:
    assert [(s, counts(t), t.p50_ms, t.p95_ms) for s, t in a.buckets] == [
        (s, counts(t), t.p50_ms, t.p95_ms) for s, t in b.buckets
    ]
    assert {k: counts(t) for k, t in a.workflows.items()} == {
        k: counts(t) for k, t in b.workflows.items()
    }
    assert counts(a.total) == counts(b.total)


async def test_the_day_reads_settled_quarter_hours_from_the_rollup(
    db_url: str, start_engine: StartEngine
) -> None:
    running = await start_engine(db_url)
    workflows = await two_workflows(running)
    db = running.engine.db
    alpha = [
        Finished(
            ("completed", "failed", "cancelled")[n % 3],
            at("06:00:00") + timedelta(seconds=7 * n),
            5 + n * n,
        )
        for n in range(60)
    ]
    alpha += [Finished("completed", at("09:31:00"), None), Finished("failed", at("11:44:59"), 70)]
    alpha += [Finished("completed", at("11:46:00"), 12), Finished("failed", at("12:00:10"), 13)]
    await insert_finished(db, *workflows["alpha"], alpha)
    beta = [Finished("failed", at("06:05:00"), 400), Finished("completed", at("11:50:00"), 2)]
    await insert_finished(db, *workflows["beta"], beta)
    day = WINDOWS["24h"]
    async with db.read() as conn:
        direct = await execution_stats(conn, day, now=NOW)
        direct_beta = await execution_stats(conn, day, workflow_id=workflows["beta"][0], now=NOW)

    # The quarter hours that ended 10 minutes ago or more: up to 11:45 (NOW is 12:00:30).
    assert stats_rollup.settled_until(QUARTER, NOW) == at("11:45:00")
    assert await settle_all(running, NOW) == 96 - 2  # from 12:15 yesterday to 11:45
    assert await settle_all(running, NOW) == 0
    async with db.read() as conn:
        assert at("11:30:00") in await stats_rollup.rolled_up(
            conn, QUARTER, at("11:00:00"), at("12:15:00")
        )
        assert at("11:45:00") not in await stats_rollup.rolled_up(
            conn, QUARTER, at("11:00:00"), at("12:15:00")
        )
        rolled = await execution_stats(conn, day, now=NOW)
        rolled_beta = await execution_stats(conn, day, workflow_id=workflows["beta"][0], now=NOW)
    # The same counts and per-quarter percentiles, exactly; the day's percentiles within 2%.
    same_buckets(rolled, direct)
    same_buckets(rolled_beta, direct_beta)
    assert counts(rolled.total) == (23, 23, 20)
    for got, exact in ((rolled.total, direct.total), (rolled_beta.total, direct_beta.total)):
        assert got.p50_ms == pytest.approx(exact.p50_ms, rel=0.02)
        assert got.p95_ms == pytest.approx(exact.p95_ms, rel=0.02)
    assert bucket(rolled, at("06:00:00")).p95_ms == pytest.approx(
        percentile_cont([5 + n * n for n in range(60) if 7 * n < 900] + [400], 0.95)
    )

    # A process keeps what it read of the rollup (it never changes): the same answers.
    cache = stats_rollup.SummaryCache()
    async with db.read() as conn:
        for _ in range(2):
            cached = await execution_stats(conn, day, now=NOW, cache=cache)
            same_buckets(cached, rolled)
            assert (cached.total.p50_ms, cached.total.p95_ms) == (
                rolled.total.p50_ms,
                rolled.total.p95_ms,
            )

    # An execution written after its quarter hour was rolled up is not in the day's counts.
    await insert_finished(db, *workflows["beta"], [Finished("failed", at("06:10:00"), 1)])
    async with db.read() as conn:
        again = await execution_stats(conn, day, now=NOW)
    assert counts(again.total) == (23, 23, 20)

    # Rows older than two days go as new ones come.
    later = NOW + timedelta(days=3)
    await settle_all(running, later)
    async with db.read() as conn:
        assert await stats_rollup.rolled_up(conn, QUARTER, at("00:00:00"), at("23:59:00")) == set()


async def test_only_settled_buckets_are_rolled_up(db_url: str, start_engine: StartEngine) -> None:
    running = await start_engine(db_url)
    async with running.engine.db.write() as conn:
        with pytest.raises(ValueError, match="not settled"):
            await stats_rollup.settle(conn, QUARTER, [at("11:45:00")], NOW)
        with pytest.raises(ValueError, match="not settled"):
            await stats_rollup.settle(conn, MINUTE, [at("11:50:00")], NOW)


async def test_the_api_rolls_up_the_day(db_url: str, start_engine: StartEngine) -> None:
    running = await start_engine(db_url)
    workflows = await two_workflows(running)
    hours_ago = datetime.now(UTC) - timedelta(hours=3)
    await insert_finished(
        running.engine.db,
        *workflows["alpha"],
        [Finished("completed", hours_ago, 10), Finished("failed", hours_ago, 30)],
    )
    # Each request rolls up a few quarter hours (oldest first) and reads the rest from the
    # executions: the answer is the same all along.
    quarter = hours_ago.replace(minute=hours_ago.minute // 15 * 15, second=0, microsecond=0)
    requests = 0
    while True:
        body = (await running.client.get("/api/stats", params={"window": "24h"})).json()
        requests += 1
        assert (body["totals"]["completed"], body["totals"]["failed"]) == (1, 1)
        assert body["totals"]["p50Ms"] == pytest.approx(20, rel=0.02)
        (shown,) = [b for b in body["buckets"] if b["completed"] or b["failed"]]
        assert shown["start"] == quarter.isoformat().replace("+00:00", "Z")
        assert (shown["p50Ms"], shown["p95Ms"]) == (20.0, 29.0)
        async with running.engine.db.read() as conn:
            if quarter in await stats_rollup.rolled_up(
                conn, QUARTER, quarter, quarter + timedelta(minutes=1)
            ):
                break
        assert requests < 13, "the quarter hour was never rolled up"
    assert requests > 1
