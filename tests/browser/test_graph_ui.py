"""Workflows as graphs in a real browser: parallel branches as overlapping bars that turn completed
live, the definition drawn as SVG, map items collapsed under their map step, and links between a
parent execution and the child its `workflow` step started."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, assert_not_reloaded, login, mark_page, wait_live
from tests.support.process import Serve, wait_execution

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

BRANCHES = ["fetch_crm", "lookup_company", "score_lead", "check_blocklist", "find_profiles"]
BRANCH_NAMES = ["Fetch CRM record", "Look up company", "Score lead", "Check blocklist", None]
FAN_OUT = {
    "name": "fan-out",
    "description": "Five branches at once, then a join",
    "steps": [
        *(
            {
                "key": key,
                **({"name": name} if name else {}),
                "type": "delay",
                "needs": [],
                "config": {"ms": 2500},
            }
            for key, name in zip(BRANCHES, BRANCH_NAMES, strict=True)
        ),
        {
            "key": "join",
            "name": "Merge results",
            "type": "transform",
            "needs": BRANCHES,
            "config": {"output": {"merged": True}},
        },
    ],
}
CHILD = {
    "name": "enrich-company",
    "steps": [
        {"key": "lookup", "type": "delay", "config": {"ms": 300}},
        {"key": "done", "type": "log", "config": {"message": "enriched"}},
    ],
}
PARENT = {
    "name": "crawl-site",
    "steps": [
        {"key": "prepare", "name": "Prepare the crawl", "type": "delay", "config": {"ms": 1500}},
        {
            "key": "pages",
            "name": "Fetch every page",
            "type": "map",
            "config": {
                "items": "{{ input.pages }}",
                "parallelism": 3,
                "step": {"type": "delay", "config": {"ms": 600}},
            },
        },
        {
            "key": "enrich",
            "name": "Enrich the company",
            "type": "workflow",
            "needs": ["prepare"],
            "config": {"workflow": "enrich-company", "input": {"site": "{{ input.site }}"}},
        },
        {"key": "report", "type": "log", "needs": ["pages", "enrich"], "config": {"message": "ok"}},
    ],
}


def _create(serve: Serve, *documents: dict[str, Any]) -> None:
    with serve.client() as client:
        for document in documents:
            response = client.post("/api/workflows", json=document)
            assert response.status_code == 201, response.text


def _execute(serve: Serve, workflow: str, input: dict[str, Any]) -> str:
    with serve.client() as client:
        response = client.post(f"/api/workflows/{workflow}/execute", json={"input": input})
        assert response.status_code == 202, response.text
        execution_id: str = response.json()["executionId"]
        return execution_id


def _row(key: str) -> str:
    return f'#timeline .step[data-step-key="{key}"]'


def _shown_ms(page: Any, key: str) -> float:
    """How much time a row's bar stands for on the axis (its width over the track's, times the
    axis' length): it grows while the step runs, whatever the axis does meanwhile."""
    result: float = page.evaluate(
        """(key) => {
            const li = document.querySelector(`#timeline .step[data-step-key="${key}"]`);
            const bar = li.querySelector('[data-field="bar"]').getBoundingClientRect();
            const track = li.querySelector('[data-field="track"]').getBoundingClientRect();
            const span = Number(document.getElementById("gantt").dataset.spanMs);
            return bar.width / track.width * span;
        }""",
        key,
    )
    return result


