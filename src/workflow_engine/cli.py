"""`workflow-engine`: serve, migrate, workers, and commands to apply workflows and run them."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import uvloop
import yaml
from pydantic import ValidationError

from workflow_engine import cli_keys, gc_tuning, logs, telemetry
from workflow_engine.errors import ConfigurationError
from workflow_engine.settings import Settings

app = typer.Typer(
    help="Workflow execution engine: background runs with retries and live status.",
    no_args_is_help=True,
    add_completion=False,
)
FINAL = {"completed", "failed", "cancelled"}
app.add_typer(cli_keys.app, name="keys")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        typer.echo(f"Invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (PORT)")] = None,
    apply: Annotated[
        list[Path] | None, typer.Option("--apply", help="Workflow files or folders to load")
    ] = None,
) -> None:
    """Run the API (and, in embedded mode, the workers) until SIGTERM/SIGINT."""
    import uvicorn

    from workflow_engine.api.auth import resolve_token
    from workflow_engine.app import create_app
    from workflow_engine.steps.plugins import load_registry
    from workflow_engine.storage.db import async_url

    settings = _settings()
    logs.configure(settings.log_format)
    telemetry.setup(settings, process="serve")
    if host:
        settings.host = host
    if port:
        settings.port = port
    try:
        async_url(settings.resolved_database_url)  # a bad DATABASE_URL: one line, not a traceback
        token, generated = resolve_token(settings)
        # Plugins are checked (and imported) before the port is bound: a bad one is one line.
        registry = load_registry(settings.step_modules)
    except ConfigurationError as exc:
        _fail(str(exc), 2)
        return
    documents = _load_documents(apply or [])
    application = _StartupErrors(
        create_app(settings, token=token, documents=documents, registry=registry)
    )
    url = f"http://{settings.host}:{settings.port}"
    typer.echo(f"[Workflow Engine] Listening on {url}")
    if token is None:
        typer.echo("[Workflow Engine] Authentication is disabled (loopback only)")
    elif generated:
        typer.echo(
            f"[Workflow Engine] Generated API token (saved in {settings.token_file}): {token}"
        )
    elif not settings.api_token:
        typer.echo(f"[Workflow Engine] API token: see {settings.token_file}")
    # uvicorn re-raises the SIGTERM/SIGINT that stopped it once it has shut down gracefully, which
    # would end the process by that signal (or a KeyboardInterrupt). A graceful stop exits 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    gc_tuning.tune()
    try:
        uvicorn.run(
            application,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            log_config=logs.uvicorn_log_config(settings.log_format),
            loop="uvloop",
            http="httptools",
            timeout_graceful_shutdown=max(1, settings.shutdown_grace_ms // 1000),
        )
    except SystemExit:
        if application.error is not None:
            _fail(str(application.error), 2)
        raise
    finally:
        telemetry.shutdown()


class _StartupErrors:
    """ASGI wrapper around the app's start-up: a ConfigurationError raised while the app starts
    (database unreachable, a bad `--apply` file) makes `serve` print its message and exit 2, not
    dump a traceback; once it has started, what start-up made is frozen out of the GC's scans."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.error: ConfigurationError | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        held: list[Any] = []

        async def held_send(message: Any) -> None:
            if message["type"] == "lifespan.startup.failed":  # its message is a traceback
                held.append(message)
                return
            if message["type"] == "lifespan.startup.complete":
                gc_tuning.started()
            await send(message)

        try:
            await self.app(scope, receive, held_send)
        except ConfigurationError as exc:
            if not held:
                raise
            self.error = exc
            await send({"type": "lifespan.startup.failed", "message": ""})
            return
        finally:
            if held and self.error is None:
                await send(held[0])


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from workflow_engine.storage import migrate as migrations
    from workflow_engine.storage.db import Database

    settings = _settings()

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            await migrations.upgrade(db)
        finally:
            await db.dispose()

    try:
        asyncio.run(run())
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    typer.echo(
        f"[Workflow Engine] Database is up to date ({_redact(settings.resolved_database_url)})"
    )


@app.command()
def prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Remove executions that finished longer ago than this: 30d, 12h or 90m",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print how many executions would go")
    ] = False,
) -> None:
    """Remove finished executions (completed, failed, cancelled) older than --older-than, with
    their steps, logs and events, from the database of DATABASE_URL; pending and running ones
    are never touched. Small batches, so running work is not held up."""
    from datetime import UTC, datetime

    from workflow_engine.engine.retention import parse_age
    from workflow_engine.engine.retention import prune as prune_executions
    from workflow_engine.errors import StorageError
    from workflow_engine.storage.db import Database

    settings = _settings()
    try:
        age = parse_age(older_than)
    except ValueError as exc:
        _fail(f"--older-than: {exc}", 2)
        return

    from workflow_engine.storage import migrate as migrations

    async def run() -> str:
        db = Database(settings.resolved_database_url)
        try:
            if await migrations.revision(db) is None:
                raise ConfigurationError(
                    f"{_redact(settings.resolved_database_url)} holds no workflow-engine "
                    "schema (check DATABASE_URL, or run `workflow-engine migrate`)"
                )
            report = await prune_executions(
                db,
                datetime.now(UTC) - age,
                batch_size=settings.retention_batch_size,
                dry_run=dry_run,
            )
        finally:
            await db.dispose()
        return report.summary()

    try:
        summary = asyncio.run(run())
    except ConfigurationError as exc:
        _fail(str(exc), 2)
        return
    except StorageError as exc:
        where = _redact(settings.resolved_database_url)
        _fail(f"cannot prune the database {where}: {exc}")
        return
    typer.echo(summary)


