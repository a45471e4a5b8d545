// The charts of /monitoring and of a workflow's page (templates/charts.html), drawn with uPlot
// (fetched from npm at set-up, like socket.io-client) from GET /api/stats: finished executions per
// bucket by final status (stacked bars), their p50/p95 durations, and the failure rate per
// workflow. The page's script calls `Charts.finished()` when an execution ends (the Socket.io
// events it already receives): the aggregate is fetched again, at most once per REFRESH_MS.
// Each chart keeps a text summary (the counts) beside it and in its data attributes.
"use strict";

const Charts = (() => {
  const root = document.getElementById("charts");
  if (!root) return { finished() {}, refresh() {} };

  const REFRESH_MS = 1000;       // a burst of finishes costs one request per second at most
  const SLIDE_MS = 30000;        // the window moves on even when nothing finishes
  const STATUSES = ["completed", "failed", "cancelled"];
  const css = getComputedStyle(document.documentElement);
  const COLORS = Object.fromEntries(STATUSES.map((s) => [s, css.getPropertyValue("--" + s).trim() || "#888"]));
  const PERIODS = { "1h": ["last hour", "per minute", "minute"], "24h": ["last 24 hours", "per 15 minutes", "15 minutes"] };
  const workflowId = root.dataset.workflowId;
  const statusFigure = document.getElementById("chart-status");
  const durationFigure = document.getElementById("chart-duration");
  const error = document.getElementById("charts-error");
  const rates = document.getElementById("failure-rates");
  const ratesEmpty = document.getElementById("failure-rates-empty");
  let windowName = root.dataset.window || "1h";
  let statusPlot = null;
  let durationPlot = null;
  let timer = null;
  let lastFetch = 0;
  let inFlight = false;
  let again = false;
  let ownCounts = [];  // per series of the status chart, each bucket's own count
  let xRange = [0, 1];  // the window, in seconds: the first and last bars show whole
  const timeScale = { time: true, range: () => xRange };

  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const percent = (rate) => (rate === null || rate === undefined ? "—" : (rate * 100).toFixed(rate > 0 && rate < 0.1 ? 1 : 0) + "%");

  function counted(t) {
    return `${plural(t.finished, "execution")} finished: ${t.completed} completed, ${t.failed} failed, ${t.cancelled} cancelled`;
  }

  function describe(figure, text, data) {
    const summary = figure.querySelector('[data-field="summary"]');
    summary.textContent = text;
    for (const [key, value] of Object.entries(data)) summary.dataset[key] = value === null ? "" : String(value);
    figure.querySelector(".chart-plot").setAttribute("aria-label", text);
  }

  // Stacked bars: each series is drawn over the one before, so series i holds the sum of the
  // statuses up to it; the legend and the tooltip show each status's own count.
  function stackedData(stats) {
    const half = stats.bucketSeconds / 2;
    const xs = stats.buckets.map((b) => Date.parse(b.start) / 1000 + half);
    const own = STATUSES.map((s) => stats.buckets.map((b) => b[s]));
    const sums = STATUSES.map((_, i) => stats.buckets.map((_, j) => own.slice(0, STATUSES.length - i).reduce((acc, col) => acc + col[j], 0)));
    return { data: [xs, ...sums], own: own.reverse() };
  }

  function size(figure) {
    const width = Math.max(260, figure.querySelector(".chart-plot").clientWidth || figure.clientWidth - 8);
    return { width, height: 200 };
  }

  function drawStatus(stats) {
    const { data, own } = stackedData(stats);
    ownCounts = own;
    const order = [...STATUSES].reverse();  // cancelled (the whole stack) drawn first
    if (!statusPlot) {
      const opts = {
        ...size(statusFigure),
        legend: { live: true },
        cursor: { points: { show: false } },
        scales: { x: timeScale, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
        axes: [{}, { values: (u, ticks) => ticks.map((v) => (Number.isInteger(v) ? v : "")) }],
        series: [
          {},
          ...order.map((status, i) => ({
            label: status,
            fill: COLORS[status],
            stroke: COLORS[status],
            width: 0,
            points: { show: false },
            paths: uPlot.paths.bars({ size: [0.8, 40] }),
            value: (u, v, si, idx) => (idx === null || idx === undefined ? "—" : String(ownCounts[si - 1][idx])),
          })),
        ],
      };
      statusPlot = new uPlot(opts, data, statusFigure.querySelector(".chart-plot"));
    } else {
      statusPlot.setData(data);
    }
    ownCounts = own;
  }

  function drawDurations(stats) {
    const xs = stats.buckets.map((b) => Date.parse(b.start) / 1000 + stats.bucketSeconds / 2);
    const data = [xs, stats.buckets.map((b) => b.p50Ms), stats.buckets.map((b) => b.p95Ms)];
    if (!durationPlot) {
      const line = (label, color, dash) => ({
        label, stroke: color, width: 2, dash, spanGaps: false,
        points: { show: true, size: 4 },
        value: (u, v) => (v === null || v === undefined ? "—" : WE.duration(Math.round(v))),
      });
      durationPlot = new uPlot({
        ...size(durationFigure),
        scales: { x: timeScale, y: { range: (u, min, max) => [0, Math.max(10, max || 0) * 1.1] } },
        axes: [{}, { size: 64, values: (u, ticks) => ticks.map((v) => WE.duration(Math.round(v))) }],
        series: [{}, line("p50", "#3b5bdb", undefined), line("p95", "#9c36b5", [6, 4])],
      }, data, durationFigure.querySelector(".chart-plot"));
    } else {
      durationPlot.setData(data);
    }
  }

  function showRates(stats) {
    if (!rates) return;
    const body = rates.querySelector("tbody");
    body.replaceChildren(...stats.workflows.map((w) => {
      const tr = document.createElement("tr");
      tr.dataset.workflowId = w.workflowId;
      for (const key of ["finished", "completed", "failed", "cancelled"]) tr.dataset[key] = w[key];
      tr.dataset.failureRate = w.failureRate === null ? "" : String(w.failureRate);
      const name = document.createElement("td");
      const link = document.createElement("a");
      link.href = "/workflows/" + w.workflowId; link.textContent = w.name || WE.shortId(w.workflowId);
      name.append(link);
      const cells = ["finished", "completed", "failed", "cancelled"].map((key) => {
        const td = document.createElement("td"); td.className = "num"; td.dataset.field = key; td.textContent = w[key];
        return td;
      });
      const rate = document.createElement("td");
      rate.dataset.field = "failureRate";
      const bar = document.createElement("span"); bar.className = "rate-bar";
      const fill = document.createElement("span"); fill.style.width = ((w.failureRate || 0) * 100).toFixed(1) + "%";
      bar.append(fill);
      const label = document.createElement("span"); label.className = "rate-label";
      label.textContent = `${percent(w.failureRate)} (${w.failed} of ${w.finished})`;
      rate.append(bar, label);
      tr.append(name, ...cells, rate);
      return tr;
    }));
    rates.hidden = stats.workflows.length === 0;
    ratesEmpty.hidden = stats.workflows.length > 0;
  }

  function show(stats) {
    const [period, unit] = PERIODS[stats.window];
    document.getElementById("charts-period").textContent = `${period}, ${unit}`;
    statusFigure.querySelector('[data-field="unit"]').textContent = unit;
    const t = stats.totals;
    describe(statusFigure, `${period[0].toUpperCase() + period.slice(1)}: ${counted(t)} (failure rate ${percent(t.failureRate)}).`, {
      window: stats.window, finished: t.finished, completed: t.completed, failed: t.failed,
      cancelled: t.cancelled, failureRate: t.failureRate,
    });
    const timed = t.p50Ms === null ? `${period[0].toUpperCase() + period.slice(1)}: no duration yet.`
      : `${period[0].toUpperCase() + period.slice(1)}: p50 ${WE.duration(Math.round(t.p50Ms))}, p95 ${WE.duration(Math.round(t.p95Ms))}.`;
    describe(durationFigure, timed, { window: stats.window, p50Ms: t.p50Ms, p95Ms: t.p95Ms });
    xRange = [Date.parse(stats.start) / 1000, Date.parse(stats.end) / 1000];
    drawStatus(stats);
    drawDurations(stats);
    showRates(stats);
    root.dataset.window = stats.window;
    root.dataset.updatedAt = new Date().toISOString();
  }

  async function refresh() {
    if (inFlight) { again = true; return; }
    if (document.hidden) return;
    inFlight = true; lastFetch = Date.now();
    try {
      const query = new URLSearchParams({ window: windowName });
      if (workflowId) query.set("workflowId", workflowId);
      const response = await WE.api("GET", "/api/stats?" + query);
      if (response.ok && response.data) {
        error.hidden = true;
        if (response.data.window === windowName) show(response.data);
      } else {
        error.textContent = "The charts could not be updated: " + ((response.data && response.data.detail) || response.status);
        error.hidden = false;
      }
    } catch (_) {
      // The engine is restarting: the next finish or the next slide tries again.
    } finally {
      inFlight = false;
      if (again) { again = false; schedule(); }
    }
  }

  function schedule() {
    if (timer) return;
    const wait = Math.max(0, lastFetch + REFRESH_MS - Date.now());
    timer = setTimeout(() => { timer = null; refresh(); }, wait);
  }

  root.querySelectorAll(".window-switch button").forEach((button) => {
    button.addEventListener("click", () => {
      windowName = button.dataset.window;
      root.querySelectorAll(".window-switch button").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
      refresh();
    });
  });
  window.addEventListener("resize", () => {
    if (statusPlot) statusPlot.setSize(size(statusFigure));
    if (durationPlot) durationPlot.setSize(size(durationFigure));
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) schedule(); });
  setInterval(schedule, SLIDE_MS);
  refresh();

  return {
    // An execution reached a final status (its `completed`, `failed` or `cancelled` event).
    finished: schedule,
    refresh: schedule,
  };
})();
