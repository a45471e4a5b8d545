"""Fuzz the API with schemathesis, inside a network namespace of its own.

Run by tests/integration/test_api_fuzz.py as

    unshare -n -- python -m tests.support.fuzz_api --workdir DIR --database URL ...

The fuzzer creates workflows whose http steps may point anywhere and runs them, so this script
first makes sure nothing can leave the machine: it brings up the namespace's loopback and
refuses to go on unless loopback is the only interface and a public address is unreachable.
Then it starts `workflow-engine serve` (HTTP_ALLOWLIST_ONLY=true, HTTP_ALLOWLIST=127.0.0.1:
http steps reach loopback in this namespace, nothing else), runs `st run` against its
`/openapi.json` with a bounded number of examples and a deadline, stops the engine, and writes
`summary.json` in DIR: requests by status, duration, the server errors found (with the
engine's tracebacks) and schemathesis's own failures. Exit code 0 when there were none.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.process import VENV_BIN, Serve

TOKEN = "fuzz-token"
ISOLATION_PROBES = (("1.1.1.1", 80), ("8.8.8.8", 53))


class NotIsolated(Exception):
    pass


def isolate() -> None:
    """Bring `lo` up; raise NotIsolated unless it is the only interface and no public address
    is reachable (a connect to one fails at once: there is no route, so nothing is sent)."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    links = subprocess.run(
        ["ip", "-o", "link", "show"], check=True, capture_output=True, text=True, timeout=10
    ).stdout
    names = sorted({line.split(":")[1].strip().split("@")[0] for line in links.splitlines()})
    if names != ["lo"]:
        raise NotIsolated(f"interfaces besides loopback: {names}")
    routes = subprocess.run(
        ["ip", "route", "show"], check=True, capture_output=True, text=True, timeout=10
    ).stdout
    if routes.strip():
        raise NotIsolated(f"routes besides loopback: {routes!r}")
    for address in ISOLATION_PROBES:
        with socket.socket() as probe:
            probe.settimeout(1)
            try:
                probe.connect(address)
            except OSError:
                continue
        raise NotIsolated(f"{address[0]} is reachable")


SEED_STEPS: list[dict[str, Any]] = [
    {"key": "greet", "type": "transform", "config": {"output": {"m": "Hi {{ input.name }}"}}},
    {"key": "pause", "type": "delay", "config": {"ms": 50}},
]


def seed(engine: Serve) -> dict[str, list[str]]:
    """Workflows, triggers and executions for the fuzzer to find (its path parameters draw on
    them half of the time, see `config`): ids and names that exist, in every state."""
    found: dict[str, list[str]] = {"workflows": [], "executions": [], "triggers": []}
    with engine.client() as client:

        def create(name: str, steps: list[dict[str, Any]], **extra: Any) -> str:
            response = client.post("/api/workflows", json={"name": name, "steps": steps, **extra})
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            found["workflows"] += [body["id"], name]
            found["triggers"] += [t["id"] for t in body["triggers"]]
            return name

        health = {"url": f"{engine.url}/api/health"}  # reachable: listed, in this namespace
        names = [
            create(
                "fuzz-steps",
                [*SEED_STEPS, {"key": "call", "type": "http", "config": health}],
                triggers=[
                    {"type": "schedule", "cron": "0 3 * * *", "timezone": "Europe/Paris"},
                    {"type": "manual"},
                    {"type": "webhook"},
                ],
            ),
            create("fuzz-fails", [{"key": "boom", "type": "fail", "config": {"message": "x"}}]),
            create("fuzz-slow", [{"key": "wait", "type": "delay", "config": {"ms": 3000}}]),
        ]
        for name in names:
            for n in range(2):
                response = client.post(f"/api/workflows/{name}/execute", json={"input": {"n": n}})
                response.raise_for_status()
                found["executions"].append(response.json()["executionId"])
        archived = create("fuzz-archived", SEED_STEPS)
        client.delete(f"/api/workflows/{archived}").raise_for_status()
    return found


