// innerloop workbench: a single page over the /v1 API (no framework, no build step).
// Every text that comes from the server is put in the page with textContent, never as HTML.
"use strict";

const TERMINAL = ["finished", "failed", "cancelled", "shutdown"];
const EVENT_TYPES = [
  "started", "mutation", "progress", "selected", "early_stop", "finished", "failed", "cancelled",
  "shutdown", "generation_started", "parent_selected", "minibatch_evaluated", "reflection_started",
  "reflection_finished", "candidate_proposed", "candidate_accepted", "candidate_rejected",
  "candidate_scored", "judge_scored", "frontier_updated", "lessons_updated", "merge_attempted",
  "budget_progress", "eval_started", "eval_case", "eval_finished", "paused", "resumed", "suspended",
  "error",
];
const MAX_LOG = 500;

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem("innerloop.token") || "",
  jobId: null,
  job: null,
  events: [],
  lastEventId: 0,
  lineage: null,
  selected: null,
  // A candidate the user clicked; otherwise the view follows the best one.
  pinned: null,
  stream: null,
  budget: null,
  firstTs: null,
  lastTs: null,
  lineageTimer: null,
};

// ---------- API ----------

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!response.ok) {
    const message = json && json.error ? json.error.message : response.status + " " + response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return json;
}

function notice(message, ok) {
  const el = $("notice");
  el.textContent = message || "";
  el.className = ok ? "ok" : "";
}

function fail(error) {
  notice(error.status === 401 ? "unauthorized: enter a valid API token" : error.message);
}

// ---------- formatting ----------

const fmtScore = (x) => (typeof x === "number" && isFinite(x) ? x.toFixed(3) : "–");
const fmtCost = (x) => "$" + (typeof x === "number" ? x.toFixed(4) : "0");
const short = (id) => (id || "").slice(0, 8);
const trunc = (s, n) => (s && s.length > n ? s.slice(0, n - 1) + "…" : s || "");
const sum = (xs) => (xs || []).reduce((a, b) => a + b, 0);

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}

function scoreColor(score) {
  const x = Math.max(0, Math.min(1, typeof score === "number" ? score : 0));
  return "hsl(" + Math.round(x * 120) + ", 60%, " + (78 - x * 25) + "%)";
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---------- examples (JSONL or CSV) ----------

function parseCsv(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === "") quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n") { row.push(field); rows.push(row); row = []; field = ""; }
    else if (c !== "\r") field += c;
  }
  if (quoted) throw new Error("examples: unterminated quoted field");
  if (field !== "" || row.length) { row.push(field); rows.push(row); }
  const header = (rows.shift() || []).map((h) => h.trim().toLowerCase());
  const input = header.indexOf("input");
  if (input < 0) throw new Error("examples: the CSV header needs an input column");
  const id = header.indexOf("id"), expected = header.indexOf("expected");
  return rows.filter((r) => !(r.length === 1 && r[0] === "")).map((r, n) => {
    if (r.length !== header.length) throw new Error("examples: CSV row " + (n + 2) + " has " + r.length + " fields");
    const example = { input: r[input] };
    if (id >= 0 && r[id] !== "") example.id = r[id];
    if (expected >= 0) example.expected = r[expected];
    const meta = {};
    header.forEach((h, i) => { if (i !== id && i !== input && i !== expected) meta[h] = r[i]; });
    if (Object.keys(meta).length) example.meta = meta;
    return example;
  });
}

function parseExamples(text) {
  const trimmed = text.trim();
  if (!trimmed) return null;
  if (trimmed.startsWith("[")) return JSON.parse(trimmed);
  if (trimmed.startsWith("{")) {
    return trimmed.split("\n").filter((l) => l.trim()).map((line, n) => {
      try { return JSON.parse(line); } catch (e) { throw new Error("examples: line " + (n + 1) + ": " + e.message); }
    });
  }
  return parseCsv(text);
}

// ---------- job list ----------

