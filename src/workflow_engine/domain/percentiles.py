"""Percentiles of durations: exact ones (what PostgreSQL's `percentile_cont` answers) and
approximate ones from a histogram that adds up (the charts' rollup of past quarter hours,
storage/stats_rollup.py, keeps one per quarter hour and merges them over a day)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


def percentile_cont(ordered: Sequence[float], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) of sorted values, interpolated linearly between the two
    closest ranks, as PostgreSQL's percentile_cont; None for no values."""
    if not ordered:
        return None
    return interpolate(dict(enumerate(ordered)), len(ordered), q)


def interpolate(by_rank: Mapping[int, float], n: int, q: float) -> float | None:
    """percentile_cont(q) of n sorted values, given those at the ranks (from 0) either side of
    position q * (n - 1) (the others may be left out)."""
    position = q * (n - 1)
    low = int(position)
    if low not in by_rank:
        return None
    if low + 1 >= n:
        return float(by_rank[low])
    return by_rank[low] + (by_rank[low + 1] - by_rank[low]) * (position - low)


GAMMA = 1.02
"""Bin k of a histogram holds the durations in (GAMMA^(k-1), GAMMA^k] ms: a value read from a
bin is within 1% of every duration in it."""
_LOG_GAMMA = math.log(GAMMA)


@dataclass
class Histogram:
    """Counts of durations (ms) by logarithmic bin; bin 0 holds those above 0 up to 1 ms, bin
    -1 those of 0 ms."""

    bins: dict[int, int] = field(default_factory=dict)

    @staticmethod
    def bin_of(ms: float) -> int:
        if ms <= 0:
            return -1
        return 0 if ms <= 1 else math.ceil(math.log(ms) / _LOG_GAMMA - 1e-9)

    @classmethod
    def of(cls, durations: Iterable[float]) -> Histogram:
        histogram = cls()
        for ms in durations:
            histogram.add(ms)
        return histogram

    @classmethod
    def from_json(cls, value: Mapping[str, int] | None) -> Histogram:
        return cls({int(k): int(v) for k, v in (value or {}).items()})

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in sorted(self.bins.items())}

    @property
    def count(self) -> int:
        return sum(self.bins.values())

    def add(self, ms: float, count: int = 1) -> None:
        k = self.bin_of(ms)
        self.bins[k] = self.bins.get(k, 0) + count

    def merge(self, other: Histogram) -> None:
        for k, v in other.bins.items():
            self.bins[k] = self.bins.get(k, 0) + v

    def quantile(self, q: float) -> float | None:
        """percentile_cont(q) of the durations counted, each read as its bin's value: within
        1% of the exact one. None when empty."""
        n = self.count
        if n == 0:
            return None
        position = q * (n - 1)
        low = int(position)
        wanted = {low, min(low + 1, n - 1)}
        by_rank: dict[int, float] = {}
        seen = 0
        for k in sorted(self.bins):
            first, seen = seen, seen + self.bins[k]
            for rank in wanted:
                if first <= rank < seen:
                    by_rank[rank] = _value_of(k)
            if len(by_rank) == len(wanted):
                break
        return interpolate(by_rank, n, q)


def _value_of(k: int) -> float:
    """What bin k stands for: within 1% of every duration in it (the middle, in ratio)."""
    if k <= 0:
        return float(k + 1)  # 0 ms, or 1 ms for (0, 1]
    return 2 * GAMMA**k / (GAMMA + 1)
