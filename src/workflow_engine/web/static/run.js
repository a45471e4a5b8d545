// The page of a trigger key: start one of its workflows with a JSON input; it reads nothing
// else, so the execution's id is all it shows.
"use strict";

(() => {
  document.querySelectorAll(".run-card").forEach((card) => {
    const id = card.dataset.workflowId;
    const form = card.querySelector("form");
    const input = form.querySelector("textarea");
    const error = form.querySelector('[data-field="error"]');
    const started = form.querySelector('[data-field="started"]');
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      let value;
      try {
        value = JSON.parse(input.value.trim() || "{}");
      } catch (e) {
        error.textContent = "The input is not valid JSON: " + e.message;
        error.hidden = false;
        return;
      }
      const response = await WE.api("POST", `/api/workflows/${id}/execute`, { input: value });
      if (!response.ok) {
        error.textContent = (response.data && response.data.detail) || "Refused (" + response.status + ")";
        error.hidden = false;
        return;
      }
      started.textContent = "Started execution " + response.data.executionId;
      started.dataset.executionId = response.data.executionId;
    });
  });
})();
