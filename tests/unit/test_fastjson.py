"""fastjson.dumps: what the hot path writes must read back as the standard library would."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from workflow_engine import fastjson


def test_values_round_trip_through_the_standard_parser() -> None:
    value = {"a": [1, 2.5, None, True, "é\n"], "nested": {"deep": [{"x": -3}]}}
    assert json.loads(fastjson.dumps(value)) == value


def test_datetimes_become_iso_8601_and_keys_become_strings() -> None:
    stamp = datetime(2026, 11, 27, 8, 0, 0, 123456, tzinfo=UTC)
    text = fastjson.dumps({"at": stamp, 1: "one"})
    assert json.loads(text) == {"at": "2026-11-27T08:00:00.123456+00:00", "1": "one"}


def test_integers_beyond_64_bits_fall_back_to_the_standard_library() -> None:
    assert json.loads(fastjson.dumps({"big": 2**70})) == {"big": 2**70}


def test_unknown_types_go_to_default_or_raise() -> None:
    assert json.loads(fastjson.dumps({"x": object}, default=lambda _v: "obj")) == {"x": "obj"}
    with pytest.raises(TypeError):
        fastjson.dumps({"x": object})
