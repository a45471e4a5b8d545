"""The UI's pure views: the workflow graph's layout, the execution page's rows (map items,
children, carried-over steps) and the editor's step problems located in the text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from workflow_engine.web import graph, step_problems, timeline

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _delay(key: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "type": "delay", "config": {"ms": 10}, **extra}


def test_fan_out_is_two_columns_with_an_edge_per_need() -> None:
    branches = [_delay(f"b{i}", needs=[]) for i in range(1, 6)]
    join = {"key": "join", "type": "log", "needs": [f"b{i}" for i in range(1, 6)]}
    laid = graph.layout({"steps": [*branches, join]})
    assert laid is not None
    columns = {n.key: n.column for n in laid.nodes}
    assert columns == {"b1": 0, "b2": 0, "b3": 0, "b4": 0, "b5": 0, "join": 1}
    assert sorted((e.source, e.target) for e in laid.edges) == [
        (f"b{i}", "join") for i in range(1, 6)
    ]
    by_key = {n.key: n for n in laid.nodes}
    # The branches stack in document order; the join sits level with the middle one.
    assert [by_key[f"b{i}"].y for i in range(1, 6)] == sorted(
        by_key[f"b{i}"].y for i in range(1, 6)
    )
    assert by_key["join"].y == by_key["b3"].y
    assert by_key["join"].x > by_key["b1"].x + graph.NODE_W
    # Five arrows into the join meet it at five different heights.
    assert len({e.path.rsplit(" ", 1)[1] for e in laid.edges}) == 5


def test_implicit_needs_chain_and_needs_on_a_later_step() -> None:
    laid = graph.layout(
        {
            "steps": [
                _delay("a"),
                _delay("b"),  # needs a (the step before it)
                _delay("c", needs=["d"]),  # a later step
                _delay("d", needs=[]),
            ]
        }
    )
    assert laid is not None
    assert {n.key: n.column for n in laid.nodes} == {"a": 0, "b": 1, "c": 1, "d": 0}
    assert {(e.source, e.target) for e in laid.edges} == {("a", "b"), ("d", "c")}
    assert graph.depths({"x": ("y",), "y": ("z",), "z": ()}) == {"x": 2, "y": 1, "z": 0}


def test_map_and_workflow_steps_are_marked() -> None:
    laid = graph.layout(
        {
            "steps": [
                {
                    "key": "fetch",
                    "name": "Fetch every page of the catalogue, one by one",
                    "type": "map",
                    "config": {"items": "{{ input.urls }}", "step": {"type": "http"}},
                },
                {"key": "sub", "type": "workflow", "config": {"workflow": "enrich-lead"}},
                {"key": "dyn", "type": "workflow", "config": {"workflow": "{{ input.wf }}"}},
                {"key": "named", "name": "Say hi", "type": "log", "if": "{{ input.x }}"},
            ]
        }
    )
    assert laid is not None
    fetch, sub, dyn, named = laid.nodes
    assert (fetch.kind, fetch.detail) == ("map", "map of http")
    assert fetch.name.endswith("…") and len(fetch.name) == graph.NAME_CHARS
    assert fetch.title == "Fetch every page of the catalogue, one by one (fetch)"
    assert (sub.kind, sub.child, sub.child_link) == (
        "workflow",
        "enrich-lead",
        "/workflows/enrich-lead",
    )
    assert dyn.child_link is None  # a template names no workflow yet
    assert (named.name, named.detail, named.conditional) == ("Say hi", "named · log", True)


def test_layout_of_nothing_readable_is_none() -> None:
    assert graph.layout({}) is None
    assert graph.layout({"steps": [{"key": "bad key", "type": "log"}]}) is None


def _row(key: str, status: str = "completed", **extra: Any) -> dict[str, Any]:
    return {
        "step_key": key,
        "status": status,
        "started_at": T0,
        "completed_at": T0 + timedelta(seconds=1) if status != "running" else None,
        "duration_ms": 1000,
        "retry_count": 0,
        "input": None,
        "output": None,
        "error": None,
        **extra,
    }


def test_timeline_puts_items_under_their_map_in_index_order() -> None:
    definition = {
        "steps": [
            {"key": "prep", "type": "transform", "config": {}},
            {
                "key": "fetch",
                "type": "map",
                "needs": ["prep"],
                "config": {"items": "{{ input.x }}", "step": {"type": "delay"}},
            },
            {"key": "after", "type": "log"},
        ]
    }
    rows = [
        _row("prep"),
        _row("fetch", "running", input={"items": list(range(12)), "parallelism": 3}),
        *(_row(f"fetch[{i}]") for i in (10, 2, 9)),
        _row("fetch[11]", "running"),
        _row("fetch[3]", "failed", error="boom"),
        _row("fetch[4]", "failed", error="Cancelled: item 3 of step 'fetch' failed"),
    ]
    prep, fetch, after = timeline.build(definition, rows)
    assert (prep.status, prep.attempts, after.status, after.attempts) == (
        "completed",
        1,
        "pending",
        0,
    )
    assert fetch.is_map and fetch.inner_type == "delay" and fetch.needs == ["prep"]
    assert [i.key for i in fetch.items] == [
        "fetch[2]",
        "fetch[3]",
        "fetch[4]",
        "fetch[9]",
        "fetch[10]",
        "fetch[11]",
    ]
    assert [i.index for i in fetch.items] == [2, 3, 4, 9, 10, 11]
    assert fetch.item_total == 12
    # The item stopped because another failed counts as cancelled, not as a second failure.
    assert fetch.item_counts() == [
        ("completed", 3),
        ("running", 1),
        ("failed", 1),
        ("cancelled", 1),
        ("waiting", 6),
    ]
    assert fetch.blank_item().type == "delay"


def test_timeline_links_workflow_steps_and_items_to_their_children() -> None:
    definition = {
        "steps": [
            {"key": "sub", "type": "workflow", "config": {"workflow": "child"}},
            {
                "key": "each",
                "type": "map",
                "config": {
                    "items": [1, 2],
                    "step": {"type": "workflow", "config": {"workflow": "c2"}},
                },
            },
        ]
    }
    children = [
        {"id": "old", "parent_step_key": "sub"},  # an earlier try's child
        {"id": "new", "parent_step_key": "sub"},
        {"id": "item1", "parent_step_key": "each[1]"},
    ]
    rows = [_row("sub"), _row("each"), _row("each[0]"), _row("each[1]")]
    sub, each = timeline.build(definition, rows, children)
    assert sub.child is not None and sub.child["id"] == "new"
    assert sub.child_workflow == "child"
    assert each.child is None and each.child_workflow == "c2"
    assert [i.child["id"] if i.child else None for i in each.items] == [None, "item1"]


def test_timeline_marks_rows_a_rerun_carried_over() -> None:
    definition = {"steps": [{"key": "a", "type": "log"}, {"key": "b", "type": "log"}]}
    rows = [_row("a"), _row("b", started_at=T0 + timedelta(hours=1), completed_at=None)]
    a, b = timeline.build(definition, rows, rerun_created_at=T0 + timedelta(minutes=30))
    assert a.carried and not b.carried
    assert not timeline.build(definition, rows)[0].carried


YAML_TEXT = """name: x
steps:
  - key: fetch
    type: delay
  - key: score
    type: transform
    needs:
      - fetch
      - enrich
