// Shared helpers for the pages: API calls with the session cookie, times and durations a person
// reads at a glance, the Socket.io connection and status badges. No framework on purpose.
"use strict";

const WE = (() => {
  // The statuses an execution ends in (domain/status.py FINAL_STATUSES).
  const FINAL = new Set(["completed", "failed", "cancelled"]);

  async function api(method, path, body) {
    // X-Requested-With: the API refuses cookie-authenticated writes without it (CSRF guard).
    const options = { method, headers: { "X-Requested-With": "workflow-engine-ui" }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    if (response.status === 401) { window.location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); }
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    return { ok: response.ok, status: response.status, data };
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "—";
    if (ms < 1000) return ms + " ms";
    if (ms < 10000) return (ms / 1000).toFixed(1) + " s";
    let s = Math.floor(ms / 1000);
    if (s < 60) return s + " s";
    let m = Math.floor(s / 60); s %= 60;
    if (m < 60) return s ? `${m} min ${s} s` : `${m} min`;
    const h = Math.floor(m / 60); m %= 60;
    return m ? `${h} h ${m} min` : `${h} h`;
  }

  function relative(iso) {
    const seconds = Math.floor((Date.now() - new Date(iso).getTime()) / 1000);
    if (seconds < 10) return "just now";
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    return Math.floor(seconds / 86400) + " d ago";
  }

  function absolute(iso) {
    return new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function timeEl(iso) {
    const t = document.createElement("time");
    t.dateTime = iso; t.title = absolute(iso); t.dataset.relative = ""; t.textContent = relative(iso);
    return t;
  }

  function refreshTimes() {
    document.querySelectorAll("time[data-relative]").forEach((t) => { t.textContent = relative(t.dateTime); });
  }
  setInterval(refreshTimes, 15000);

  function badge(status) {
    const span = document.createElement("span");
    span.className = "badge status-" + status; span.dataset.status = status; span.textContent = status;
    return span;
  }

  function setStatus(container, status) {
    if (!container) return;
    container.replaceChildren(badge(status));
  }

  function pretty(value) { return JSON.stringify(value, null, 2); }

  function connect(onConnect) {
    // Same origin: the session cookie authenticates the socket, like the pages.
    const socket = io({ path: "/api/socket", transports: ["websocket", "polling"] });
    const live = document.getElementById("live-indicator");
    const text = live && live.querySelector(".live-text");
    if (live) live.hidden = false;
    const show = (state, label) => { if (live) { live.dataset.state = state; text.textContent = label; } };
    socket.on("connect", () => { show("on", "live"); onConnect(socket); });
    socket.on("disconnect", () => show("off", "reconnecting…"));
    socket.on("connect_error", (err) => {
      show("off", "offline");
      if (String(err && err.message).includes("authentication")) window.location.href = "/login";
    });
    return socket;
  }

  return { api, duration, relative, absolute, timeEl, badge, setStatus, pretty, connect, FINAL };
})();
