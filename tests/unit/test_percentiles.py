"""Percentiles (domain/percentiles.py): exact ones as PostgreSQL's percentile_cont, and the
rollup's histograms, which add up and read within 1% of the exact value."""

from __future__ import annotations

import random

import pytest

from workflow_engine.domain.percentiles import Histogram, percentile_cont


def test_percentile_cont_interpolates_between_ranks() -> None:
    assert percentile_cont([], 0.5) is None
    assert percentile_cont([7.0], 0.95) == 7.0
    assert percentile_cont([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0
    assert percentile_cont([10.0, 20.0, 30.0, 40.0], 0.95) == pytest.approx(38.5)
    assert percentile_cont([2.0, 400.0], 0.5) == 201.0


@pytest.mark.parametrize("seed", range(5))
def test_a_histogram_reads_within_one_percent(seed: int) -> None:
    rng = random.Random(seed)
    durations = sorted(rng.lognormvariate(5, 1.5) for _ in range(rng.randint(1, 3000)))
    histogram = Histogram.of(durations)
    for q in (0.5, 0.95):
        exact = percentile_cont(durations, q)
        assert exact is not None
        assert histogram.quantile(q) == pytest.approx(exact, rel=0.011)


def test_histograms_add_up_and_round_trip_as_json() -> None:
    a = Histogram.of([0, 0.5, 1, 5, 250, 250])
    b = Histogram.of([5, 3_600_000])
    merged = Histogram.from_json(a.to_json())
    merged.merge(Histogram.from_json(b.to_json()))
    assert merged.count == 8
    assert merged.bins == Histogram.of([0, 0.5, 1, 5, 250, 250, 5, 3_600_000]).bins
    assert Histogram().quantile(0.5) is None
    assert Histogram.of([0, 0]).quantile(0.5) == 0.0
    assert Histogram.of([1]).quantile(0.5) == 1.0
