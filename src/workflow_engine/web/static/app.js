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

  // Ids are UUIDv7: their first 12 hex digits are the creation time, the same for every row
  // created within a minute, so people read the random tail (render.py `short_id` does the same).
  const SHORT_ID_CHARS = 8;
  function shortId(id) {
    if (!id) return "";
    return id.length <= SHORT_ID_CHARS ? id : "…" + id.slice(-SHORT_ID_CHARS);
  }

  function copyButton(id) {
    const button = document.createElement("button");
    button.type = "button"; button.className = "copy-id"; button.dataset.copy = id;
    button.title = "Copy the full id"; button.setAttribute("aria-label", "Copy the full id " + id);
    return button;
  }

  // The id's tail (a link when href is given), the whole id in the tooltip, a copy button: the
  // markup of macros.html `id_ref`.
  function idRef(id, href) {
    const wrap = document.createElement("span");
    wrap.className = "id-ref";
    const text = document.createElement(href ? "a" : "span");
    text.className = "mono"; text.title = id; text.textContent = shortId(id);
    if (href) text.href = href;
    wrap.append(text, copyButton(id));
    return wrap;
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); return true; } catch (_) { /* below */ }
    }
    // Plain http on another host is not a secure context: the old way still works there.
    const area = document.createElement("textarea");
    area.value = text; area.setAttribute("readonly", ""); area.style.position = "fixed"; area.style.opacity = "0";
    document.body.append(area); area.select();
    let done = false;
    try { done = document.execCommand("copy"); } catch (_) { done = false; }
    area.remove();
    return done;
  }

  // One listener for every copy button, present or added later by a live update.
  document.addEventListener("click", async (event) => {
    const button = event.target.closest && event.target.closest("button.copy-id");
    if (!button) return;
    event.preventDefault(); event.stopPropagation();
    const ok = await copyText(button.dataset.copy);
    button.dataset.copied = ok ? "yes" : "no";
    button.title = ok ? "Copied" : "Could not copy: select the id in the tooltip";
    setTimeout(() => { delete button.dataset.copied; button.title = "Copy the full id"; }, 1500);
  });

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

  return { api, duration, relative, absolute, timeEl, badge, setStatus, pretty, connect, shortId, idRef, copyButton, FINAL };
})();