def config(found: dict[str, list[str]]) -> str:
    """schemathesis.toml: path and query parameters drawn from what `seed` made with some
    probability (else generated), and step types from the registry, so that generated
    requests get past "not found" and "unknown step type" often enough to test more."""
    dictionaries = {**found, "step_types": ["transform", "http", "delay", "log", "fail", "map"]}
    bindings = {
        "path.workflow_id": ("workflows", 0.6),
        "query.workflowId": ("workflows", 0.5),
        "path.execution_id": ("executions", 0.6),
        "path.trigger_id": ("triggers", 0.6),
        "body.steps[*].type": ("step_types", 0.8),
    }
    lines = [f'headers = {{ Authorization = "Bearer {TOKEN}" }}', "", "[dictionaries]"]
    lines += [
        f"{name} = {{ values = {json.dumps(values)} }}" for name, values in dictionaries.items()
    ]
    lines += ["", "[parameters]"]
    lines += [
        f'"{key}" = {{ dictionary = "{name}", probability = {p} }}'
        for key, (name, p) in bindings.items()
    ]
    return "\n".join(lines) + "\n"


def run_schemathesis(url: str, workdir: Path, args: argparse.Namespace) -> tuple[int, str]:
    """`st run` against `url`; its exit code and output."""
    command = [
        str(VENV_BIN / "st"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        args.exclude_checks,
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        "--workers",
        "1",
        "--phases",
        args.phases,
        "--request-timeout",
        "20",
        "--suppress-health-check",
        "all",
        "--continue-on-failure",
        "--no-color",
        "--report",
        "ndjson,junit",
        "--report-dir",
        str(workdir / "report"),
    ]
    try:
        result = subprocess.run(
            command,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=args.max_seconds,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout
        return -1, f"schemathesis stopped after {args.max_seconds} s\n{output or ''}"
    return result.returncode, result.stdout + result.stderr


def statuses(report_dir: Path) -> Counter[int]:
    """Every response's status code, from the ndjson event stream."""
    counts: Counter[int] = Counter()
    for path in report_dir.glob("*.ndjson"):
        for line in path.read_text(errors="replace").splitlines():
            for match in re.finditer(r'"status_code":\s*(\d{3})', line):
                counts[int(match.group(1))] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--database", required=True, help="DATABASE_URL of the engine")
    parser.add_argument("--max-examples", type=int, default=20)
    parser.add_argument("--max-seconds", type=int, default=150)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    # Every check but three, each wrong for this API by design. positive_data_acceptance: the
    # schemas cannot say which cron expressions, step types or cursors are valid, so some data
    # they allow is refused (400, 422). negative_data_rejection: pydantic's lax mode takes 0/1
    # for booleans and "3" for 3, and no body or `null` means `{"input": {}}` on execute, as
    # the API always has. use_after_free: DELETE /api/workflows/{id} archives; an archived
    # workflow stays readable (its history is kept).
    parser.add_argument(
        "--exclude-checks",
        default="positive_data_acceptance,negative_data_rejection,use_after_free",
    )
    args = parser.parse_args()
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"database": args.database.split("://")[0]}
    try:
        isolate()
    except (NotIsolated, OSError, subprocess.SubprocessError) as exc:
        summary["error"] = f"not isolated: {exc}"
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
        return 3

    engine = Serve(
        workdir,
        {
            "DATABASE_URL": args.database,
            "DATA_DIR": str(workdir / "data"),
            "API_TOKEN": TOKEN,
            "HTTP_ALLOWLIST": "127.0.0.1",
            "HTTP_ALLOWLIST_ONLY": "true",
            "HTTP_TIMEOUT_MS": "2000",
            "EXECUTION_TIMEOUT_MS": "10000",
            "SHUTDOWN_GRACE_MS": "1000",
        },
    )
    started = time.monotonic()
    try:
        engine.wait_ready(timeout=60)
        found = seed(engine)
        (workdir / "schemathesis.toml").write_text(config(found))
        code, output = run_schemathesis(engine.url, workdir, args)
    finally:
        engine.stop(timeout=10)
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["schemathesis_exit"] = code
    counts = statuses(workdir / "report")
    summary["responses"] = sum(counts.values())
    summary["by_status"] = {str(k): v for k, v in sorted(counts.items())}
    summary["server_errors"] = sum(v for k, v in counts.items() if k >= 500)
    log = engine.stderr() + engine.stdout()
    summary["tracebacks"] = log.count("Traceback (most recent call last)")
    summary["schemathesis_tail"] = output[-6000:]
    if summary["tracebacks"]:
        summary["engine_log_tail"] = log[-6000:]
    (workdir / "output.txt").write_text(output)
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    ok = code == 0 and summary["server_errors"] == 0 and summary["responses"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
