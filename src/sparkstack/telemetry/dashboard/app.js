// sparkstack dashboard: polls GET /admin/status once a second with the admin key
// kept in sessionStorage; POST /admin/models/NAME/ACTION for the buttons.
"use strict";

const KEY = "sparkstack.adminKey";
const COLORS = ["#4e9af1", "#e8a33d", "#b36ae2", "#3fbf8f", "#e5534b", "#d4d44a", "#5fc9d8"];
const HISTORY = 120;
const history = {};  // model -> {tok: [], ttft: [], kv: []}
let colorOf = {};
let last = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "style") node.style.cssText = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function gib(bytes) {
  return bytes == null ? "–" : (bytes / 2 ** 30).toFixed(2) + " GiB";
}

function num(value, digits = 1) {
  return value == null ? "–" : Number(value).toFixed(digits);
}

function headers() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: "Bearer " + key } : {};
}

function showError(message) {
  const box = $("error");
  box.hidden = !message;
  box.textContent = message || "";
}

async function call(method, path) {
  let response;
  try {
    response = await fetch(path, { method, headers: headers(), cache: "no-store" });
  } catch (err) {
    throw new Error("the gateway does not answer (" + err.message + ")");
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) {
    const message = body && body.error && body.error.message;
    throw new Error(message || ("HTTP " + response.status + " from " + path));
  }
  return body;
}

function memorySegments(doc) {
  const m = doc.machine;
  const segments = [];
  let models = 0;
  for (const model of doc.models) {
    if (model.held_bytes > 0) {
      segments.push({ kind: "model", name: model.name, bytes: model.held_bytes });
      models += model.held_bytes;
    }
  }
  const total = m.total_bytes || 0;
  const available = m.available_bytes || 0;
  const reserve = m.host_reserve_bytes || 0;
  if (total) {
    const other = Math.max(0, total - available - models);
    if (other > 0) segments.push({ kind: "other", name: "other use", bytes: other });
    segments.push({ kind: "free", name: "free", bytes: Math.max(0, available - reserve) });
    segments.push({ kind: "reserve", name: "host reserve", bytes: Math.min(reserve, available || reserve) });
  }
  return segments;
}

function renderMemory(doc) {
  const segments = memorySegments(doc);
  const sum = segments.reduce((a, s) => a + s.bytes, 0) || 1;
  const bar = $("memory");
  const legend = $("legend");
  bar.replaceChildren();
  legend.replaceChildren();
  for (const s of segments) {
    const pct = (100 * s.bytes) / sum;
    const style = "width:" + pct.toFixed(3) + "%" +
      (s.kind === "model" ? ";background:" + colorOf[s.name] : "");
    const attrs = { class: "seg " + s.kind, style, title: s.name + ": " + gib(s.bytes) };
    if (s.kind === "model") attrs["data-model"] = s.name;
    bar.append(el("div", attrs, pct > 8 ? s.name : ""));
    const swatch = el("i", { class: "seg " + s.kind,
      style: s.kind === "model" ? "background:" + colorOf[s.name] : "" });
    legend.append(el("span", {}, swatch, s.name + " " + gib(s.bytes)));
  }
  const m = doc.machine;
  $("machine").textContent = [m.name, m.device, m.unified ? "unified memory" : null,
    "total " + gib(m.total_bytes), "available " + gib(m.available_bytes),
    "watchdog " + m.watchdog.state].filter(Boolean).join(" · ");
}

function card(model) {
  const rows = [
    ["engine", model.engine + " (" + model.runtime + ")"],
    ["pid", model.pid == null ? "–" : String(model.pid)],
    ["planned / measured", gib(model.planned_bytes) + " / " + gib(model.measured_bytes)],
    ["KV cache", model.kv_cache_usage == null ? "–" : num(100 * model.kv_cache_usage) + " %"],
    ["running / waiting", model.running + " / " + model.waiting],
    ["prompt / gen tok/s", num(model.prompt_tok_s) + " / " + num(model.generation_tok_s)],
    ["TTFT p50 / p95 ms", num(model.ttft_p50_ms) + " / " + num(model.ttft_p95_ms)],
    ["ITL p50 / p95 ms", num(model.itl_p50_ms) + " / " + num(model.itl_p95_ms)],
    ["req/s · errors (1 min)", num(model.requests_per_s, 2) + " · " + model.errors_last_minute],
  ];
  const dl = el("dl");
  for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", {}, v));
  const actions = el("div", { class: "actions" });
  for (const action of ["load", "unload", "sleep", "wake"]) {
    const button = el("button", { type: "button", "data-action": action, "data-model": model.name }, action);
    button.addEventListener("click", () => act(model.name, action));
    actions.append(button);
  }
  const children = [
    el("h3", {}, el("span", { class: "name" }, model.name),
      el("span", { class: "state " + model.state, "data-state": model.state }, model.state)),
    dl, actions,
  ];
  if (model.error) children.splice(1, 0, el("div", { class: "muted" }, model.error));
  return el("div", { class: "card", "data-model": model.name,
    style: "--model-color:" + colorOf[model.name] }, ...children);
}

function renderModels(doc) {
  $("models").replaceChildren(...doc.models.map(card));
}

function renderNodes(doc) {
  const nodes = doc.nodes || [];
  $("nodes-section").hidden = nodes.length === 0;
  $("nodes").replaceChildren(...nodes.map((n) => el("tr", { "data-node": n.name },
    el("td", {}, n.name + (n.head ? " (head)" : "")),
    el("td", {}, n.address),
    el("td", {}, el("span", { class: "state " + (n.state === "alive" ? "ready" : "failed") }, n.state),
      n.detail && n.state !== "alive" ? " " + n.detail : ""),
    el("td", {}, n.gpus == null ? "–" : String(n.gpus)),
    el("td", {}, n.memory_total_bytes == null ? "–"
      : gib(n.memory_available_bytes) + " / " + gib(n.memory_total_bytes)),
    el("td", {}, n.models.join(", ") || "–"))));
}

function renderEvents(doc) {
  const items = doc.events.slice().reverse().map((e) => el("li", {},
    el("span", {}, new Date(e.time * 1000).toLocaleTimeString()),
    e.model + " " + e.event + (e.detail ? " — " + e.detail : "")));
  $("events").replaceChildren(...items);
}

function record(doc) {
  for (const model of doc.models) {
    const h = history[model.name] || (history[model.name] = { tok: [], ttft: [], kv: [] });
    h.tok.push(model.generation_tok_s);
    h.ttft.push(model.ttft_p50_ms);
    h.kv.push(model.kv_cache_usage == null ? null : 100 * model.kv_cache_usage);
    for (const series of Object.values(h)) if (series.length > HISTORY) series.shift();
  }
}

function chart(canvas, field) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  let max = 0;
  for (const h2 of Object.values(history)) for (const v of h2[field]) if (v != null) max = Math.max(max, v);
  max = max || 1;
  ctx.fillStyle = "#8a949e";
  ctx.font = "11px sans-serif";
  ctx.fillText(max.toFixed(1), 2, 11);
  for (const [name, h2] of Object.entries(history)) {
    const series = h2[field];
    ctx.strokeStyle = colorOf[name];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let pen = false;
    series.forEach((v, i) => {
      if (v == null) { pen = false; return; }
      const x = w - (series.length - 1 - i) * (w / HISTORY);
      const y = h - 4 - (v / max) * (h - 18);
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true;
    });
    ctx.stroke();
  }
}

function render(doc) {
  doc.models.forEach((m, i) => { if (!colorOf[m.name]) colorOf[m.name] = COLORS[i % COLORS.length]; });
  renderMemory(doc);
  renderModels(doc);
  renderNodes(doc);
  renderEvents(doc);
  $("chart-legend").replaceChildren(...doc.models.map((m) =>
    el("span", {}, el("i", { style: "background:" + colorOf[m.name] }), m.name)));
  chart($("chart-tok"), "tok");
  chart($("chart-ttft"), "ttft");
  chart($("chart-kv"), "kv");
}

async function poll() {
  try {
    const doc = await call("GET", "/admin/status");
    if (!doc || doc.schema_version !== "sparkstack.status/v1") {
      throw new Error("this server answered /admin/status, but not with a sparkstack status document");
    }
    last = doc;
    record(doc);
    render(doc);
    $("stale").hidden = true;
    if (!$("error").dataset.sticky) showError("");
  } catch (err) {
    showError(err.message);
    if (last) {
      $("stale").hidden = false;
      $("stale").textContent = "showing the picture of " + new Date(last.time * 1000).toLocaleTimeString();
    }
  }
}

async function act(name, action) {
  try {
    await call("POST", "/admin/models/" + encodeURIComponent(name) + "/" + action);
    delete $("error").dataset.sticky;
    showError("");
  } catch (err) {
    $("error").dataset.sticky = "1";
    showError(err.message);
  }
  poll();
}

$("keyform").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key").value.trim();
  if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
  $("key").value = "";
  delete $("error").dataset.sticky;
  poll();
});

poll();
setInterval(poll, 1000);
