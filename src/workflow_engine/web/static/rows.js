// Execution table rows kept live from Socket.io events (Monitoring and Recent Executions).
"use strict";

const Rows = (() => {
  const FINAL = WE.FINAL;

  function make(id, workflowCell, status, createdIso) {
    const tr = document.createElement("tr");
    tr.dataset.executionId = id; tr.dataset.status = status; tr.classList.add("fresh");
    const idCell = document.createElement("td"); idCell.append(WE.idRef(id, "/executions/" + id));
    const cells = [idCell];
    if (workflowCell) {
      const td = document.createElement("td"); td.dataset.field = "workflow"; td.append(workflowCell); cells.push(td);
    }
    const statusCell = document.createElement("td"); statusCell.dataset.field = "status"; statusCell.append(WE.badge(status));
    const created = document.createElement("td"); created.dataset.field = "created"; created.append(WE.timeEl(createdIso));
    const dur = document.createElement("td"); dur.dataset.field = "duration"; dur.className = "num"; dur.textContent = "—";
    const err = document.createElement("td"); err.dataset.field = "error"; err.className = "error-cell";
    tr.append(...cells, statusCell, created, dur, err);
    return tr;
  }

  // Apply one event to the row of its execution; returns false when there is no such row.
  function apply(body, name, payload) {
    const tr = body.querySelector(`tr[data-execution-id="${payload.executionId}"]`);
    if (!tr) return false;
    let status = null;
    if (name === "started" || name === "resumed" || name.startsWith("step_")) status = "running";
    if (name === "waiting") status = "waiting";
    if (FINAL.has(name)) status = name;
    if (status && !(FINAL.has(tr.dataset.status) && !FINAL.has(status))) {
      tr.dataset.status = status;
      WE.setStatus(tr.querySelector('[data-field="status"]'), status);
    }
    if (FINAL.has(name)) {
      tr.querySelector('[data-field="duration"]').textContent = WE.duration(payload.durationMs);
      const err = tr.querySelector('[data-field="error"]');
      err.textContent = (payload.error || "").slice(0, 80); err.title = payload.error || "";
    }
    return true;
  }

  return { make, apply, FINAL };
})();
