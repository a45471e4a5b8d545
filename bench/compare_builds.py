"""Two builds of the engine side by side, measured in the same minutes: a figure that drift on
a shared machine (other load, a noisy neighbour) cannot tilt, unlike two `bench/run.py` runs one
after the other. About 6 minutes with the defaults:

    .venv/bin/python bench/compare_builds.py --before ../other-checkout [--after .] [--rounds 6]

Each build is a checkout with its own `.venv` (`make install` there). For each mode (embedded:
`serve` alone on SQLite; distributed: `serve` + one `workers` on PostgreSQL and Redis) both
builds' engines are started at once, each on a fresh database (and its own Redis database), and
batches of 1-step and of 10-step executions alternate between them, ABBA, `--rounds` each; every
execution is checked in the database as in `bench/run.py`. It prints each build's median rate
and the ratio after/before.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path

import engine_bench
from engine_bench import Cluster, throughput_run
from harness import BenchError, BenchRedis

MODES = (("embedded", 0, False), ("distributed-1w", 1, True))
BATCH = {("embedded", 1): 2500, ("embedded", 10): 800}
DISTRIBUTED_BATCH = {1: 1500, 10: 800}


async def start(label: str, checkout: Path, workers: int, redis_db: int, pg: bool) -> Cluster:
    binary = checkout / ".venv" / "bin" / "workflow-engine"
    if not binary.exists():
        raise BenchError(f"{binary} is missing: run `make install` in {checkout}")
    engine_bench.ENGINE_BIN = binary  # read by Cluster.start
    redis = None
    if workers:
        redis = BenchRedis(redis_db)
        await redis.claim()
    cluster = Cluster(label, workers, redis, concurrency=50)
    await cluster.start(postgres=pg)
    return cluster


async def mode(
    name: str, workers: int, pg: bool, builds: dict[str, Path], rounds: int, redis_db: int
) -> None:
    clusters: dict[str, Cluster] = {}
    try:
        for n, (label, checkout) in enumerate(builds.items()):
            clusters[label] = await start(
                f"cmp-{name}-{label}", checkout, workers, redis_db - n, pg
            )
        for steps in (1, 10):
            size = BATCH.get((name, steps)) or DISTRIBUTED_BATCH[steps]
            for cluster in clusters.values():
                await throughput_run(cluster, f"warm-{steps}", steps, size // 3, deadline_s=60)
            rates: dict[str, list[float]] = {label: [] for label in clusters}
            for r in range(rounds):
                order = list(clusters) if r % 2 == 0 else list(clusters)[::-1]
                for label in order:
                    run = await throughput_run(
                        clusters[label], f"r{steps}-{r}", steps, size, deadline_s=60
                    )
                    if run.completed != size:
                        raise BenchError(f"{label}: {run.completed} of {size} completed")
                    rates[label].append(run.rate)
            medians = {label: statistics.median(values) for label, values in rates.items()}
            shown = ", ".join(
                f"{label} {medians[label]:.0f}/s [{', '.join(f'{v:.0f}' for v in rates[label])}]"
                for label in rates
            )
            print(
                f"{name} {steps}-step: {shown}  after/before = "
                f"{medians['after'] / medians['before']:.2f}",
                flush=True,
            )
    finally:
        for cluster in clusters.values():
            await cluster.stop()


async def main(args: argparse.Namespace) -> None:
    builds = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, workers, pg in MODES:
        if args.only and name != args.only:
            continue
        await mode(name, workers, pg, builds, args.rounds, args.redis_db)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout with a .venv")
    parser.add_argument("--after", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--only", choices=[m[0] for m in MODES])
    parser.add_argument(
        "--redis-db",
        type=int,
        default=12,
        help="the distributed runs use this logical Redis database and the one below it",
    )
    asyncio.run(main(parser.parse_args()))