async function refreshJobs() {
  let list;
  try { list = await api("GET", "/v1/admin/jobs?limit=25"); } catch (e) { fail(e); return; }
  const body = $("jobs").querySelector("tbody");
  body.replaceChildren();
  for (const job of list.jobs) {
    const p = job.progress || {};
    const calls = p.metric_calls_used == null ? "–" : p.metric_calls_used + (p.metric_calls_budget ? "/" + p.metric_calls_budget : "");
    const tr = el("tr", { "data-job": job.job_id, title: job.request ? job.request.mode + ": " + job.request.prompt_head : job.job_id });
    if (job.job_id === state.jobId) tr.className = "selected";
    tr.append(
      el("td", {}, short(job.job_id)),
      el("td", {}, job.status),
      el("td", {}, fmtScore(p.best_score)),
      el("td", {}, calls),
      el("td", {}, p.cost_usd == null ? "–" : fmtCost(p.cost_usd)),
    );
    tr.addEventListener("click", () => selectJob(job.job_id));
    body.append(tr);
  }
}

// ---------- starting a run ----------

async function startRun(event) {
  event.preventDefault();
  const body = { prompt: $("prompt").value, mode: $("mode").value };
  try {
    const examples = parseExamples($("examples").value);
    if (examples) body.examples = examples;
  } catch (e) { notice(e.message); return; }
  if ($("dataset").value) body.dataset = { name: $("dataset").value };
  if ($("metric").value) body.metrics = [$("metric").value];
  if ($("target-model").value.trim()) body.target_model = $("target-model").value.trim();
  const budget = {};
  if ($("max-rollouts").value) budget.max_rollouts = Number($("max-rollouts").value);
  if ($("max-cost").value) budget.max_cost = Number($("max-cost").value);
  if (Object.keys(budget).length) body.budget = budget;
  if (body.mode === "gepa" && $("minibatch").value) body.gepa = { minibatch_size: Number($("minibatch").value) };
  try {
    const created = await api("POST", "/v1/optimize", body);
    notice("started " + short(created.job_id), true);
    await selectJob(created.job_id, created.stream_token);
  } catch (e) { fail(e); }
}

// ---------- the live run view ----------

function resetRun() {
  if (state.stream) state.stream.close();
  state.stream = null;
  state.events = [];
  state.lastEventId = 0;
  state.lineage = null;
  state.selected = null;
  state.pinned = null;
  state.budget = null;
  state.firstTs = state.lastTs = null;
  for (const id of ["log", "frontier", "rejected", "plot", "lineage", "diff", "matrix"]) $(id).replaceChildren();
  $("cand-title").textContent = "";
  for (const id of ["g-best", "g-eta"]) $(id).textContent = "–";
  $("g-gen").textContent = "0";
  $("g-calls").value = 0;
  $("g-cost").value = 0;
  $("g-calls-text").textContent = "0";
  $("g-cost-text").textContent = "$0";
}

async function selectJob(jobId, streamToken) {
  resetRun();
  state.jobId = jobId;
  location.hash = "job=" + jobId;
  $("run").hidden = false;
  $("run-id").textContent = jobId;
  try {
    state.job = await api("GET", "/v1/optimize/" + jobId);
  } catch (e) { fail(e); return; }
  setStatus(state.job.status);
  refreshLineage();
  openStream(streamToken);
  refreshJobs();
}

function setStatus(status) {
  const badge = $("status");
  badge.textContent = status;
  badge.className = "badge " + status;
  document.body.dataset.status = status;
}

async function openStream(streamToken) {
  const jobId = state.jobId;
  let token = streamToken;
  if (!token && state.token) {
    try { token = (await api("POST", "/v1/optimize/" + jobId + "/stream-token")).stream_token; }
    catch (e) { fail(e); return; }
  }
  if (jobId !== state.jobId) return;
  const params = new URLSearchParams();
  if (state.lastEventId) params.set("last_event_id", String(state.lastEventId));
  if (token) params.set("access_token", token);
  const query = params.toString();
  const stream = new EventSource("/v1/optimize/" + jobId + "/events" + (query ? "?" + query : ""));
  state.stream = stream;
  for (const type of EVENT_TYPES) {
    stream.addEventListener(type, (message) => {
      if (!message.data || jobId !== state.jobId) return;
      let envelope;
      try { envelope = JSON.parse(message.data); } catch (_) { return; }
      onEvent(envelope);
    });
  }
  stream.onerror = () => {
    // The browser retries by itself; a closed stream (expired token, server gone) is reopened
    // from the last event seen, unless the job has ended.
    if (stream.readyState === EventSource.CLOSED && state.stream === stream && !TERMINAL.includes(state.job.status)) {
      setTimeout(() => { if (state.stream === stream) openStream(); }, 1000);
    }
  };
}