@app.command()
def workers(
    concurrency: Annotated[
        int | None, typer.Option(help="Executions run at once (EXECUTION_CONCURRENCY)")
    ] = None,
) -> None:
    """Run dispatch and execution workers (distributed mode: needs REDIS_URL); any number of
    these processes may run. SIGTERM/SIGINT: finish running executions, then exit 0."""
    from workflow_engine.worker_process import run_workers

    settings = _settings()
    logs.configure(settings.log_format)
    if not settings.redis_url:
        _fail(
            "workers need REDIS_URL (distributed mode). In the embedded mode `workflow-engine "
            "serve` runs the workers itself.",
            2,
        )
    if concurrency is not None and concurrency < 1:
        _fail("--concurrency must be at least 1", 2)
    telemetry.setup(settings, process="workers")
    gc_tuning.tune()
    try:
        # uvloop: the workers spend most of their time on socket I/O (database, Redis).
        uvloop.run(run_workers(settings, concurrency=concurrency))
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    finally:
        telemetry.shutdown()


# --- client commands (talk to a running server) ---------------------------------------------


def _client(url: str | None, token: str | None) -> httpx.Client:
    settings = _settings()
    base = url or f"http://{settings.host}:{settings.port}"
    token = token or settings.api_token
    if not token and settings.token_file.exists():
        token = settings.token_file.read_text().strip()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base, headers=headers, timeout=30, trust_env=False)


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        _fail(
            f"cannot reach the engine at {client.base_url}: {exc}. "
            "Is `workflow-engine serve` running?"
        )
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        _fail(f"{method} {path} -> {response.status_code}: {detail}")
    return response.json() if response.content else None


UrlOpt = Annotated[str | None, typer.Option("--url", help="Engine URL (default http://HOST:PORT)")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", help="API token (default API_TOKEN or DATA_DIR/api-token)")
]


@app.command("apply")
def apply_cmd(
    paths: Annotated[list[Path], typer.Argument(help="YAML/JSON workflow files or folders")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create or update workflows from files (a new version only when the document changed)."""
    with _client(url, token) as client:
        for path, document in _load_documents(paths):
            name = document.get("name", "")
            response = client.put(f"/api/workflows/{name}", json=document) if name else None
            if response is None or response.status_code == 404:
                body = _call(client, "POST", "/api/workflows", json=document)
            elif response.status_code >= 400:
                _fail(f"{path}: {response.json().get('detail', response.text)}")
                return
            else:
                body = response.json()
            typer.echo(f"{path}: {body['name']} v{body.get('version')} ({body['id']})")


@app.command()
def run(
    workflow: Annotated[str, typer.Argument(help="Workflow id or name")],
    input: Annotated[str, typer.Option("--input", "-i", help="JSON input")] = "{}",
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow until it ends")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Start an execution; with --watch, print each step as it finishes and the result."""
    try:
        payload = json.loads(input)
    except json.JSONDecodeError as exc:
        _fail(f"--input is not valid JSON: {exc}", 2)
    with _client(url, token) as client:
        started = _call(
            client, "POST", f"/api/workflows/{workflow}/execute", json={"input": payload}
        )
        execution_id = started["executionId"]
        typer.echo(f"execution {execution_id} {started['status']}")
        if not watch:
            return
        seen: dict[str, str] = {}
        told_waits: list[Any] = []
        while True:
            detail = _call(client, "GET", f"/api/executions/{execution_id}")
            for step in detail["steps"]:
                if seen.get(step["stepKey"]) != step["status"]:
                    seen[step["stepKey"]] = step["status"]
                    extra = f" ({step['durationMs']} ms)" if step["durationMs"] is not None else ""
                    typer.echo(f"  {step['stepKey']}: {step['status']}{extra}")
            waits = detail.get("waits") or []
            if waits and waits != told_waits:
                for wait in waits:
                    typer.echo(f"  {wait['stepKey']}: {_wait_text(wait)}")
            told_waits = waits
            if detail["status"] in FINAL:
                break
            time.sleep(0.2)
        typer.echo(f"{detail['status']} in {detail['durationMs']} ms")
        if detail["status"] == "completed":
            typer.echo(json.dumps(detail["output"], indent=2))
        else:
            _fail(detail["error"] or detail["status"])


def _wait_text(wait: dict[str, Any]) -> str:
    until = f" until {wait['until']}" if wait.get("until") else ""
    event = wait.get("event")
    approval = wait.get("approval")
    if approval:
        return f"waiting for a decision{until}: {approval['message']}"
    if event:
        key = f" (key {event['key']})" if event.get("key") else ""
        return f"waiting for event {event['name']}{key}{until}"
    return f"sleeping{until}"


@app.command()
def status(
    execution_id: Annotated[str, typer.Argument()],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Print an execution with its steps and logs as JSON."""
    with _client(url, token) as client:
        typer.echo(json.dumps(_call(client, "GET", f"/api/executions/{execution_id}"), indent=2))


def _load_documents(paths: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        elif path.exists():
            files.append(path)
        else:
            _fail(f"{path}: no such file or folder", 2)
    documents = []
    for file in files:
        try:
            document = yaml.safe_load(file.read_text())
        except yaml.YAMLError as exc:
            _fail(f"{file}: not valid YAML/JSON: {exc}", 2)
        if not isinstance(document, dict):
            _fail(f"{file}: a workflow document must be a mapping", 2)
        documents.append((file, document))
    return documents


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    try:
        app()
    except ConfigurationError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        sys.exit(2)
