// /monitoring: new executions appear and finish live, every row names its workflow, the queue
// counts follow the work (polled every 2 s while the tab is visible), and the charts (charts.js)
// are refreshed when an execution finishes.
"use strict";

(() => {
  const table = document.getElementById("executions-table");
  const body = document.getElementById("executions-body");
  const names = JSON.parse(document.getElementById("workflow-names").textContent);
  const wantWorkflow = table.dataset.filterWorkflow;
  const wantStatus = table.dataset.filterStatus;
  const inserts = table.dataset.liveInserts === "yes";
  const QUEUE_POLL_MS = 2000;

  // Workflows created after the page loaded: their name is asked for once, then cached.
  const lookups = new Map();
  function lookupName(id) {
    if (!lookups.has(id)) {
      lookups.set(id, WE.api("GET", "/api/workflows/" + encodeURIComponent(id)).then((response) => {
        if (response.ok && response.data && response.data.name) {
          names[id] = response.data.name;
          return response.data.name;
        }
        lookups.delete(id);  // a later row may ask again (the database may have been away)
        return null;
      }, () => { lookups.delete(id); return null; }));
    }
    return lookups.get(id);
  }

  function workflowCell(id) {
    const a = document.createElement("a");
    a.href = "/workflows/" + id; a.dataset.workflowId = id;
    if (names[id]) {
      a.textContent = names[id];
    } else {
      // Until the name arrives: the id's tail, never a bare timestamp prefix.
      a.textContent = WE.shortId(id); a.title = id; a.classList.add("mono", "pending-name");
      lookupName(id).then((name) => {
        if (!name) return;
        body.querySelectorAll(`a[data-workflow-id="${id}"]`).forEach((link) => {
          link.textContent = name; link.title = ""; link.classList.remove("mono", "pending-name");
        });
      });
    }
    return a;
  }

  function onEvent(name, p) {
    if (Rows.FINAL.has(name)) Charts.finished();
    if (Rows.apply(body, name, p)) return;
    // A row we do not show yet: a new execution, if it fits the filters and we are on page 1.
    if (!inserts || (wantWorkflow && p.workflowId !== wantWorkflow)) return;
    const status = Rows.FINAL.has(name) || name === "waiting" ? name : "running";
    if (wantStatus && wantStatus !== status) return;
    body.prepend(Rows.make(p.executionId, workflowCell(p.workflowId), status, p.timestamp));
    Rows.apply(body, name, p);
    table.hidden = false;
    const empty = document.getElementById("executions-empty");
    if (empty) empty.hidden = true;
    while (body.children.length > 50) body.lastElementChild.remove();
  }

  // One request at a time, and none while the tab is hidden: cheap with many open tabs.
  let polling = false;
  async function refreshQueues() {
    if (polling || document.hidden) return;
    polling = true;
    try {
      const response = await WE.api("GET", "/api/queues");
      if (!response.ok || !response.data) return;
      for (const [queue, counts] of Object.entries(response.data.queues)) {
        const box = document.querySelector(`.queue[data-queue="${queue}"]`);
        if (!box) continue;
        for (const el of box.querySelectorAll("[data-count]")) {
          el.querySelector("strong").textContent = counts[el.dataset.count] || 0;
        }
      }
    } catch (_) {
      // The engine is restarting: the next tick tries again.
    } finally {
      polling = false;
    }
  }
  setInterval(refreshQueues, QUEUE_POLL_MS);
  document.addEventListener("visibilitychange", refreshQueues);

  // Batches: one message every 100 ms however many executions finish (cheap with many viewers).
  // On every (re)connect: the charts catch up with what finished while the socket was away.
  const socket = WE.connect((s) => { s.emit("subscribe_all", { batch: true }); Charts.refresh(); });
  socket.on("events", (items) => items.forEach((item) => onEvent(item.event, item)));
})();