function onEvent(e) {
  if (e.id && e.id <= state.lastEventId) return;
  if (e.id) state.lastEventId = e.id;
  state.events.push(e);
  if (state.firstTs === null) state.firstTs = e.ts;
  state.lastTs = e.ts;
  const d = e.data || {};
  appendLog(e);
  switch (e.type) {
    case "started": case "resumed": setStatus("running"); state.job.status = "running"; break;
    case "paused": setStatus("paused"); state.job.status = "paused"; break;
    case "budget_progress": state.budget = d; updateGauges(); break;
    case "generation_started": if (d.budget) { state.budget = d.budget; updateGauges(); } break;
    case "frontier_updated": $("g-best").textContent = fmtScore(d.best_score); renderFrontier(d); break;
    default: break;
  }
  if (TERMINAL.includes(e.type)) {
    state.job.status = e.type;
    setStatus(e.type);
    if (e.type === "finished") state.job.result = d;
    if (state.stream) state.stream.close();
    updateGauges();
    refreshJobs();
  }
  if (["candidate_scored", "candidate_rejected", "merge_attempted", "steered"].includes(e.type) || TERMINAL.includes(e.type)) {
    scheduleLineage();
  }
}

function describe(type, d) {
  switch (type) {
    case "generation_started": return "generation " + d.generation;
    case "parent_selected": return "parent #" + d.candidate_id + " by " + d.selector + " (" + fmtScore(d.score) + ")";
    case "minibatch_evaluated": return "#" + d.candidate_id + " on " + (d.example_ids || []).length + " examples: parent " + sum(d.parent_scores) + (d.child_scores && d.child_scores.length ? ", child " + sum(d.child_scores) : "");
    case "reflection_started": return "reflecting on " + d.component + " of #" + d.candidate_id + (d.feedback && d.feedback.length ? " with human feedback: " + d.feedback.join(" / ") : "");
    case "reflection_finished": return d.component + (d.rule_based ? " (rule-based)" : "");
    case "candidate_proposed": return d.component + ": " + trunc(d.text, 140);
    case "candidate_accepted": return "#" + d.candidate_id + " accepted: " + d.before + " → " + d.after;
    case "candidate_rejected": return "rejected: " + d.before + " → " + d.after;
    case "candidate_scored": return "#" + d.candidate_id + " scored " + fmtScore(d.score);
    case "frontier_updated": return "best #" + d.best_id + " " + fmtScore(d.best_score) + ", frontier " + (d.frontier || []).map((f) => "#" + f.id).join(" ");
    case "budget_progress": return "calls " + d.metric_calls_used + (d.metric_calls_left != null ? "/" + (d.metric_calls_used + d.metric_calls_left) : "") + ", " + fmtCost(d.cost_usd);
    case "merge_attempted": return "merge of " + (d.parent_ids || []).map((p) => "#" + p).join("+") + (d.accepted ? " accepted" : " rejected");
    case "finished": return "best " + fmtScore(d.best_score) + (d.stop_reason ? " (" + d.stop_reason + ")" : "");
    case "failed": return d.error + (d.message ? ": " + d.message : "");
    default: return trunc(JSON.stringify(d), 160);
  }
}

function appendLog(e) {
  const log = $("log");
  const li = el("li", { value: String(e.id || 0), "data-type": e.type });
  li.append(el("b", {}, e.type), document.createTextNode(" " + describe(e.type, e.data || {})));
  log.append(li);
  while (log.children.length > MAX_LOG) log.firstChild.remove();
  log.scrollTop = log.scrollHeight;
}

function updateGauges() {
  const b = state.budget;
  if (!b) return;
  const total = b.metric_calls_left != null ? b.metric_calls_used + b.metric_calls_left : null;
  $("g-calls").max = total || Math.max(1, b.metric_calls_used);
  $("g-calls").value = b.metric_calls_used;
  $("g-calls-text").textContent = b.metric_calls_used + (total ? " / " + total : "");
  const costTotal = b.cost_left_usd != null ? b.cost_usd + b.cost_left_usd : null;
  $("g-cost").max = costTotal || Math.max(0.0001, b.cost_usd);
  $("g-cost").value = b.cost_usd;
  $("g-cost-text").textContent = fmtCost(b.cost_usd) + (costTotal ? " / " + fmtCost(costTotal) : "");
  $("g-gen").textContent = String(b.generation);
  const elapsed = state.lastTs - state.firstTs;
  if (TERMINAL.includes(state.job.status)) $("g-eta").textContent = "done";
  else if (b.metric_calls_left != null && b.metric_calls_used > 0 && elapsed > 0) {
    $("g-eta").textContent = duration(elapsed / b.metric_calls_used * b.metric_calls_left);
  }
}

