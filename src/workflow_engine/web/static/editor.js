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

  function show(errors) {
    problems.replaceChildren();
    text.classList.toggle("invalid", errors.length > 0);
    for (const e of errors) {
      const li = document.createElement("li");
      const where = [e.line ? "line " + e.line : null, e.loc || null].filter(Boolean).join(" · ");
      if (where) { const w = document.createElement("strong"); w.textContent = where + ": "; li.append(w); }
      li.append(document.createTextNode(e.message));
      problems.append(li);
    }
  }

  async function check(dryRun) {
    const body = { text: text.value, format: format(), workflowId, dryRun };
    const result = await WE.api("POST", "/api/ui/editor", body);
    const errors = (result.data && result.data.errors) || (result.ok ? [] : [{ message: "The server refused it (" + result.status + ")" }]);
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

  document.getElementById("editor-cancel").addEventListener("click", () => { card.hidden = true; });
  if (opener) opener.addEventListener("click", () => { card.hidden = false; text.focus(); check(true); });
})();
