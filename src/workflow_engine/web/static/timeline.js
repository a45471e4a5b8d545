// The execution page's steps on one time axis: each step a bar from its start to its end (now,
// while it runs), so steps that ran in parallel show as bars side by side. Map items sit under
// their map step, collapsed to a count until opened. The rows carry their times in data-*
// attributes; draw() places every bar from them, so an event only has to update a row.
"use strict";

const Timeline = (() => {
  const head = document.getElementById("execution-head");
  const list = document.getElementById("timeline");
  const axis = document.getElementById("axis");
  const gridlines = document.getElementById("gridlines");
  const ACTIVE = new Set(["running", "retrying"]);
  const COUNT_ORDER = ["completed", "running", "retrying", "failed", "cancelled", "skipped", "pending", "waiting"];
  // "Nice" tick spacings in ms (the axis gets at most 8 ticks), and the lengths a running
  // execution's axis takes: it jumps to the next one when now nears its end, so in between the
  // scale holds still and running bars visibly grow.
  const STEPS = [50, 100, 200, 250, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 216e5, 432e5, 864e5];
  const LENGTHS = [500, 1e3, 2e3, 5e3, 1e4, 2e4, 3e4, 6e4, 12e4, 3e5, 6e5, 12e5, 18e5, 36e5, 72e5, 144e5, 288e5, 864e5];
  const gantt = document.getElementById("gantt");

  // Server time minus browser time: bars of running steps end at the server's "now". Every
  // event was stamped before it arrived, so each one is a lower bound.
  let skew = Date.parse(head.dataset.serverNow) - Date.now() || 0;
  const now = () => Date.now() + skew;
  const noteServerTime = (iso) => { const t = Date.parse(iso); if (t) skew = Math.max(skew, t - Date.now()); };

  const time = (iso) => (iso ? Date.parse(iso) : NaN);
  // A row's own field, never one of its items' (those come after the row's own in the page).
  const field = (li, name) => {
    const el = li.querySelector(`[data-field="${name}"]`);
    return el && el.closest(".step") === li ? el : null;
  };
  const row = (key) => list.querySelector(`.step[data-step-key="${CSS.escape(key)}"]`);
  // The rows to draw: every step, and the items of the maps that are open (a closed map's
  // items are drawn when it opens). A map's own row spans its items' times.
  function shownRows() {
    const found = [];
    for (const li of list.children) {
      found.push(li);
      const items = li.classList.contains("map") ? field(li, "items") : null;
      if (items && !items.hidden) found.push(...items.children);
    }
    return found;
  }

  // A step stopped because the execution was cancelled or another step failed ends `failed`
  // with a "Cancelled…" error: drawn amber, so the step that really failed is the red one.
  function stopped(li) {
    const error = field(li, "error");
    return li.dataset.status === "failed" && !!error && /^Cancelled\b/.test(error.textContent);
  }

  function tickLabel(ms, step) {
    if (ms === 0) return "0";
    if (ms < 1000) return ms + " ms";
    if (step < 60e3) return ms / 1000 + " s";
    if (step < 36e5) return (ms % 60e3 ? (ms / 60e3).toFixed(1) : ms / 60e3) + " min";
    return (ms % 36e5 ? (ms / 36e5).toFixed(1) : ms / 36e5) + " h";
  }

  // The axis: from the execution's start (or its first step's) to its end, or while it runs
  // to the first of LENGTHS a little past now.
  function range() {
    const finished = WE.FINAL.has(head.dataset.status);
    let start = time(head.dataset.startedAt);
    let end = finished ? time(head.dataset.completedAt) : now();
    for (const li of list.children) {
      if ("carried" in li.dataset) continue;
      const s = time(li.dataset.startedAt);
      const e = time(li.dataset.completedAt);
      if (!Number.isNaN(s) && !(s >= start)) start = s;
      if (finished && !Number.isNaN(e) && !(e <= end)) end = e;
    }
    if (Number.isNaN(start)) return null;
    if (!(end > start)) end = start + 1;
    if (!finished) {
      const wanted = (end - start) * 1.15;
      end = start + (LENGTHS.find((length) => length >= wanted) || Math.ceil(wanted / 864e5) * 864e5);
    }
    const step = STEPS.find((s) => (end - start) / s <= 8) || Math.ceil((end - start) / 8 / 864e5) * 864e5;
    gantt.dataset.spanMs = end - start;
    return { start, end, step, finished, now: now() };
  }

  function drawAxis(r) {
    axis.replaceChildren(); gridlines.replaceChildren();
    if (!r) return;
    const pct = (t) => ((t - r.start) / (r.end - r.start)) * 100 + "%";
    for (let t = 0; r.start + t <= r.end + 1; t += r.step) {
      const label = document.createElement("span");
      label.className = "tick"; label.style.left = pct(r.start + t); label.textContent = tickLabel(t, r.step);
      const line = document.createElement("span");
      line.className = "gridline"; line.style.left = pct(r.start + t);
      axis.append(label); gridlines.append(line);
    }
    if (!r.finished) {
      const line = document.createElement("span");
      line.className = "gridline now"; line.style.left = pct(r.now); line.title = "now";
      gridlines.append(line);
    }
  }

  function drawBar(li, r) {
    const bar = field(li, "bar");
    const label = field(li, "bar-label");
    const status = li.dataset.status;
    const start = time(li.dataset.startedAt);
    label.className = "bar-label"; label.style.left = label.style.right = "";
    const isStopped = stopped(li);
    bar.dataset.status = isStopped ? "cancelled" : status;
    bar.title = isStopped ? field(li, "error").textContent : "";
    if ("carried" in li.dataset || !r || Number.isNaN(start)) {
      bar.hidden = true;
      label.classList.add("note");
      label.textContent = "carried" in li.dataset ? "carried over from the execution it re-runs"
        : status === "skipped" ? "skipped" : r && r.finished ? "not run" : "waiting";
      return;
    }
    let stop = time(li.dataset.completedAt);
    if (Number.isNaN(stop)) stop = ACTIVE.has(status) ? Math.min(r.now, r.end) : start;
    const span = r.end - r.start;
    const left = Math.max(0, (start - r.start) / span);
    const right = Math.min(1, Math.max(left, (stop - r.start) / span));
    bar.hidden = false;
    bar.style.left = left * 100 + "%";
    bar.style.width = (right - left) * 100 + "%";
    const ms = li.dataset.durationMs !== "" && !ACTIVE.has(status) ? Number(li.dataset.durationMs) : stop - start;
    label.textContent = status === "skipped" ? "skipped" : WE.duration(Math.max(0, Math.round(ms))) + (ACTIVE.has(status) ? " …" : "");
    // The label goes after the bar; near the axis' end, inside a wide bar or before a narrow one.
    if (right < 0.86) { label.style.left = `calc(${right * 100}% + 6px)`; }
    else if (right - left > 0.14) { label.classList.add("inside"); label.style.right = `calc(${(1 - right) * 100}% + 6px)`; }
    else { label.style.right = `calc(${(1 - left) * 100}% + 6px)`; }
  }

  function draw() {
    const r = range();
    drawAxis(r);
    shownRows().forEach((li) => drawBar(li, r));
  }

  function countItems(mapLi) {
    const counts = {};
    const items = field(mapLi, "items").children;
    for (const li of items) {
      const status = stopped(li) ? "cancelled" : li.dataset.status;
      counts[status] = (counts[status] || 0) + 1;
    }
    const total = mapLi.dataset.itemTotal ? Number(mapLi.dataset.itemTotal) : items.length;
    if (total > items.length) counts.waiting = total - items.length;
    const summary = field(mapLi, "items-summary");
    const found = COUNT_ORDER.filter((s) => counts[s]);
    if (!found.length) { summary.textContent = "no items yet"; return; }
    summary.replaceChildren(`${total} items: `);
    found.forEach((status, i) => {
      const part = document.createElement("span");
      part.className = "count-" + status; part.textContent = `${counts[status]} ${status}`;
      summary.append(...(i ? [", ", part] : [part]));
    });
  }

  // The row of a map item, made from its map's template the first time the item is heard of.
  function item(key, index) {
    const found = row(key);
    if (found) return found;
    const mapLi = row(key.slice(0, key.lastIndexOf("[")));
    if (!mapLi || !mapLi.classList.contains("map")) return null;
    const li = field(mapLi, "item-template").content.firstElementChild.cloneNode(true);
    li.dataset.stepKey = key; li.dataset.index = index;
    field(li, "index").textContent = index;
    field(li, "name").textContent = key;
    const items = field(mapLi, "items");
    const after = [...items.children].find((other) => Number(other.dataset.index) > index);
    items.insertBefore(li, after || null);
    return li;
  }

  // Events come in bursts (a replay, a wide map): the picture is redrawn once per frame, with
  // the counts of the maps whose items changed.
  const dirtyMaps = new Set();
  let frame = null;
  function changed(li) {
    if (li && li.classList.contains("item")) dirtyMaps.add(li.parentElement.closest(".step.map"));
    if (frame !== null) return;
    frame = requestAnimationFrame(() => {
      frame = null;
      dirtyMaps.forEach(countItems); dirtyMaps.clear();
      draw();
    });
  }

  function setItemTotal(key, total) {
    const li = row(key);
    if (!li) return;
    li.dataset.itemTotal = total;
    countItems(li);
  }

  function setChild(key, executionId) {
    const li = row(key);
    const tools = li && li.querySelector(':scope > .step-row [data-field="tools"]');
    if (tools && executionId) { addTool(tools, executionId); return; }
    const box = li && field(li, "child");
    if (!box || !executionId) return;
    field(li, "child-link").href = "/executions/" + executionId;
    const shown = field(li, "child-id");
    shown.textContent = WE.shortId(executionId); shown.title = executionId;
    const copy = box.querySelector("button.copy-id");
    if (copy) { copy.dataset.copy = executionId; copy.setAttribute("aria-label", "Copy the full id " + executionId); }
    box.hidden = false;
  }

  // An llm step's tool calls: one link per child execution, in the order they started.
  function addTool(tools, executionId) {
    const href = "/executions/" + executionId;
    const list = tools.querySelector('[data-field="tool-list"]');
    if (list.querySelector(`a[data-execution-id="${executionId}"]`)) return;
    const li = document.createElement("li");
    const a = document.createElement("a"); a.href = href; a.dataset.executionId = executionId;
    const shown = document.createElement("span"); shown.className = "mono"; shown.title = executionId;
    shown.textContent = WE.shortId(executionId);
    a.append(shown, " →"); li.append(a); list.append(li);
    tools.hidden = false;
  }

  function toggle(button, target) {
    const open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(open));
    target.hidden = !open;
  }

  list.addEventListener("click", (event) => {
    const li = event.target.closest(".step");
    if (!li) return;
    if (event.target.closest(".step-open")) toggle(event.target.closest(".step-open"), field(li, "details"));
    else if (event.target.closest(".items-toggle")) {
      toggle(event.target.closest(".items-toggle"), field(li, "items"));
      draw();
    }
  });

  draw();
  // Running bars grow; a finished execution's picture holds still.
  setInterval(() => { if (!WE.FINAL.has(head.dataset.status)) draw(); }, 250);
  window.addEventListener("resize", draw);

  return { row, item, field, changed, setItemTotal, setChild, noteServerTime };
})();