function renderFrontier(d) {
  const list = $("frontier");
  list.replaceChildren();
  for (const f of d.frontier || []) {
    const li = el("li", {}, "#" + f.id + " " + fmtScore(f.score) + (f.id === d.best_id ? " (best)" : ""));
    li.addEventListener("click", () => pickCandidate(f.id));
    list.append(li);
  }
}

// ---------- candidates: plot, lineage, diff, matrix ----------

function scheduleLineage() {
  if (state.lineageTimer) return;
  state.lineageTimer = setTimeout(() => { state.lineageTimer = null; refreshLineage(); }, 400);
}

async function refreshLineage() {
  const jobId = state.jobId;
  let lineage;
  try { lineage = await api("GET", "/v1/optimize/" + jobId + "/candidates"); }
  catch (e) {
    if (e.status === 422) return; // not a gepa job: no candidates
    fail(e);
    return;
  }
  if (jobId !== state.jobId) return;
  state.lineage = lineage;
  const origin = $("branched-from");
  origin.replaceChildren();
  if (lineage.branched_from) {
    const b = lineage.branched_from;
    const link = el("a", { href: "#job=" + b.job_id }, short(b.job_id) + (b.candidate_id != null ? " #" + b.candidate_id : " (checkpoint)"));
    link.addEventListener("click", (e) => { e.preventDefault(); selectJob(b.job_id); });
    origin.append(document.createTextNode("branched from "), link);
  }
  const best = bestCandidate();
  if (best) $("g-best").textContent = fmtScore(best.score);
  renderPlot();
  renderLineage();
  renderMatrix();
  renderRejected();
  selectCandidate(state.pinned != null ? state.pinned : lineage.best_id);
}

function bestCandidate() {
  const l = state.lineage;
  return l ? l.candidates.find((c) => c.id === l.best_id) : null;
}

function renderPlot() {
  const candidates = state.lineage.candidates.filter((c) => Object.keys(c.val_scores).length);
  const W = 560, H = 220, L = 40, R = 12, T = 12, B = 30;
  const maxCalls = Math.max(1, state.budget ? state.budget.metric_calls_used : 0, ...candidates.map((c) => c.discovered_at_metric_calls));
  const x = (calls) => L + (calls / maxCalls) * (W - L - R);
  const y = (score) => T + (1 - Math.max(0, Math.min(1, score))) * (H - T - B);
  const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "best score against metric calls" });
  root.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }), svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  for (const v of [0, 0.5, 1]) root.append(svg("text", { x: 4, y: y(v) + 4 }, v.toFixed(1)));
  root.append(svg("text", { x: L, y: H - 8 }, "0"), svg("text", { x: W - R - 40, y: H - 8 }, String(maxCalls) + " calls"));
  const sorted = [...candidates].sort((a, b) => a.discovered_at_metric_calls - b.discovered_at_metric_calls || a.id - b.id);
  let best = -Infinity, d = "";
  for (const c of sorted) {
    root.append(svg("circle", { class: "dot", cx: x(c.discovered_at_metric_calls), cy: y(c.score), r: 3 }, undefined));
    if (c.score > best) {
      d += (d ? " H" + x(c.discovered_at_metric_calls) + " V" : "M" + x(c.discovered_at_metric_calls) + " ") + y(c.score);
      best = c.score;
    }
  }
  if (d) root.append(svg("path", { class: "best-line", d: d + " H" + x(maxCalls) }));
  $("plot").replaceChildren(root);
}

function depths(candidates) {
  const depth = new Map();
  for (const c of candidates) {
    const parents = c.parents.map((p) => depth.get(p)).filter((v) => v !== undefined);
    depth.set(c.id, parents.length ? Math.max(...parents) + 1 : 0);
  }
  return depth;
}

