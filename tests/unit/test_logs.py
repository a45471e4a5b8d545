"""LOG_FORMAT=json's pieces: the record formatter and the stream that wraps printed lines."""

from __future__ import annotations

import io
import json
import logging
import sys

from workflow_engine import logs
from workflow_engine.settings import Settings


def test_a_record_is_one_json_line_with_its_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x.y", logging.ERROR, "", 0, "failed %s", ("here",), None)
        record.exc_info = sys.exc_info()
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "x.y"
    assert entry["message"] == "failed here"
    assert "ValueError: boom" in entry["exc_info"]
    assert entry["time"].endswith("+00:00")


def test_printed_lines_become_json_objects_keeping_their_text() -> None:
    target = io.StringIO()
    stream = logs._JsonLines(target, logger=logs.CONSOLE_LOGGER, level="INFO")
    print("[Workflow Engine] Starting workers...", file=stream)
    stream.write("partial ")
    stream.write('line with "quotes"\n\n')
    stream.write("unterminated")
    stream.flush()
    entries = [json.loads(line) for line in target.getvalue().splitlines()]
    assert [e["message"] for e in entries] == [
        "[Workflow Engine] Starting workers...",
        'partial line with "quotes"',
        "unterminated",
    ]
    assert {e["logger"] for e in entries} == {"workflow_engine.console"}
    assert {e["level"] for e in entries} == {"INFO"}


def test_log_format_setting() -> None:
    assert Settings(_env_file=None).log_format == "text"
    assert Settings(_env_file=None, log_format="JSON").log_format == "json"
