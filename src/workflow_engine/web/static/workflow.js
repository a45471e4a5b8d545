// One workflow: the test panel (run with JSON input, watch the steps live), Recent Executions,
// and its charts (charts.js), refreshed when one of its executions finishes.
"use strict";

(() => {
  const workflowId = document.getElementById("workflow-head").dataset.workflowId;
  const body = document.getElementById("executions-body");
  const table = document.getElementById("executions-table");
  const empty = document.getElementById("executions-empty");
  const form = document.getElementById("test-form");
  const input = document.getElementById("test-input");
  const error = document.getElementById("test-error");
  const started = document.getElementById("test-started");
  const steps = document.getElementById("test-steps");
  const result = document.getElementById("test-result");
  let testExecution = null;
  let socket = null;

  function addRow(id, status, createdIso) {
    if (body.querySelector(`tr[data-execution-id="${id}"]`)) return;
    body.prepend(Rows.make(id, null, status, createdIso));
    table.hidden = false; empty.hidden = true;
    while (body.children.length > 20) body.lastElementChild.remove();
  }

  function testStep(name, p) {
    if (p.executionId !== testExecution) return;
    const li = p.stepKey && steps.querySelector(`li[data-step-key="${p.stepKey}"]`);
    if (li) {
      const status = name === "step_completed" ? (p.status || "completed")
        : name === "step_failed" ? "failed" : name === "step_retrying" ? "retrying" : "running";
      WE.setStatus(li.querySelector('[data-field="status"]'), status);
      li.dataset.status = status;
      if (p.durationMs !== undefined) li.querySelector('[data-field="duration"]').textContent = WE.duration(p.durationMs);
    }
    if (Rows.FINAL.has(name)) {
      result.textContent = name === "completed" ? `Completed in ${WE.duration(p.durationMs)}.` : `${name}: ${p.error || ""}`;
      result.dataset.status = name;
    }
  }

  function onEvent(name, p) {
    if (name === "started") addRow(p.executionId, "running", p.timestamp);
    if (Rows.FINAL.has(name) && p.workflowId === workflowId) Charts.finished();
    Rows.apply(body, name, p);
    testStep(name, p);
  }

  // No test panel form when the key may not start executions (a viewer's).
  if (form) form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    let value;
    try {
      value = JSON.parse(input.value.trim() || "{}");
    } catch (e) {
      // Nothing is sent: the input must be JSON.
      error.textContent = "The input is not valid JSON: " + e.message;
      error.hidden = false; input.classList.add("invalid");
      return;
    }
    input.classList.remove("invalid");
    const response = await WE.api("POST", `/api/workflows/${workflowId}/execute`, { input: value });
    if (!response.ok) {
      error.textContent = (response.data && response.data.detail) || "The engine refused it (" + response.status + ")";
      error.hidden = false;
      return;
    }
    testExecution = response.data.executionId;
    steps.hidden = false; result.textContent = ""; delete result.dataset.status;
    steps.querySelectorAll("li").forEach((li) => { li.dataset.status = "pending"; WE.setStatus(li.querySelector('[data-field="status"]'), "pending"); li.querySelector('[data-field="duration"]').textContent = ""; });
    started.replaceChildren(document.createTextNode("Started "));
    started.append(WE.idRef(testExecution, "/executions/" + testExecution));
    addRow(testExecution, "pending", new Date().toISOString());
    // Its own ordered stream with catch-up: whatever ran before this line is replayed.
    if (socket) socket.emit("subscribe", { executionId: testExecution, afterSeq: 0 });
  });

  if (input) input.addEventListener("input", () => { input.classList.remove("invalid"); error.hidden = true; });

  socket = WE.connect((s) => {
    s.emit("subscribe_workflow", workflowId);
    Charts.refresh();  // what finished while the socket was away
    if (testExecution) s.emit("subscribe", { executionId: testExecution, afterSeq: 0 });
  });
  socket.onAny(onEvent);
})();