def test_parallel_branches_run_side_by_side_then_the_join(page: Any, serve: Serve) -> None:
    _create(serve, FAN_OUT)
    login(page)
    execution_id = _execute(serve, "fan-out", {})
    page.goto(f"/executions/{execution_id}")
    wait_live(page)
    mark_page(page)
    # All five branches running at the same moment, their bars overlapping on the time axis.
    page.wait_for_function(
        """(keys) => keys.every((k) => {
            const li = document.querySelector(`#timeline .step[data-step-key="${k}"]`);
            const bar = li.querySelector('[data-field="bar"]');
            return li.dataset.status === "running" && bar.dataset.status === "running"
                && !bar.hidden;
        })""",
        arg=BRANCHES,
    )
    boxes = []
    for key in BRANCHES:
        bar = page.locator(f'{_row(key)} [data-field="bar"]')
        assert bar.get_attribute("data-status") == "running"
        assert bar.is_visible()
        boxes.append(bar.bounding_box())
    assert page.locator(f"{_row('join')}").get_attribute("data-status") == "pending"
    assert page.locator(f'{_row("join")} [data-field="bar"]').is_hidden()
    assert page.locator(f'{_row("join")} [data-field="bar-label"]').inner_text() == "waiting"
    starts = [box["x"] for box in boxes]
    ends = [box["x"] + box["width"] for box in boxes]
    assert max(starts) < min(ends), f"the branches' bars do not overlap: {boxes}"
    assert max(starts) - min(starts) < 0.1 * (min(ends) - min(starts))  # they start together
    tops = [box["y"] for box in boxes]
    assert all(b - a >= 20 for a, b in itertools.pairwise(tops))  # one row each, in order
    # Running bars grow without a reload.
    before = _shown_ms(page, BRANCHES[0])
    page.wait_for_timeout(600)
    assert _shown_ms(page, BRANCHES[0]) > before + 150
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#gantt").screenshot(path=str(ARTIFACTS / "graph-execution-running.png"))

    # Then they turn completed live, and the join starts and completes after them.
    page.wait_for_selector("#execution-head[data-status=completed]", timeout=20_000)
    for key in [*BRANCHES, "join"]:
        assert page.locator(_row(key)).get_attribute("data-status") == "completed"
        assert page.locator(f'{_row(key)} [data-field="bar"]').get_attribute("data-status") == (
            "completed"
        )
    join = page.locator(f'{_row("join")} [data-field="bar"]').bounding_box()
    assert join is not None and join["x"] >= max(
        page.locator(f'{_row(key)} [data-field="bar"]').bounding_box()["x"] for key in BRANCHES
    )
    assert "after fetch_crm, lookup_company" in page.locator(_row("join")).inner_text()
    page.locator(f"{_row('join')} .step-open").click()
    assert '"merged": true' in page.locator(f'{_row("join")} [data-field="output"]').inner_text()
    assert_not_reloaded(page)
    with serve.client() as client:
        body = wait_execution(client, execution_id)
    assert body["status"] == "completed"
    page.screenshot(path=str(ARTIFACTS / "graph-execution.png"), full_page=True)

    # The workflow page draws the definition: a box per step, an arrow per dependency.
    page.goto("/workflows/fan-out")
    nodes = page.locator("#workflow-graph g.node")
    assert nodes.count() == len(FAN_OUT["steps"])
    keys = nodes.evaluate_all("els => els.map(e => e.dataset.stepKey)")
    assert keys == [*BRANCHES, "join"]
    edges = page.locator("#workflow-graph path.edge").evaluate_all(
        "els => els.map(e => [e.dataset.from, e.dataset.to])"
    )
    assert sorted(edges) == sorted([key, "join"] for key in BRANCHES)
    assert page.locator(
        '#workflow-graph g.node[data-step-key="join"] text.name'
    ).text_content() == ("Merge results")
    assert page.locator(
        '#workflow-graph g.node[data-step-key="find_profiles"] text.name'
    ).text_content() == ("find_profiles")
    # Every branch box sits left of the join's, and the arrows end at the join's left side.
    join_box = page.locator('#workflow-graph g.node[data-step-key="join"] rect.box').bounding_box()
    for key in BRANCHES:
        box = page.locator(f'#workflow-graph g.node[data-step-key="{key}"] rect.box').bounding_box()
        assert box["x"] + box["width"] < join_box["x"]
    page.locator(".graph-card").screenshot(path=str(ARTIFACTS / "graph-workflow.png"))