"""


def test_a_need_that_is_no_step_is_located_on_its_line() -> None:
    document = {
        "name": "x",
        "steps": [
            {"key": "fetch", "type": "delay"},
            {"key": "score", "type": "transform", "needs": ["fetch", "enrich"]},
        ],
    }
    message = "Value error, step 'score' needs 'enrich', which is not a step key"
    located = step_problems.locate(
        {"loc": "", "message": message, "line": None}, document, YAML_TEXT
    )
    assert located == {
        "loc": "steps.1.needs",
        "message": "step 'score' needs 'enrich', which is not a step key",
        "line": 9,
        "step": "score",
    }


def test_cycles_and_unknown_types_name_their_step_also_in_json() -> None:
    text = (
        '{"name": "x",\n "steps": [\n  {"key": "a", "type": "log", "needs": ["b"]},\n'
        '  {"key": "b", "type": "nope",\n   "needs": ["a"]}\n ]\n}'
    )
    document: dict[str, Any] = {
        "name": "x",
        "steps": [
            {"key": "a", "type": "log", "needs": ["b"]},
            {"key": "b", "type": "nope", "needs": ["a"]},
        ],
    }
    cycle = "step 'b' is part of a cycle of needs: 'b' -> 'a' -> 'b' (each needs the next)"
    located = step_problems.locate({"loc": "", "message": cycle}, document, text)
    assert (located["step"], located["loc"], located["line"]) == ("b", "steps.1.needs", 5)
    unknown = "step 'b': unknown step type 'nope' (known: log)"
    located = step_problems.locate({"loc": "", "message": unknown}, document, text)
    assert (located["step"], located["loc"], located["line"]) == ("b", "steps.1.type", 4)
    # Not about a step, or about one the document does not have: left as it was.
    other = {"loc": "name", "message": "Field required"}
    assert step_problems.locate(other, document, text) == other
    ghost = {"loc": "", "message": "step 'zz' needs itself"}
    assert step_problems.locate(ghost, document, text) == ghost
