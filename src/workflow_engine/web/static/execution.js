// One execution: the step timeline and the logs follow the execution's ordered event stream.
"use strict";

(() => {
  const head = document.getElementById("execution-head");
  const id = head.dataset.executionId;
  let lastSeq = Number(head.dataset.lastSeq || 0);
  const logs = document.getElementById("logs");
  const cancelButton = document.getElementById("cancel-button");
  const rerunButton = document.getElementById("rerun-button");
  const actionError = document.getElementById("action-error");
  const FINAL = WE.FINAL;

  const step = (key) => document.querySelector(`.step[data-step-key="${key}"]`);
  const field = (el, name) => el.querySelector(`[data-field="${name}"]`);

  function setExecutionStatus(status) {
    head.dataset.status = status;
    WE.setStatus(document.getElementById("execution-status"), status);
    cancelButton.hidden = !(status === "pending" || status === "running");
    rerunButton.hidden = !(status === "failed" || status === "cancelled");
  }

  function setStep(p, status) {
    const el = step(p.stepKey);
    if (!el) return;
    el.dataset.status = status;
    WE.setStatus(field(el, "status"), status);
    if (p.attempt) field(el, "attempts").textContent = p.attempt > 1 ? `${p.attempt} attempts` : "1 attempt";
    if (p.durationMs !== undefined) field(el, "duration").textContent = WE.duration(p.durationMs);
    const err = field(el, "error");
    if (p.error) {
      err.textContent = status === "retrying" ? `Attempt ${p.attempt} failed: ${p.error} — retrying in ${WE.duration(p.nextDelayMs)}` : p.error;
      err.hidden = false;
    } else if (status === "completed" || status === "running") { err.hidden = true; }
    if ("output" in p && p.output !== null && p.output !== undefined) {
      field(el, "output").textContent = WE.pretty(p.output);
      field(el, "output-box").hidden = false;
    }
  }

  function addLog(p) {
    if (p.logId && logs.querySelector(`[data-log-id="${p.logId}"]`)) return;
    const li = document.createElement("li");
    li.className = "log level-" + p.level; li.dataset.logId = p.logId || "";
    const t = document.createElement("time");
    t.dateTime = p.timestamp; t.title = WE.absolute(p.timestamp); t.textContent = p.timestamp.slice(11, 23);
    const level = document.createElement("span"); level.className = "level"; level.textContent = p.level;
    const message = document.createElement("span"); message.className = "message"; message.textContent = p.message;
    li.append(t, level, message);
    logs.append(li);
    document.getElementById("log-count").textContent = logs.children.length;
    if (logs.scrollHeight - logs.scrollTop - logs.clientHeight < 80) logs.scrollTop = logs.scrollHeight;
  }

  function finish(name, p) {
    setExecutionStatus(name);
    document.getElementById("fact-duration").textContent = WE.duration(p.durationMs);
    document.getElementById("fact-completed").replaceChildren(WE.timeEl(p.timestamp));
    if (p.error) { const e = document.getElementById("execution-error"); e.textContent = p.error; e.hidden = false; }
    if (name === "completed" && p.output !== undefined) {
      document.getElementById("execution-output").textContent = WE.pretty(p.output);
      document.getElementById("output-section").hidden = false;
    }
  }

  function onEvent(name, p) {
    if (!p || p.executionId !== id) return;
    if (p.seq <= lastSeq) return;
    lastSeq = p.seq;
    if (name === "log") return addLog(p);
    if (name === "started") {
      setExecutionStatus("running");
      document.getElementById("fact-started").replaceChildren(WE.timeEl(p.timestamp));
    } else if (name === "step_started") setStep(p, "running");
    else if (name === "step_retrying") setStep(p, "retrying");
    else if (name === "step_completed") setStep(p, p.status || "completed");
    else if (name === "step_failed") setStep(p, "failed");
    else if (FINAL.has(name)) finish(name, p);
  }

  async function act(path, then) {
    actionError.hidden = true;
    const response = await WE.api("POST", path);
    if (!response.ok) {
      actionError.textContent = (response.data && response.data.detail) || "Refused (" + response.status + ")";
      actionError.hidden = false;
      return;
    }
    then(response.data);
  }

  cancelButton.addEventListener("click", () => act(`/api/executions/${id}/cancel`, (data) => {
    // A pending execution is cancelled at once (no worker sends an event for it).
    if (data.status === "cancelled") return setExecutionStatus("cancelled");
    cancelButton.disabled = true; cancelButton.textContent = "Cancelling…";
  }));
  rerunButton.addEventListener("click", () => act(`/api/executions/${id}/rerun`, (data) => {
    window.location.href = "/executions/" + data.executionId;
  }));

  // On every (re)connect, resume after the last event shown: the server replays what we missed.
  const socket = WE.connect((s) => s.emit("subscribe", { executionId: id, afterSeq: lastSeq }));
  socket.onAny(onEvent);
})();