function renderLineage() {
  const candidates = state.lineage.candidates;
  const depth = depths(candidates);
  const rows = new Map();
  const pos = new Map();
  const colW = 150, rowH = 38, pad = 24;
  for (const c of candidates) {
    const level = depth.get(c.id);
    const row = rows.get(level) || 0;
    rows.set(level, row + 1);
    pos.set(c.id, { x: pad + level * colW, y: pad + row * rowH });
  }
  const W = pad * 2 + Math.max(0, ...depth.values()) * colW + 40;
  const H = pad * 2 + (Math.max(1, ...rows.values()) - 1) * rowH + 10;
  const width = Math.max(W, 300);
  const root = svg("svg", { viewBox: "0 0 " + width + " " + H, width: width, height: H, role: "img", "aria-label": "lineage tree" });
  for (const c of candidates) {
    for (const p of c.parents) {
      const a = pos.get(p), b = pos.get(c.id);
      if (!a || !b) continue;
      const mid = (a.x + b.x) / 2;
      root.append(svg("path", { class: "edge", d: "M" + a.x + "," + a.y + " C" + mid + "," + a.y + " " + mid + "," + b.y + " " + b.x + "," + b.y }));
    }
  }
  for (const c of candidates) {
    const p = pos.get(c.id);
    const g = svg("g", { class: "node " + c.origin + (c.id === state.lineage.best_id ? " best" : ""), "data-id": String(c.id), "data-origin": c.origin, transform: "translate(" + p.x + "," + p.y + ")" });
    g.append(svg("circle", { r: 12, fill: scoreColor(c.score) }));
    g.append(svg("text", { x: 0, y: 4, "text-anchor": "middle" }, String(c.id)));
    g.append(svg("text", { x: 16, y: 4 }, c.origin === "reflection" ? fmtScore(c.score) : c.origin + " " + fmtScore(c.score)));
    g.append(svg("title", {}, "#" + c.id + " " + c.origin + " score " + fmtScore(c.score)));
    g.addEventListener("click", () => pickCandidate(c.id));
    root.append(g);
  }
  $("lineage").replaceChildren(root);
}

function diffTokens(a, b) {
  const x = a.split(/(\s+)/).filter((t) => t !== "");
  const y = b.split(/(\s+)/).filter((t) => t !== "");
  if (x.length * y.length > 4e6) return [["del", a], ["ins", b]];
  const n = x.length, m = y.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
    lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  }
  const out = [];
  const push = (kind, text) => {
    if (out.length && out[out.length - 1][0] === kind) out[out.length - 1][1] += text;
    else out.push([kind, text]);
  };
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { push("same", x[i]); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) push("del", x[i++]);
    else push("ins", y[j++]);
  }
  while (i < n) push("del", x[i++]);
  while (j < m) push("ins", y[j++]);
  return out;
}

function pickCandidate(id) {
  state.pinned = id;
  selectCandidate(id);
}

function selectCandidate(id) {
  const l = state.lineage;
  if (!l) return;
  const c = l.candidates.find((k) => k.id === id);
  if (!c) return;
  state.selected = id;
  for (const node of document.querySelectorAll("#lineage .node")) {
    node.classList.toggle("selected", Number(node.dataset.id) === id);
  }
  const parent = c.parents.length ? l.candidates.find((k) => k.id === c.parents[0]) : null;
  $("cand-title").textContent = "#" + c.id + " (" + c.origin + ", score " + fmtScore(c.score) + (parent ? ", parent #" + parent.id : "") + ")";
  const box = $("diff");
  box.replaceChildren();
  for (const [name, text] of Object.entries(c.components)) {
    box.append(el("div", { class: "component" }, "[" + name + "]"));
    const before = parent ? parent.components[name] || "" : text;
    for (const [kind, part] of diffTokens(before, text)) {
      box.append(kind === "same" ? document.createTextNode(part) : el(kind, {}, part));
    }
    box.append(document.createTextNode("\n\n"));
  }
}

function renderMatrix() {
  const l = state.lineage;
  const table = el("table");
  const head = el("tr");
  head.append(el("th", {}, "cand."));
  l.val_example_ids.forEach((id, i) => head.append(el("th", { title: id }, String(i + 1))));
  head.append(el("th", {}, "mean"));
  table.append(head);
  for (const c of l.candidates) {
    const tr = el("tr", { "data-id": String(c.id) });
    tr.append(el("th", {}, "#" + c.id));
    for (const id of l.val_example_ids) {
      const s = c.val_scores[id];
      const td = el("td", { class: "cell", title: "#" + c.id + " on " + id + ": " + fmtScore(s) });
      td.style.background = s === undefined ? "#eee" : scoreColor(s);
      tr.append(td);
    }
    tr.append(el("td", {}, fmtScore(c.score)));
    tr.addEventListener("click", () => pickCandidate(c.id));
    table.append(tr);
  }
  $("matrix").replaceChildren(table);
}

