"""Shared by the peer scripts (run with bench/.venv-peers/bin/python, never the product's venv).

Each script prints one line `RESULT <json>` on stdout. Counts are adaptive as in the engine's
runs: a warm-up batch gives a rate, a measured batch lasts about `target_s` seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    p.add_argument("--pg-url", default="")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--target-s", type=float, default=5.0, help="length of one measured batch")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--min-n", type=int, default=50)
    p.add_argument("--max-n", type=int, default=20000)
    p.add_argument("--sequential", type=int, default=20, help="runs one at a time, per workload")
    p.add_argument("--deadline-s", type=float, default=60.0, help="cap on one batch")
    p.add_argument("--concurrency", type=int, default=50)
    return p


def batch_size(warmup_rate: float, args: argparse.Namespace, steps: int = 1) -> int:
    del steps
    return max(args.min_n, min(args.max_n, int(warmup_rate * args.target_s)))


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
