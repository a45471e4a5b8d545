"""CPU time the engine spends per execution, in one process (embedded mode): a figure that the
machine's other load barely moves, unlike throughput. Run it with any checkout's venv to compare
two versions of the engine in one sitting:

    .venv/bin/python bench/cpu_per_execution.py [--database-url URL] [--count 300] [--rounds 5]

It starts the engine in-process (SQLite in a temporary folder unless --database-url is given),
runs `count` executions of a 1-step and of a 10-step `transform` workflow, `concurrency` at a
time, and prints the process CPU time per execution (median of the rounds) and per step.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from workflow_engine.bootstrap import build
from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.settings import Settings


def workflow(name: str, steps: int) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate(
        {
            "name": name,
            "steps": [
                {"key": f"s{i}", "type": "transform", "config": {"output": {"i": i}}}
                for i in range(steps)
            ],
        }
    )


async def batch(engine: Any, name: str, count: int, concurrency: int) -> float:
    """CPU seconds for `count` executions of `name`, `concurrency` at a time; each must end
    `completed` (told by the engine's own final event, so waiting costs nothing)."""
    gate = asyncio.Semaphore(concurrency)
    finals: dict[str, asyncio.Future[str]] = {}

    async def on_event(event: Any) -> None:
        if event.type in ("completed", "failed", "cancelled"):
            future = finals.setdefault(event.execution_id, asyncio.Future())
            if not future.done():
                future.set_result(event.type)

    async def one() -> None:
        async with gate:
            started = await engine.service.execute(name, {})
            future = finals.setdefault(started.execution_id, asyncio.Future())
            status = await asyncio.wait_for(future, 60)
            assert status == "completed", status

    unsubscribe = engine.bus.subscribe(on_event)
    cpu = time.process_time()
    try:
        await asyncio.gather(*(one() for _ in range(count)))
    finally:
        unsubscribe()
    return time.process_time() - cpu


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=Path(tmp), database_url=url, _env_file=None)  # type: ignore[call-arg]
        engine = await build(settings)
        await engine.start_workers(concurrency=args.concurrency, say=lambda _: None)
        tag = str(int(time.time()))
        try:
            for steps in (1, 10):
                await engine.service.create_workflow(workflow(f"cpu-{steps}-{tag}", steps))
            figures: dict[int, list[float]] = {1: [], 10: []}
            await batch(engine, f"cpu-1-{tag}", 50, args.concurrency)  # warm up
            for _ in range(args.rounds):
                for steps in (1, 10):
                    seconds = await batch(
                        engine, f"cpu-{steps}-{tag}", args.count, args.concurrency
                    )
                    figures[steps].append(seconds / args.count * 1000)
        finally:
            await engine.stop(grace_s=1)
    one, ten = statistics.median(figures[1]), statistics.median(figures[10])
    print(f"CPU per 1-step execution:  {one:.2f} ms (rounds: {_spread(figures[1])})")
    print(f"CPU per 10-step execution: {ten:.2f} ms (rounds: {_spread(figures[10])})")
    print(f"CPU per step:              {(ten - one) / 9:.3f} ms")


def _spread(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
