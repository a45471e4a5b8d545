"""Peer (c): DBOS on the same PostgreSQL (its system database is the bench's own database, given
by --pg-url), a workflow of 1 and of 10 no-op steps (async; every step's output is checkpointed
in PostgreSQL, as our engine stores every step). One process, up to `--concurrency` workflows at
once. One batch = run N workflows; throughput = workflows / s; checked in dbos.workflow_status and
dbos.operation_outputs at the end."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
import uuid
from typing import Any

import psycopg
from common import batch_size, emit, parser
from dbos import DBOS, DBOSConfig, SetWorkflowID


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    config: DBOSConfig = {
        "name": "wfbench",
        "system_database_url": args.pg_url,
        "log_level": "WARNING",
        "sys_db_pool_size": 20,
    }
    DBOS(config=config)
    logging.getLogger("dbos").setLevel(logging.WARNING)

    @DBOS.step()
    async def noop_step() -> bool:
        return True

    @DBOS.workflow()
    async def wf1() -> bool:
        return await noop_step()

    @DBOS.workflow()
    async def wf10() -> bool:
        ok = True
        for _ in range(10):
            ok = await noop_step() and ok
        return ok

    flows = {1: wf1, 10: wf10}
    DBOS.launch()

    async def batch(steps: int, n: int, tag: str) -> dict[str, Any]:
        gate = asyncio.Semaphore(args.concurrency)
        completed = 0

        async def one(i: int) -> None:
            nonlocal completed
            async with gate:
                with SetWorkflowID(f"{tag}-{i}"):
                    if await flows[steps]():
                        completed += 1

        start = time.perf_counter()
        timed_out = False
        try:
            await asyncio.wait_for(
                asyncio.gather(*(one(i) for i in range(n))), timeout=args.deadline_s
            )
        except TimeoutError:
            timed_out = True
        seconds = time.perf_counter() - start
        return {
            "n": n,
            "completed": completed,
            "seconds": seconds,
            "rate": completed / seconds,
            "timed_out": timed_out,
            "tag": tag,
        }

    async def run() -> dict[str, Any]:
        throughput: dict[str, list[dict[str, Any]]] = {}
        sequential: dict[str, list[float]] = {}
        for steps in (1, 10):
            warm = await batch(steps, args.warmup, f"w{steps}-{uuid.uuid4().hex[:6]}")
            n = batch_size(warm["rate"], args)
            runs = []
            for r in range(args.repeats):
                runs.append(await batch(steps, n, f"r{steps}-{r}-{uuid.uuid4().hex[:6]}"))
            throughput[str(steps)] = runs
            samples = []
            for _ in range(args.sequential):
                t0 = time.perf_counter()
                await flows[steps]()
                samples.append((time.perf_counter() - t0) * 1000)
            sequential[str(steps)] = samples
        return {"throughput": throughput, "sequential_ms": sequential}

    try:
        result = asyncio.run(run())
    finally:
        DBOS.destroy()
    # Every counted workflow is in the database, SUCCESS, with its step rows.
    with psycopg.connect(args.pg_url) as conn:
        for steps, runs in result["throughput"].items():
            for run_ in runs:
                row = conn.execute(
                    "SELECT count(*) FROM dbos.workflow_status w WHERE w.workflow_uuid LIKE %s"
                    " AND w.status = 'SUCCESS' AND (SELECT count(*) FROM dbos.operation_outputs o"
                    " WHERE o.workflow_uuid = w.workflow_uuid) = %s",
                    (run_["tag"] + "-%", int(steps)),
                ).fetchone()
                run_["verified"] = int(row[0]) if row else 0
    emit(
        {
            "peer": "dbos",
            "version": importlib.metadata.version("dbos"),
            "concurrency": args.concurrency,
            **result,
        }
    )


if __name__ == "__main__":
    main()