def test_map_items_collapse_and_a_workflow_step_links_to_its_child(page: Any, serve: Serve) -> None:
    _create(serve, CHILD, PARENT)
    login(page)
    pages = [f"/page/{i}" for i in range(9)]
    execution_id = _execute(serve, "crawl-site", {"pages": pages, "site": "example.com"})
    page.goto(f"/executions/{execution_id}")
    wait_live(page)
    mark_page(page)
    pages_row = _row("pages")
    summary = page.locator(f'{pages_row} [data-field="items-summary"]').first
    # The map starts after `prepare` (1.5 s), while the page watches: its count moves live.
    page.wait_for_function(
        """() => /9 items: .*running/.test(document.querySelector(
            '#timeline .step[data-step-key="pages"] [data-field="items-summary"]').textContent)"""
    )
    running_text = summary.inner_text()
    assert re.fullmatch(r"9 items: (\d+ completed, )?\d+ running(, \d+ waiting)?", running_text)
    items = page.locator(f'{pages_row} [data-field="items"]')
    assert items.is_hidden()  # collapsed under the map row
    toggle = page.locator(f'{pages_row} [data-field="items-toggle"]')
    toggle.click()
    assert items.is_visible() and toggle.get_attribute("aria-expanded") == "true"
    page.wait_for_selector(f'{pages_row} .step.item[data-step-key="pages[8]"]')
    page.locator("#gantt").screenshot(path=str(ARTIFACTS / "graph-map-running.png"))
    page.wait_for_selector("#execution-head[data-status=completed]", timeout=20_000)
    assert summary.inner_text() == "9 items: 9 completed"
    item_keys = page.locator(f"{pages_row} .step.item").evaluate_all(
        "els => els.map(e => e.dataset.stepKey)"
    )
    assert item_keys == [f"pages[{i}]" for i in range(9)]
    assert page.locator(f'{pages_row} .step.item[data-status="completed"]').count() == 9
    toggle.click()
    assert items.is_hidden()
    toggle.click()

    # The workflow step links to its child execution, and the child links back.
    with serve.client() as client:
        children = wait_execution(client, execution_id)["children"]
    assert [c["parentStepKey"] for c in children] == ["enrich"]
    child_id = children[0]["id"]
    link = page.locator(f'{_row("enrich")} [data-field="child-link"]')
    assert link.is_visible() and link.get_attribute("href") == f"/executions/{child_id}"
    assert "enrich-company" in link.inner_text()
    assert_not_reloaded(page)
    page.screenshot(path=str(ARTIFACTS / "graph-map-and-child.png"), full_page=True)
    link.click()
    page.wait_for_url(re.compile(f".*/executions/{child_id}$"))
    parent = page.locator("#parent-link")
    assert re.search(
        r"Started by step enrich of execution …\w{8} \(crawl-site\)", parent.inner_text()
    )
    parent.locator("a").click()
    page.wait_for_url(re.compile(f".*/executions/{execution_id}$"))
    # Reloaded from the server, the map is still collapsed to its count.
    assert page.locator(f'{pages_row} [data-field="items"]').is_hidden()
    assert summary.inner_text() == "9 items: 9 completed"

    page.goto("/workflows/crawl-site")
    assert page.locator("#workflow-graph g.node").count() == 4
    assert (
        page.locator("#workflow-graph g.node.kind-map text.detail").text_content() == "map of delay"
    )
    child_link = page.locator("#workflow-graph g.node.kind-workflow a")
    assert child_link.get_attribute("href") == "/workflows/enrich-company"
    edges = page.locator("#workflow-graph path.edge").evaluate_all(
        "els => els.map(e => e.dataset.from + '>' + e.dataset.to)"
    )
    assert sorted(edges) == ["enrich>report", "pages>report", "prepare>enrich", "prepare>pages"]
    page.locator(".graph-card").screenshot(path=str(ARTIFACTS / "graph-workflow-map-child.png"))


def test_the_editor_names_the_step_whose_needs_are_wrong(page: Any, serve: Serve) -> None:
    login(page)
    page.goto("/workflows")
    page.click("#new-workflow")
    text = (
        "name: graph\nsteps:\n  - key: fetch\n    type: delay\n    config: {ms: 1}\n"
        "  - key: score\n    type: log\n    needs:\n      - fetch\n      - enrich\n"
    )
    page.fill("#editor-text", text)
    problem = page.locator('#editor-problems li[data-step="score"]')
    problem.wait_for()
    assert problem.inner_text() == (
        "line 10 · steps.1.needs: step 'score' needs 'enrich', which is not a step key"
    )
    assert problem.locator("code.step-ref.named").inner_text() == "'score'"
    assert problem.locator("code.step-ref:not(.named)").inner_text() == "'enrich'"
    # "line 10" selects that line in the text.
    problem.locator("button.where").click()
    selected = page.evaluate(
        "(() => { const t = document.getElementById('editor-text');"
        " return t.value.slice(t.selectionStart, t.selectionEnd); })()"
    )
    assert selected == "      - enrich"
    page.locator(".editor-layout").screenshot(path=str(ARTIFACTS / "graph-editor-needs.png"))
    # A cycle names the step too; fixed, the problem goes away and the workflow saves.
    page.fill("#editor-text", text.replace("- enrich", "- score"))
    page.wait_for_selector('#editor-problems li[data-step="score"]:has-text("needs itself")')
    page.fill("#editor-text", text.replace("      - enrich\n", ""))
    page.wait_for_selector("#editor-problems li", state="detached")
    page.click("#editor-save")
    page.wait_for_url(re.compile(r".*/workflows/[0-9a-f-]+$"))
    assert page.locator("#workflow-graph path.edge").count() == 1
