"""How `serve` and `workers` print: LOG_FORMAT `text` (the default: log records and the worker
lines as they always were) or `json` (one JSON object per line, for log collectors).

With `json`, `configure` sets this up once, at start, for everything the process prints:
- log records (ours, uvicorn's error and access logs, warnings) go to stderr as
  `{"time", "level", "logger", "message"[, "exc_info"]}`;
- lines printed to stdout (the seed's `[Workflow Engine] Starting workers...`, `serve`'s
  `Listening on ...`) keep their text as the `message`, logger `workflow_engine.console`;
- anything else written to stdout or stderr (a plugin's print, a traceback a library writes
  itself) becomes one object per line too, so no line of the output is ever not JSON.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]
CONSOLE_LOGGER = "workflow_engine.console"


class JsonFormatter(logging.Formatter):
    """One log record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _JsonLines(io.TextIOBase):
    """A text stream that turns every line written to it into a JSON object on `target`."""

    def __init__(self, target: TextIO, *, logger: str, level: str) -> None:
        self._target = target
        self._formatter = JsonFormatter()
        self._logger = logger
        self._level = level
        self._pending = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._target.fileno()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._emit(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._emit(self._pending)
                self._pending = ""
            self._target.flush()

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        record = logging.LogRecord(
            self._logger, logging.getLevelName(self._level), "", 0, line, None, None
        )
        self._target.write(self._formatter.format(record) + "\n")
        self._target.flush()


def configure(log_format: LogFormat) -> None:
    """Set up the process's output for `log_format`; call once, first thing in `serve` and
    `workers`. `text` leaves everything as it is."""
    if log_format != "json":
        return
    stdout, stderr = sys.__stdout__ or sys.stdout, sys.__stderr__ or sys.stderr
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger(CONSOLE_LOGGER).setLevel(logging.INFO)
    logging.captureWarnings(True)
    sys.stdout = _JsonLines(stdout, logger=CONSOLE_LOGGER, level="INFO")
    sys.stderr = _JsonLines(stderr, logger="stderr", level="ERROR")
    sys.excepthook = _log_unhandled
    threading.excepthook = _log_unhandled_in_thread


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any] | None:
    """uvicorn's `log_config`: its own (coloured text) for `text`; none for `json`, so its
    loggers reach the root handler set up by `configure`."""
    if log_format == "json":
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG


def _log_unhandled(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("workflow_engine").critical("unhandled exception", exc_info=(kind, exc, tb))


def _log_unhandled_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("workflow_engine").critical(
        "unhandled exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )
