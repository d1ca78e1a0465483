// towline's dashboard: the list of runs and, for one run, its graph of tasks, what waits
// and the buttons that answer it, its tasks' figures and logs. Data comes from the JSON
// API beside this page; everything shown is set as text, never as HTML.
"use strict";

const REFRESH_MS = 2000;
const FINISHED = new Set(["succeeded", "failed", "skipped", "cancelled", "rolled_back"]);
const BUTTONS = {
  approval: ["approve", "reject"],
  operator: ["retry", "skip", "abort"],
};

const store = {
  get token() { return localStorage.getItem("towline.token") || ""; },
  set token(v) { v ? localStorage.setItem("towline.token", v) : localStorage.removeItem("towline.token"); },
  get name() { return localStorage.getItem("towline.name") || ""; },
  set name(v) { v ? localStorage.setItem("towline.name", v) : localStorage.removeItem("towline.name"); },
};

// ------------------------------------------------------------------ helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function put(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c) node.append(c);
  return node;
}

function badge(status) {
  return el("span", { class: `badge status-${status}`, "data-status": status, text: status });
}

function seconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  return h ? `${h}h${String(m % 60).padStart(2, "0")}m` : `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function cost(usd) {
  return usd ? `$${usd.toFixed(4)}` : "";
}

async function call(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (store.token) headers.Authorization = `Bearer ${store.token}`;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  let body = {};
  try { body = await response.json(); } catch (e) { body = { error: `HTTP ${response.status}` }; }
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// ------------------------------------------------------------------ access

let me = { can_answer: false, user: null, proxy: false };

async function refreshAccess() {
  try { me = await call("/api/me"); } catch (e) { me = { can_answer: false }; }
  const box = document.getElementById("access");
  put(box);
  if (me.can_answer) {
    box.append(el("span", { id: "answering-as", text: "answering as" }));
    if (me.proxy && !store.token) {
      box.append(el("b", { text: me.user }));
    } else {
      box.append(el("input", {
        id: "name", type: "text", placeholder: me.user || "your name", value: store.name,
        title: "the name your answers are recorded under",
        onchange: (e) => { store.name = e.target.value.trim(); },
      }));
      box.append(el("button", { text: "forget token", onclick: () => { store.token = ""; refreshAccess(); } }));
    }
  } else {
    box.append(el("span", { id: "read-only", text: "read-only: to answer, open the link `towline dashboard` printed, or paste its token" }));
    const input = el("input", { id: "token", type: "password", placeholder: "token" });
    box.append(input, el("button", {
      text: "use", onclick: () => { store.token = input.value.trim(); refreshAccess(); },
    }));
  }
}

// ------------------------------------------------------------------ the list of runs

async function showRuns(view) {
  const status = document.getElementById("status-filter").value;
  const data = await call(`/api/runs${status ? `?status=${encodeURIComponent(status)}` : ""}`);
  const rows = data.runs.map((r) => el("tr", { "data-run": r.run_id },
    el("td", { class: "id" }, el("a", { href: `#/run/${encodeURIComponent(r.run_id)}`, text: r.run_id })),
    el("td", { text: r.plan }),
    el("td", {}, badge(r.status)),
    el("td", { text: r.waiting || "" }),
    el("td", { text: when(r.started_at) }),
    el("td", { text: when(r.closed_at) }),
    el("td", {}, el("a", { href: r.web_ui, target: "_blank", rel: "noopener", text: "Web UI ↗" })),
  ));
  view.replaceChildren(
    el("h1", { text: "Runs" }),
    rows.length
      ? el("table", { id: "runs" },
        el("thead", {}, el("tr", {}, ["run", "plan", "status", "waiting for", "started", "ended", ""].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows))
      : el("p", { class: "quiet", text: "no runs" }),
  );
}

// ------------------------------------------------------------------ one run

let current = null; // {runId, selected, graphKey, waitsKey, data}

function runSkeleton(view, runId) {
  view.replaceChildren(
    el("h1", { id: "run-title" }),
    el("div", { id: "run-facts", class: "facts" }),
    el("section", { id: "waits-section" }),
    el("h2", { text: "Graph" }),
    el("div", { id: "legend", class: "legend" },
      ["pending", "waiting", "running", "succeeded", "failed", "skipped", "cancelled", "rolled_back"].map(badge)),
    el("div", { id: "graph", class: "graph" }),
    el("div", { id: "workstream-links", class: "facts" }),
    el("h2", { text: "Tasks" }),
    el("table", { id: "tasks" },
      el("thead", {}, el("tr", {},
        ["task", "status", "attempts", "time", "tokens", "cost", "note", ""].map((h, i) =>
          el("th", { class: i >= 2 && i <= 5 ? "num" : null, text: h })))),
      el("tbody")),
    el("section", { id: "logs", class: "logs" }),
  );
  current = { runId, selected: null, graphKey: "", waitsKey: "", data: null };
}

async function showRun(view, runId) {
  if (!current || current.runId !== runId) runSkeleton(view, runId);
  const data = await call(`/api/runs/${encodeURIComponent(runId)}`);
  current.data = data;
  document.title = `${data.run_id} · ${data.status} · towline`;
  put(document.getElementById("run-title"),
    el("span", { class: "id", text: data.run_id }), badge(data.status),
    data.waiting ? el("span", { class: "quiet", id: "run-waiting", text: `for ${data.waiting}` }) : null,
  );
  const fact = (label, value) => value ? el("span", {}, `${label} `, el("b", { text: value })) : null;
  put(document.getElementById("run-facts"), ...[
    fact("plan", data.plan),
    fact("time", seconds(data.duration_s)),
    fact("tokens", data.usage.tokens ? String(data.usage.tokens) : ""),
    fact("cost", cost(data.usage.cost_usd)),
    fact("retry of", data.retry_of),
    data.reason && data.status !== "waiting" ? el("span", { id: "run-reason", text: data.reason }) : null,
    el("a", { href: data.web_ui, target: "_blank", rel: "noopener", id: "web-ui", text: "history in the Temporal Web UI ↗" }),
  ].filter(Boolean));
  renderWaits(data);
  renderGraph(data);
  put(document.getElementById("workstream-links"), "each workstream's history in the Web UI:",
    data.workstreams.map((w) => el("a", {
      href: w.web_ui, target: "_blank", rel: "noopener", "data-workstream": w.id, text: `${w.id} ↗`,
    })));
  renderTasks(data);
}

function renderWaits(data) {
  const key = JSON.stringify(data.waits.map((w) => [w.task, w.waiting_for]));
  if (key === current.waitsKey) return; // keep a note being typed
  current.waitsKey = key;
  const section = document.getElementById("waits-section");
  if (!data.waits.length) { section.replaceChildren(); return; }
  section.replaceChildren(el("h2", { text: "Waiting" }), el("div", { class: "waits" }, data.waits.map((w) => {
    const message = el("div", { class: "message" });
    const note = el("input", { type: "text", name: "note", placeholder: "note (recorded with the answer)" });
    const buttons = (BUTTONS[w.waiting_for] || []).map((answer) => el("button", {
      type: "button", class: answer, "data-answer": answer, text: answer,
      onclick: (e) => answerTask(data.run_id, w.task, answer, note, message, e.target.closest("form")),
    }));
    return el("div", { class: "wait", "data-task": w.task, "data-waiting-for": w.waiting_for },
      el("div", { class: "what", text: `${w.task} waits for ${w.awaits}` }),
      w.error ? el("div", { class: "err", text: w.error }) : null,
      w.answers.length ? null : el("div", { class: "why", text: w.reason }),
      w.deadline ? el("div", { class: "why", text: `until ${when(w.deadline)}, then the plan's default` }) : null,
      w.command ? el("div", { class: "why" }, "or from a terminal: ", el("code", { text: w.command })) : null,
      buttons.length ? el("form", { onsubmit: (e) => e.preventDefault() }, note, buttons) : null,
      message);
  })));
}

async function answerTask(runId, task, answer, note, message, form) {
  form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  message.className = "message";
  message.textContent = `${answer}…`;
  try {
    const body = { task, answer, note: note.value.trim() || null, by: store.name || null };
    const done = await call(`/api/runs/${encodeURIComponent(runId)}/answer`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    message.className = "message good";
    message.textContent = `${done.message} (recorded as ${done.by})`;
    setTimeout(refresh, 300);
  } catch (e) {
    message.className = "message bad";
    message.textContent = e.message;
    form.querySelectorAll("button").forEach((b) => { b.disabled = false; });
  }
}

const measure = document.createElement("canvas").getContext("2d");

function textWidth(text, font) {
  measure.font = font;
  return measure.measureText(text).width;
}

function renderGraph(data) {
  const graph = data.graph;
  const key = JSON.stringify([graph.nodes.map((n) => [n.id, n.status]), graph.clusters.map((c) => c.status), current.selected]);
  if (key === current.graphKey) return;
  current.graphKey = key;
  const box = document.getElementById("graph");
  if (typeof dagre === "undefined") { box.textContent = "the graph layout library did not load"; return; }
  const g = new dagre.graphlib.Graph({ compound: true });
  // Clusters are kept apart by edgesep (their borders are dummy nodes): room for their titles.
  g.setGraph({ rankdir: "LR", nodesep: 28, edgesep: 36, ranksep: 46, marginx: 14, marginy: 26 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const c of graph.clusters) g.setNode(c.id, { label: c.label });
  for (const n of graph.nodes) {
    const width = Math.max(textWidth(n.label, "600 13px system-ui"), textWidth(`${n.tool} · ${n.status}`, "11px system-ui")) + 28;
    g.setNode(n.id, { width: Math.max(width, 110), height: 44 });
    if (n.parent) g.setParent(n.id, n.parent);
  }
  for (const e of graph.edges) {
    if (g.hasNode(e.source) && g.hasNode(e.target) && e.source !== e.target) g.setEdge(e.source, e.target, { kind: e.kind });
  }
  dagre.layout(g);
  const size = g.graph();
  const root = svg("svg", {
    width: Math.ceil(size.width || 200), height: Math.ceil((size.height || 100) + 8),
    role: "img", "aria-label": `graph of run ${data.run_id}`, id: "graph-svg",
  });
  root.append(svg("defs", {}, svg("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  }, svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#94a3b8" }))));
  for (const c of graph.clusters) {
    const box = g.node(c.id);
    if (!box || box.width === undefined) continue;
    const x = box.x - box.width / 2, y = box.y - box.height / 2 - 18;
    root.append(svg("g", { class: `cluster status-${c.status}`, "data-workstream": c.label, "data-status": c.status },
      svg("rect", { x, y, width: box.width, height: box.height + 18, rx: 8 }),
      svg("text", { x: x + 8, y: y + 14, text: `${c.label} · ${c.status}` })));
  }
  for (const e of g.edges()) {
    const edge = g.edge(e);
    const pts = edge.points || [];
    if (!pts.length) continue;
    const d = pts.map((p, i) => `${i ? "L" : "M"} ${p.x.toFixed(1)} ${p.y.toFixed(1)}`).join(" ");
    root.append(svg("path", { class: `edge ${edge.kind || ""}`, d, "marker-end": "url(#arrow)" }));
  }
  for (const n of graph.nodes) {
    const box = g.node(n.id);
    const x = box.x - box.width / 2, y = box.y - box.height / 2;
    const node = svg("g", {
      class: `node status-${n.status}${current.selected === n.id ? " selected" : ""}`,
      "data-task": n.id, "data-status": n.status, tabindex: 0,
    },
    svg("title", { text: `${n.id}: ${n.status} (${n.tool})` }),
    svg("rect", { x, y, width: box.width, height: box.height, rx: 7 }),
    svg("text", { x: x + 12, y: y + 18, "font-weight": 600, text: n.label }),
    svg("text", { x: x + 12, y: y + 34, class: "sub", text: `${n.tool} · ${n.status}` }));
    if (graph.level === "task") node.addEventListener("click", () => selectTask(n.id));
    root.append(node);
  }
  box.replaceChildren(root);
}

function renderTasks(data) {
  const body = document.querySelector("#tasks tbody");
  body.replaceChildren(...data.tasks.map((t) => el("tr", {
    "data-task": t.id, "data-status": t.status, class: current.selected === t.id ? "selected" : null,
  },
  el("td", { class: "id", text: t.id }),
  el("td", {}, badge(t.status)),
  el("td", { class: "num", text: t.attempts ? String(t.attempts) : "" }),
  el("td", { class: "num", text: seconds(t.duration_s) }),
  el("td", { class: "num", text: t.tokens ? String(t.tokens) : "" }),
  el("td", { class: "num", text: cost(t.cost_usd) }),
  el("td", { class: "note", text: t.note }),
  el("td", {}, el("button", { type: "button", class: "logs-button", text: "logs", onclick: () => selectTask(t.id) })),
  )));
}

async function selectTask(taskId) {
  current.selected = taskId;
  current.graphKey = "";
  if (current.data) { renderGraph(current.data); renderTasks(current.data); }
  const section = document.getElementById("logs");
  section.replaceChildren(el("h2", { text: `Logs of ${taskId}` }), el("p", { class: "quiet", text: "loading…" }));
  try {
    const data = await call(`/api/runs/${encodeURIComponent(current.runId)}/tasks/${encodeURIComponent(taskId)}/logs`);
    const parts = data.sections.map((s) => [
      el("h3", { text: s.title + (s.truncated ? " (the last 256 KB)" : "") }),
      el("pre", { text: s.text }),
    ]);
    put(section, el("h2", { text: `Logs of ${taskId}` }),
      parts.length ? el("div", {}, parts.flat()) : el("p", { class: "quiet", id: "no-logs", text: data.message }));
  } catch (e) {
    section.replaceChildren(el("h2", { text: `Logs of ${taskId}` }), el("p", { class: "message bad", text: e.message }));
  }
}

// ------------------------------------------------------------------ routing

function route() {
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/run\/(.+)$/);
  return m ? { view: "run", runId: decodeURIComponent(m[1]) } : { view: "runs" };
}

let busy = false;

async function refresh() {
  if (busy) return;
  busy = true;
  const view = document.getElementById("view");
  const where = route();
  try {
    if (where.view === "run") {
      await showRun(view, where.runId);
    } else {
      current = null;
      await showRuns(view);
    }
  } catch (e) {
    view.replaceChildren(el("p", { class: "message bad", id: "error", text: e.message }));
    current = null;
  } finally {
    busy = false;
  }
}

// The link `towline dashboard` prints carries the token in its fragment: keep it in this
// browser, and take it out of the address bar.
function takeToken() {
  const m = location.hash.match(/^#token=(.+)$/);
  if (!m) return false;
  store.token = decodeURIComponent(m[1]);
  history.replaceState(null, "", location.pathname + "#/");
  return true;
}

function start() {
  takeToken();
  document.getElementById("status-filter").addEventListener("change", () => { location.hash = "#/"; refresh(); });
  window.addEventListener("hashchange", () => {
    if (takeToken()) refreshAccess();
    refresh();
  });
  refreshAccess();
  refresh();
  setInterval(() => {
    if (document.hidden) return;
    if (current && current.data && FINISHED.has(current.data.status)) return;
    refresh();
  }, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
