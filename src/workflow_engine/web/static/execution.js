// One execution: the steps on their time axis (timeline.js) and the logs follow the execution's
// ordered event stream; cancel and re-run, approve and reject an approval step (when the key's
// role allows them: the buttons are absent otherwise), and the History of who did what.
"use strict";

(() => {
  const head = document.getElementById("execution-head");
  const id = head.dataset.executionId;
  let lastSeq = Number(head.dataset.lastSeq || 0);
  // A streaming step's text is shown from its first delta even when the page was rendered
  // mid-stream: the first subscription then replays from seq 0, and the events the page already
  // shows are skipped, all but the deltas.
  let deltaSeq = 0;
  const logs = document.getElementById("logs");
  const cancelButton = document.getElementById("cancel-button");
  const rerunButton = document.getElementById("rerun-button");
  const actionError = document.getElementById("action-error");
  const FINAL = WE.FINAL;
  const { field } = Timeline;

  function setExecutionStatus(status) {
    head.dataset.status = status;
    WE.setStatus(document.getElementById("execution-status"), status);
    if (cancelButton) {
      cancelButton.hidden = !(status === "pending" || status === "running" || status === "waiting");
    }
    if (status !== "waiting") clearWaits();
    if (rerunButton) rerunButton.hidden = !(status === "failed" || status === "cancelled");
  }

  function showJson(el, name, value) {
    field(el, name).textContent = WE.pretty(value);
    field(el, name + "-box").hidden = false;
    field(el, "no-io").hidden = true;
  }

  // A step's times as the bars need them: its first start, and its end as start + duration.
  function setTimes(el, status, p) {
    if (status === "running" || status === "retrying") {
      if (!el.dataset.startedAt) el.dataset.startedAt = p.timestamp;
      el.dataset.completedAt = ""; el.dataset.durationMs = "";
      return;
    }
    const ms = p.durationMs === undefined ? null : p.durationMs;
    if (!el.dataset.startedAt) el.dataset.startedAt = new Date(Date.parse(p.timestamp) - (ms || 0)).toISOString();
    el.dataset.completedAt = ms === null ? p.timestamp : new Date(Date.parse(el.dataset.startedAt) + ms).toISOString();
    el.dataset.durationMs = ms === null ? "" : ms;
  }

  function setStep(p, status) {
    const el = p.index === undefined || p.index === null ? Timeline.row(p.stepKey) : Timeline.item(p.stepKey, p.index);
    if (!el) return;
    el.dataset.status = status;
    WE.setStatus(field(el, "status"), status);
    setTimes(el, status, p);
    // Items only say so when they took more than one attempt: their rows stay one line.
    if (p.attempt) field(el, "attempts").textContent = p.attempt > 1 ? `${p.attempt} attempts` : el.classList.contains("item") ? "" : "1 attempt";
    const err = field(el, "error");
    if (p.error) {
      err.textContent = status === "retrying" ? `Attempt ${p.attempt} failed: ${p.error} — retrying in ${WE.duration(p.nextDelayMs)}` : p.error;
      err.hidden = false;
    } else if (status === "completed" || status === "running") { err.hidden = true; }
    if (p.output !== null && p.output !== undefined) showJson(el, "output", p.output);
    // How many items a map has is in its row, not in the event: asked for once it starts.
    if (status === "running" && el.classList.contains("map") && !el.dataset.itemTotal) loadDetails();
    Timeline.changed(el);
  }

  // What the events do not carry (a map's item count, step inputs, child executions), from the
  // API: when a map starts, and once the execution has ended.
  async function loadDetails() {
    const response = await WE.api("GET", `/api/executions/${id}`);
    if (!response.ok || !response.data) return;
    for (const s of response.data.steps) {
      const el = Timeline.row(s.stepKey);
      if (!el) continue;
      if (el.classList.contains("map") && s.input && Array.isArray(s.input.items)) Timeline.setItemTotal(s.stepKey, s.input.items.length);
      if (s.input !== null && field(el, "input-box").hidden) showJson(el, "input", s.input);
    }
    for (const child of response.data.children || []) Timeline.setChild(child.parentStepKey, child.id);
    showAudit(response.data.audit || []);
  }

  // The History card: the audit entries of this execution (`cancelled by ops-key`).
  function showAudit(entries) {
    const list = document.getElementById("audit");
    if (!list || !entries.length) return;
    list.replaceChildren(...entries.map((a) => {
      const li = document.createElement("li");
      li.dataset.action = a.action; li.dataset.actor = a.actor;
      const summary = document.createElement("span");
      summary.className = "summary"; summary.textContent = a.summary;
      li.append(summary, " ", WE.timeEl(a.at));
      return li;
    }));
    document.getElementById("audit-empty").hidden = true;
    document.getElementById("audit-card").hidden = false;
  }

  // An llm step's answer as it streams (`step_delta`); a new attempt starts it over.
  function addDelta(p) {
    const el = p.index === undefined || p.index === null ? Timeline.row(p.stepKey) : Timeline.item(p.stepKey, p.index);
    if (!el) return;
    const box = field(el, "stream");
    if (box.dataset.attempt !== String(p.attempt)) { box.textContent = ""; box.dataset.attempt = String(p.attempt); }
    const follow = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.textContent += p.delta;
    box.hidden = false;
    if (follow) box.scrollTop = box.scrollHeight;
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
    // "Step 'sub' started child execution …": the link appears on the step at once.
    const meta = p.metadata || {};
    if (meta.childExecutionId) Timeline.setChild(meta.stepKey, meta.childExecutionId);
  }

  function finish(name, p) {
    setExecutionStatus(name);
    head.dataset.completedAt = p.timestamp;
    document.getElementById("fact-duration").textContent = WE.duration(p.durationMs);
    document.getElementById("fact-completed").replaceChildren(WE.timeEl(p.timestamp));
    if (p.error) { const e = document.getElementById("execution-error"); e.textContent = p.error; e.hidden = false; }
    if (name === "completed" && p.output !== undefined) {
      document.getElementById("execution-output").textContent = WE.pretty(p.output);
      document.getElementById("output-section").hidden = false;
    }
    Timeline.changed();
    loadDetails();
  }

  // What the execution waits for (the `waiting` events; cleared once it runs or ends).
  const waitNote = document.getElementById("wait-note");
  const canOperate = Boolean(cancelButton);
  function clearWaits() { waitNote.replaceChildren(); waitNote.hidden = true; }
  const waitOf = (key) => waitNote.querySelector(`[data-step-key="${CSS.escape(key)}"]`);

  // An approval waiting for a person: its message, a comment box and Approve / Reject (the same
  // markup as the page's own, execution.html `wait_line`).
  function approvalBlock(p, line) {
    const block = document.createElement("div");
    block.className = "approval";
    const message = document.createElement("blockquote");
    message.className = "approval-message"; message.dataset.field = "message";
    message.textContent = p.approval.message;
    block.append(line, message);
    if (canOperate) {
      const form = document.createElement("div");
      form.className = "approval-form";
      const comment = document.createElement("textarea");
      comment.className = "approval-comment"; comment.dataset.field = "comment";
      comment.maxLength = 2000; comment.rows = 2; comment.placeholder = "Comment (optional)";
      comment.setAttribute("aria-label", "Comment on the decision");
      const buttons = document.createElement("div");
      buttons.className = "approval-buttons";
      for (const [verb, label, cls] of [["approve", "Approve", "primary"], ["reject", "Reject", "danger"]]) {
        const b = document.createElement("button");
        b.type = "button"; b.className = cls; b.dataset.decide = verb; b.textContent = label;
        buttons.append(b);
      }
      form.append(comment, buttons);
      block.append(form);
    }
    return block;
  }

  // Who decided an approval step, when, and their comment: on the step's row.
  function decisionNodes(d) {
    const who = document.createElement("strong"); who.dataset.field = "decided-by"; who.textContent = d.by;
    const at = document.createElement("time"); at.dateTime = d.at; at.textContent = WE.absolute(d.at);
    const nodes = [(d.approved ? "Approved" : "Rejected") + " by ", who, " at ", at];
    if (d.comment) {
      const q = document.createElement("q"); q.dataset.field = "decision-comment"; q.textContent = d.comment;
      nodes.push(": ", q);
    }
    return nodes;
  }
  function showDecision(key, d) {
    const el = Timeline.row(key);
    const line = el && field(el, "decision");
    if (!line) return;
    line.replaceChildren(...decisionNodes(d));
    line.classList.toggle("rejected", !d.approved);
    line.hidden = false;
    // The approval's box, if still shown, says it was decided (its buttons are gone).
    const block = waitOf(key);
    const form = block && block.querySelector(".approval-form");
    if (form) {
      const done = document.createElement("p");
      done.className = "approval-done"; done.append(...decisionNodes(d));
      form.replaceWith(done);
    }
  }

  async function decide(button) {
    const block = button.closest("[data-step-key]");
    const key = block.dataset.stepKey;
    const comment = block.querySelector(".approval-comment").value.trim();
    for (const b of block.querySelectorAll("button[data-decide]")) b.disabled = true;
    actionError.hidden = true;
    const path = `/api/executions/${id}/steps/${encodeURIComponent(key)}/${button.dataset.decide}`;
    const response = await WE.api("POST", path, comment ? { comment } : {});
    if (!response.ok) {
      actionError.textContent = (response.data && response.data.detail) || "Refused (" + response.status + ")";
      actionError.hidden = false;
      for (const b of block.querySelectorAll("button[data-decide]")) b.disabled = false;
      return;
    }
    showDecision(key, response.data);
    loadDetails();  // the History now says who decided
  }
  waitNote.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-decide]");
    if (button) decide(button);
  });

  function addWait(p) {
    let line = document.createElement("p");
    const code = (text) => { const c = document.createElement("code"); c.textContent = text; return c; };
    const until = p.until ? " until " + WE.absolute(p.until) : "";
    line.append("Step ", code(p.stepKey), ": ");
    if (p.approval) {
      line.append("waiting for a decision" + until);
      line = approvalBlock(p, line);
    } else if (p.event) {
      line.append("waiting for event ", code(p.event.name));
      if (p.event.key) line.append(" (key ", code(p.event.key), ")");
      line.append(until);
    } else line.append("sleeping" + until);
    waitOf(p.stepKey)?.remove();
    line.dataset.stepKey = p.stepKey;
    waitNote.append(line);
    waitNote.hidden = false;
  }

  function onEvent(name, p) {
    if (!p || p.executionId !== id) return;
    if (name === "step_delta") {
      if (p.seq <= deltaSeq) return;
      deltaSeq = p.seq;
      if (p.seq > lastSeq) lastSeq = p.seq;
      return addDelta(p);
    }
    if (p.seq <= lastSeq) return;
    lastSeq = p.seq;
    Timeline.noteServerTime(p.timestamp);
    if (name === "log") return addLog(p);
    if (name === "started") {
      setExecutionStatus("running");
      head.dataset.startedAt = p.timestamp;
      document.getElementById("fact-started").replaceChildren(WE.timeEl(p.timestamp));
      Timeline.changed();
    } else if (name === "waiting") {
      addWait(p);
      head.dataset.status = "waiting";
      WE.setStatus(document.getElementById("execution-status"), "waiting");
      cancelButton.hidden = false;
    } else if (name === "resumed") {
      if (p.decision) { showDecision(p.stepKey, p.decision); loadDetails(); }
      waitOf(p.stepKey)?.remove();
      if (!waitNote.children.length) setExecutionStatus("running");
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

  if (cancelButton) cancelButton.addEventListener("click", () => act(`/api/executions/${id}/cancel`, (data) => {
    loadDetails();  // the History now says who cancelled it
    // A pending execution is cancelled at once (no worker sends an event for it).
    if (data.status === "cancelled") return setExecutionStatus("cancelled");
    cancelButton.disabled = true; cancelButton.textContent = "Cancelling…";
  }));
  if (rerunButton) rerunButton.addEventListener("click", () => act(`/api/executions/${id}/rerun`, (data) => {
    window.location.href = "/executions/" + data.executionId;
  }));

  // On every (re)connect, resume after the last event shown: the server replays what we missed.
  const streaming = () => document.querySelector('.step[data-type="llm"][data-status="running"]');
  const socket = WE.connect((s) => s.emit("subscribe", { executionId: id, afterSeq: deltaSeq === 0 && streaming() ? 0 : lastSeq }));
  socket.onAny(onEvent);
})();
