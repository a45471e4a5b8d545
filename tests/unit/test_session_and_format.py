"""The UI's session cookie and CSRF rule, and the durations/times the pages print."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workflow_engine.api.session import (
    COOKIE_NAME,
    MAX_AGE_S,
    cookie_from_header,
    csrf_ok,
    make_session,
    session_valid,
)
from workflow_engine.web.render import duration, relative


def test_session_is_an_hmac_of_the_token_not_the_token() -> None:
    value = make_session("secret-token", now=1_000_000)
    assert "secret-token" not in value
    assert session_valid("secret-token", value, now=1_000_010)
    assert not session_valid("other-token", value, now=1_000_010)
    assert not session_valid("secret-token", value, now=1_000_000 + MAX_AGE_S + 1)
    assert not session_valid("secret-token", value.replace(".", ".0"), now=1_000_010)
    assert not session_valid("secret-token", "", now=1)
    assert not session_valid("secret-token", "abc.def", now=1)


def test_cookie_header_parsing() -> None:
    assert cookie_from_header(f"a=1; {COOKIE_NAME}=123.abc; b=2") == "123.abc"
    assert cookie_from_header("a=1") is None
    assert cookie_from_header(None) is None


def test_csrf_rule_for_cookie_writes() -> None:
    assert csrf_ok("GET", {})
    assert not csrf_ok("POST", {})
    assert csrf_ok("POST", {"x-requested-with": "ui"})
    same = {"x-requested-with": "ui", "host": "localhost:3000"}
    assert csrf_ok("POST", {**same, "origin": "http://localhost:3000"})
    assert not csrf_ok("POST", {**same, "origin": "https://evil.example"})
    assert not csrf_ok("DELETE", {**same, "origin": "null"})


def test_durations_read_at_a_glance() -> None:
    assert duration(None) == "—"
    assert duration(350) == "350 ms"
    assert duration(1234) == "1.2 s"
    assert duration(42_000) == "42 s"
    assert duration(125_000) == "2 min 5 s"
    assert duration(3_780_000) == "1 h 3 min"


def test_relative_times() -> None:
    now = datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert relative(now - timedelta(seconds=3), now) == "just now"
    assert relative(now - timedelta(minutes=5), now) == "5 min ago"
    assert relative(now - timedelta(hours=3), now) == "3 h ago"
    assert relative(now - timedelta(days=2), now) == "2 d ago"
    assert relative(None) == "—"
