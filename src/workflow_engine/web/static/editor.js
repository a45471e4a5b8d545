// The workflow editor: YAML or JSON, checked by the server as you type, errors shown in place.
"use strict";

(() => {
  const card = document.getElementById("editor");
  const form = document.getElementById("editor-form");
  if (!card || !form) return;
  const text = document.getElementById("editor-text");
  const problems = document.getElementById("editor-problems");
  const status = document.getElementById("editor-status");
  const opener = document.getElementById("new-workflow") || document.getElementById("edit-workflow");
  const workflowId = form.dataset.workflowId || null;
  let timer = null;

  const format = () => form.querySelector("input[name=format]:checked").value;

  // Names in a message ('a', 'zzz') are shown as code, quotes kept so the text reads (and
  // copies) as the server wrote it; the step the problem is about stands out.
  function message(text, step) {
    return text.split(/('[^'\n]*')/).map((part) => {
      if (!/^'.*'$/.test(part)) return document.createTextNode(part);
      const code = document.createElement("code");
      code.textContent = part;
      code.className = part.slice(1, -1) === step ? "step-ref named" : "step-ref";
      return code;
    });
  }

  // Select a line of the text and scroll it into view.
  function jumpTo(line) {
    const lines = text.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    text.focus();
    text.setSelectionRange(start, start + (lines[line - 1] || "").length);
    const height = parseFloat(getComputedStyle(text).lineHeight) || 18;
    text.scrollTop = Math.max(0, (line - 3) * height);
  }

  function show(errors) {
    problems.replaceChildren();
    text.classList.toggle("invalid", errors.length > 0);
    for (const e of errors) {
      const li = document.createElement("li");
      if (e.step) li.dataset.step = e.step;
      const where = [e.line ? "line " + e.line : null, e.loc || null].filter(Boolean).join(" · ");
      if (where) {
        const w = document.createElement(e.line ? "button" : "strong");
        w.className = "where"; w.textContent = where;
        if (e.line) { w.type = "button"; w.title = "Show it in the text"; w.addEventListener("click", () => jumpTo(e.line)); }
        li.append(w, ": ");
      }
      li.append(...message(e.message, e.step));
      problems.append(li);
    }
  }

  async function check(dryRun) {
    const body = { text: text.value, format: format(), workflowId, dryRun };
    const result = await WE.api("POST", "/api/ui/editor", body);
    const data = result.data || {};
    const errors = data.errors || (result.ok ? [] : [{ message: data.detail || "The server refused it (" + result.status + ")" }]);
    show(errors);
    status.textContent = errors.length ? `${errors.length} problem${errors.length > 1 ? "s" : ""}` : (dryRun ? "Looks good." : "Saved.");
    return result;
  }

  text.addEventListener("input", () => {
    clearTimeout(timer);
    status.textContent = "Checking…";
    timer = setTimeout(() => check(true), 400);
  });

  form.querySelectorAll("input[name=format]").forEach((radio) => radio.addEventListener("change", () => check(true)));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await check(false);
    if (result.ok && result.data && result.data.url) window.location.href = result.data.url;
  });

  // Beside the editor: the step types this engine runs (built-in and plugins), from the API.
  const typesList = document.getElementById("step-types");
  const typesStatus = document.getElementById("step-types-status");
  let typesLoaded = false;

  function stepTypeItem(t) {
    const dt = document.createElement("dt");
    dt.dataset.stepType = t.name;
    dt.textContent = t.name;
    if (t.source !== "builtin") {
      const from = document.createElement("span");
      from.className = "pill"; from.title = "from a plugin"; from.textContent = t.source;
      dt.append(" ", from);
    }
    const dd = document.createElement("dd");
    // Docstrings mark code with backticks: shown as <code>, never parsed as HTML.
    t.description.split("`").forEach((part, i) => {
      if (i % 2 === 0) { dd.append(part); return; }
      const code = document.createElement("code");
      code.textContent = part;
      dd.append(code);
    });
    const fields = Object.keys((t.configSchema && t.configSchema.properties) || {});
    if (fields.length) {
      const line = document.createElement("div");
      line.className = "fields"; line.textContent = "config: " + fields.join(", ");
      dd.append(line);
    }
    return [dt, dd];
  }

  async function loadStepTypes() {
    if (typesLoaded) return;
    typesLoaded = true;
    const result = await WE.api("GET", "/api/step-types");
    if (!result.ok || !result.data) {
      typesLoaded = false;  // tried again when the editor is opened again
      typesStatus.textContent = "Could not load the step types (" + result.status + ").";
      return;
    }
    typesList.replaceChildren(...result.data.stepTypes.flatMap(stepTypeItem));
    typesStatus.hidden = true;
  }

  document.getElementById("editor-cancel").addEventListener("click", () => { card.hidden = true; });
  if (opener) opener.addEventListener("click", () => { card.hidden = false; text.focus(); check(true); loadStepTypes(); });
  if (!card.hidden) loadStepTypes();
})();
