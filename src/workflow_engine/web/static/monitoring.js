// /monitoring: new executions appear and finish live; queue counts refresh every 5 s.
"use strict";

(() => {
  const table = document.getElementById("executions-table");
  const body = document.getElementById("executions-body");
  const names = JSON.parse(document.getElementById("workflow-names").textContent);
  const wantWorkflow = table.dataset.filterWorkflow;
  const wantStatus = table.dataset.filterStatus;
  const inserts = table.dataset.liveInserts === "yes";

  function workflowCell(id) {
    const a = document.createElement("a");
    a.href = "/workflows/" + id; a.textContent = names[id] || id.slice(0, 8) + "…";
    return a;
  }

  function onEvent(name, p) {
    if (Rows.apply(body, name, p)) return;
    // A row we do not show yet: a new execution, if it fits the filters and we are on page 1.
    if (!inserts || (wantWorkflow && p.workflowId !== wantWorkflow)) return;
    const status = Rows.FINAL.has(name) ? name : "running";
    if (wantStatus && wantStatus !== status) return;
    body.prepend(Rows.make(p.executionId, workflowCell(p.workflowId), status, p.timestamp));
    Rows.apply(body, name, p);
    table.hidden = false;
    const empty = document.getElementById("executions-empty");
    if (empty) empty.hidden = true;
    while (body.children.length > 50) body.lastElementChild.remove();
  }

  async function refreshQueues() {
    const response = await WE.api("GET", "/api/queues");
    if (!response.ok || !response.data) return;
    for (const [queue, counts] of Object.entries(response.data.queues)) {
      const box = document.querySelector(`.queue[data-queue="${queue}"]`);
      if (!box) continue;
      for (const el of box.querySelectorAll("[data-count]")) {
        el.querySelector("strong").textContent = counts[el.dataset.count] || 0;
      }
    }
  }
  setInterval(refreshQueues, 5000);

  // Batches: one message every 100 ms however many executions finish (cheap with many viewers).
  const socket = WE.connect((s) => s.emit("subscribe_all", { batch: true }));
  socket.on("events", (items) => items.forEach((item) => onEvent(item.event, item)));
})();
