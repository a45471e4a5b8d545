"""How the pages show an id: its random tail (issue 12, point 7)."""

from __future__ import annotations

from workflow_engine.ids import new_id
from workflow_engine.web.render import short_id, templates


def test_ids_created_together_read_differently() -> None:
    ids = [new_id() for _ in range(50)]
    assert len({i[:8] for i in ids}) <= 2  # the time prefix: the same for all of them
    assert len({short_id(i) for i in ids}) == 50


def test_short_id_is_the_tail() -> None:
    assert short_id("01a22bf8-e83f-7e35-b592-c7a5e7da6f21") == "…e7da6f21"
    assert short_id("abc") == "abc"
    assert short_id(None) == ""


def test_id_ref_macro_carries_the_whole_id() -> None:
    macros = templates.env.get_template("macros.html").module
    html = str(macros.id_ref("01a22bf8-e83f-7e35-b592-c7a5e7da6f21", "/executions/x"))
    assert 'title="01a22bf8-e83f-7e35-b592-c7a5e7da6f21"' in html
    assert 'data-copy="01a22bf8-e83f-7e35-b592-c7a5e7da6f21"' in html
    assert ">…e7da6f21</a>" in html