function renderRejected() {
  const list = $("rejected");
  list.replaceChildren();
  for (const r of state.lineage.rejected.slice(-50).reverse()) {
    list.append(el("li", { title: r.text }, "gen " + r.generation + " from #" + r.parent_ids.join("+") + ": " + sum(r.parent_scores) + " → " + sum(r.child_scores) + " on " + r.example_ids.length + " examples — " + trunc(r.text.split("\n").pop(), 120)));
  }
}

// ---------- actions ----------

function bestPrompt() {
  const result = state.job && state.job.result;
  if (result && typeof result.best_prompt === "string") return result.best_prompt;
  if (result && typeof result.proposal === "string") return result.proposal;
  const best = bestCandidate();
  return best ? best.components.system_prompt || "" : "";
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function action(method, suffix, body, done) {
  try {
    const answer = await api(method, "/v1/optimize/" + state.jobId + suffix, body);
    notice(done, true);
    return answer;
  } catch (e) { fail(e); return null; }
}

function wire() {
  $("token").value = state.token;
  $("auth").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("innerloop.token", state.token);
    notice("token set", true);
    refreshJobs();
    if (state.jobId) selectJob(state.jobId);
  });
  $("refresh").addEventListener("click", refreshJobs);
  $("run-form").addEventListener("submit", startRun);
  $("examples-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (file) $("examples").value = await file.text();
  });
  $("btn-pause").addEventListener("click", () => action("POST", "/pause", undefined, "pausing"));
  $("btn-resume").addEventListener("click", async () => {
    if (await action("POST", "/resume", undefined, "resumed") && !state.stream) openStream();
  });
  $("btn-cancel").addEventListener("click", () => action("DELETE", "", undefined, "cancelled"));
  $("btn-copy").addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(bestPrompt()); notice("best prompt copied", true); }
    catch (_) { notice("the browser refused the clipboard; use Download prompt"); }
  });
  $("btn-download-prompt").addEventListener("click", () => download("prompt-" + short(state.jobId) + ".txt", "text/plain", bestPrompt()));
  $("btn-download-run").addEventListener("click", () => download("run-" + short(state.jobId) + ".json", "application/json",
    JSON.stringify({ job: state.job, candidates: state.lineage, events: state.events }, null, 2)));
  $("btn-steer").addEventListener("click", () => {
    // The candidate text starts as the selected candidate's (filled once, when the dialog opens).
    const selected = state.lineage && state.lineage.candidates.find((k) => k.id === state.selected);
    const component = $("steer-component").value.trim() || "system_prompt";
    $("steer-text").value = selected ? selected.components[component] || "" : "";
    $("steer-add").checked = false;
    $("steer-dialog").showModal();
  });
  $("steer-close").addEventListener("click", () => $("steer-dialog").close());
  $("steer-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = {};
    if ($("steer-feedback").value.trim()) body.feedback = $("steer-feedback").value.trim();
    if ($("steer-component").value.trim()) body.component = $("steer-component").value.trim();
    if ($("steer-add").checked) {
      body.candidate = { parent_id: state.selected || 0, components: { [body.component || "system_prompt"]: $("steer-text").value } };
    }
    if (await action("POST", "/steer", body, "steering sent")) {
      $("steer-feedback").value = "";
      $("steer-dialog").close();
    }
  });
  $("btn-branch").addEventListener("click", () => {
    $("branch-from").textContent = "#" + (state.selected || 0);
    $("branch-dialog").showModal();
  });
  $("branch-close").addEventListener("click", () => $("branch-dialog").close());
  $("branch-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { candidate_id: state.selected || 0 };
    if ($("branch-rollouts").value) body.budget = { max_rollouts: Number($("branch-rollouts").value) };
    const gepa = {};
    if ($("branch-minibatch").value) gepa.minibatch_size = Number($("branch-minibatch").value);
    if ($("branch-selector").value) gepa.candidate_selector = $("branch-selector").value;
    if (Object.keys(gepa).length) body.gepa = gepa;
    const created = await action("POST", "/branch", body, "branched");
    if (created) {
      $("branch-dialog").close();
      selectJob(created.job_id, created.stream_token);
    }
  });
  setInterval(() => { if (!document.hidden) refreshJobs(); }, 10000);
  const match = /job=([\w-]+)/.exec(location.hash);
  if (match) selectJob(match[1]);
  else refreshJobs();
}

document.addEventListener("DOMContentLoaded", wire);
