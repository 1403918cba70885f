// kokaq dashboard: polls the node's REST API every 1.5 s. No framework, no CDN.
"use strict";

const POLL_MS = 1500;
const WINDOW_MS = 5 * 60 * 1000;
const state = {
  key: localStorage.getItem("kokaq.apiKey") || "",
  namespace: localStorage.getItem("kokaq.namespace") || "default",
  tab: "overview",
  queues: [],
  selected: null,        // queue whose shares are shown
  previous: null,        // the last overview, for rates
  history: [],           // [{at, enqueued, done, ready, leased, delayed}]
  job: null,             // the job in the detail view
  workers: [],           // worker streams open on this node
  cluster: null,         // the last /v1/cluster answer
};

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (state.key) headers["X-API-Key"] = state.key;
  const response = await fetch(path, { ...options, headers });
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) {
    const error = (body && body.error) || { message: response.statusText };
    throw Object.assign(new Error(`${response.status} ${error.code || ""}: ${error.message}`), { status: response.status });
  }
  return body;
}

function showError(error) {
  const box = $("#error");
  box.hidden = !error;
  box.textContent = error ? String(error.message || error) : "";
}

const number = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString());
const rate = (n) => (n === null ? "–" : n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString());
const percent = (x) => `${(100 * x).toFixed(1)}%`;
// JSON numbers above 2^53 reach JavaScript rounded: say so rather than print a wrong digit.
const priority = (p) => (p >= 2 ** 64 - 4096 ? "2⁶⁴−1" : p > 2 ** 53 ? `≈${p.toExponential(4)}` : String(p));

function age(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// A progress report in a table cell: JSON, cut short.
function brief(value) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length <= 32 ? text : `${text.slice(0, 31)}…`;
}

function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { hour12: false });
}

function setRows(table, rows) {
  const body = $(`${table} tbody`);
  body.replaceChildren(...rows);
}

// -- overview ------------------------------------------------------------------------

function totalsOf(queues) {
  const sum = { enqueued: 0, done: 0, ready: 0, leased: 0, delayed: 0, dead: 0 };
  for (const q of queues) {
    sum.enqueued += q.totals.enqueued || 0;
    sum.done += (q.totals.acked || 0) + (q.totals.dead_lettered || 0);
    sum.ready += q.ready;
    sum.leased += q.leased;
    sum.delayed += q.delayed;
    sum.dead += q.dead;
  }
  return sum;
}

function queueRates(queue) {
  const before = state.previous && state.previous.byName[`${queue.namespace}/${queue.queue}`];
  if (!before) return { in: null, done: null };
  const seconds = (state.previous.nowAt - state.previous.thenAt) / 1000 || 1;
  const done = (q) => (q.totals.acked || 0) + (q.totals.dead_lettered || 0);
  return {
    in: Math.max(0, (queue.totals.enqueued - before.totals.enqueued) / seconds),
    done: Math.max(0, (done(queue) - done(before)) / seconds),
  };
}

async function refreshOverview() {
  let overview;
  try {
    overview = await api(`/v1/overview?namespace=${encodeURIComponent(state.namespace)}`);
  } catch (error) {
    if (error.status !== 404) throw error;
    overview = { at: Date.now(), queues: [] };  // a namespace made by the first job submitted
  }
  const byName = Object.fromEntries(overview.queues.map((q) => [`${q.namespace}/${q.queue}`, q]));
  const last = state.lastOverview;
  state.previous = last ? { byName: last.byName, thenAt: last.at, nowAt: overview.at } : null;
  state.lastOverview = { byName, at: overview.at };
  state.queues = overview.queues;
  const sum = totalsOf(overview.queues);
  state.history.push({ at: overview.at, ...sum });
  state.history = state.history.filter((p) => p.at >= overview.at - WINDOW_MS);

  $("#summary").replaceChildren(
    ...[
      ["queues", overview.queues.length],
      ["ready", sum.ready],
      ["delayed", sum.delayed],
      ["leased", sum.leased],
      ["dead", sum.dead],
      ["workers", state.workers.length],
    ].map(([label, value]) => el("div", { class: "card" }, label, el("b", {}, number(value)))),
  );
  setRows("#queues-table", overview.queues.map((q) => {
    const r = queueRates(q);
    const row = el("tr", { class: "clickable", "data-queue": q.queue, onclick: () => selectQueue(q.queue) },
      el("td", {}, q.queue, ...(q.paused ? [" ", el("span", { class: "pill bad" }, "paused")] : [])),
      el("td", { class: "num" }, number(q.ready)),
      el("td", { class: "num" }, number(q.delayed)), el("td", { class: "num" }, number(q.leased)),
      el("td", { class: "num" }, number(q.succeeded)), el("td", { class: "num" }, number(q.dead)),
      el("td", { class: "num" }, rate(r.in)), el("td", { class: "num" }, rate(r.done)),
      el("td", { class: "num" }, age(q.oldest_ready_age_ms)),
      el("td", {}, el("button", { class: `secondary ${q.paused ? "resume" : "pause"}`, "data-queue": q.queue,
        onclick: (event) => { event.stopPropagation(); togglePause(q).catch(showError); } },
      q.paused ? "Resume" : "Pause")));
    if (q.queue === state.selected) row.classList.add("selected");
    return row;
  }));
  fillQueueSelects();
  drawCharts();
  if (state.selected) await refreshShares();
}

// Pausing stops dispatch (workers get nothing from the queue) until resumed; admin key.
async function togglePause(q) {
  const path = `/v1/namespaces/${encodeURIComponent(q.namespace)}/queues/${encodeURIComponent(q.queue)}`;
  await api(`${path}/${q.paused ? "resume" : "pause"}`, { method: "POST" });
  await refreshOverview();
}

function selectQueue(queue) {
  state.selected = queue;
  refreshShares().catch(showError);
}

async function refreshShares() {
  const q = encodeURIComponent(state.selected);
  const ns = encodeURIComponent(state.namespace);
  const shares = await api(`/v1/namespaces/${ns}/queues/${q}/scheduling`);
  $("#shares").hidden = false;
  $("#shares-queue").textContent = state.selected;
  setRows("#bands-table", shares.bands.map((b) => el("tr", {},
    el("td", {}, String(b.band)), el("td", {}, `${priority(b.min_priority)}–${priority(b.max_priority)}`),
    el("td", { class: "num" }, number(b.weight)), el("td", { class: "num" }, number(b.ready)),
    el("td", { class: "num" }, number(b.dispatched)), el("td", {}, percent(b.configured_share)),
    el("td", {}, bar(b.achieved_share, b.configured_share), percent(b.achieved_share)))));
  const bandCost = {};
  for (const k of shares.keys) bandCost[k.band] = (bandCost[k.band] || 0) + k.cost;
  setRows("#keys-table", shares.keys.map((k) => {
    const share = bandCost[k.band] ? k.cost / bandCost[k.band] : 0;
    return el("tr", {}, el("td", {}, k.key ?? "(no key)"), el("td", {}, String(k.band)),
      el("td", { class: "num" }, number(k.weight)), el("td", { class: "num" }, number(k.ready)),
      el("td", { class: "num" }, number(k.dispatched)), el("td", {}, bar(share, null), percent(share)));
  }));
}

function bar(value, configured) {
  const box = el("span", { class: "bar" }, el("i", { style: `width:${Math.min(100, 100 * value)}%` }));
  if (configured !== null) box.append(el("i", { class: "configured", style: `width:${100 * configured}%` }));
  return box;
}

// -- charts --------------------------------------------------------------------------

function drawChart(svg, legend, series) {
  const width = 600, height = 180, pad = 4;
  const now = state.history.length ? state.history[state.history.length - 1].at : Date.now();
  const max = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const x = (at) => width - ((now - at) / WINDOW_MS) * width;
  const y = (v) => height - pad - (v / max) * (height - 2 * pad);
  const ns = "http://www.w3.org/2000/svg";
  const lines = series.map((s) => {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", s.color);
    line.setAttribute("stroke-width", "2");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    line.setAttribute("points", s.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "));
    return line;
  });
  const top = document.createElementNS(ns, "text");
  top.setAttribute("x", "4");
  top.setAttribute("y", "14");
  top.setAttribute("fill", "#6b7280");
  top.setAttribute("font-size", "12");
  top.textContent = number(Math.round(max));
  svg.replaceChildren(...lines, top);
  legend.replaceChildren(...series.map((s) => el("span", {}, el("i", { style: `background:${s.color}` }), s.name)));
}

function drawCharts() {
  const h = state.history;
  const rates = (field) => h.slice(1).map((p, i) => [p.at, Math.max(0, (p[field] - h[i][field]) / (((p.at - h[i].at) / 1000) || 1))]);
  drawChart($("#chart-rate"), $("#legend-rate"), [
    { name: "enqueued/s", color: "#2563eb", points: rates("enqueued") },
    { name: "done/s", color: "#15803d", points: rates("done") },
  ]);
  drawChart($("#chart-depth"), $("#legend-depth"), [
    { name: "ready", color: "#2563eb", points: h.map((p) => [p.at, p.ready]) },
    { name: "leased", color: "#d97706", points: h.map((p) => [p.at, p.leased]) },
    { name: "delayed", color: "#7c3aed", points: h.map((p) => [p.at, p.delayed]) },
  ]);
}

// -- jobs ------------------------------------------------------------------------------

function fillQueueSelects() {
  const names = state.queues.map((q) => q.queue);
  for (const [selector, keepAll] of [["#jobs-queue", true], ["#dlq-queue", false]]) {
    const select = $(selector);
    const current = select.value;
    const options = (keepAll ? [""] : []).concat(names);
    if (options.join("\n") === [...select.options].map((o) => o.value).join("\n")) continue;
    select.replaceChildren(...options.map((name) => el("option", { value: name }, name || "all")));
    if (options.includes(current)) select.value = current;
  }
}

async function refreshJobs() {
  const params = new URLSearchParams({ namespace: state.namespace, limit: $("#jobs-limit").value || "50" });
  if ($("#jobs-queue").value) params.set("queue", $("#jobs-queue").value);
  if ($("#jobs-status").value) params.set("status", $("#jobs-status").value);
  const { jobs } = await api(`/v1/jobs?${params}`);
  setRows("#jobs-table", jobs.map((job) => el("tr", { class: "clickable", "data-job-id": job.id, onclick: () => showJob(job.id) },
    el("td", {}, el("code", {}, job.id)), el("td", {}, job.type ?? "–"), el("td", {}, job.queue),
    el("td", { class: `status-${job.status}` }, job.status), el("td", { class: "progress" }, brief(job.progress)),
    el("td", { class: "num" }, number(job.attempts)),
    el("td", { class: "num" }, priority(job.priority)), el("td", {}, when(job.created_at)),
    el("td", {}, job.last_error ?? ""))));
  if (state.job) await showJob(state.job, true);
}

async function showJob(id, quiet = false) {
  try {
    const job = await api(`/v1/jobs/${encodeURIComponent(id)}?namespace=${encodeURIComponent(state.namespace)}`);
    state.job = id;
    $("#job-detail").hidden = false;
    $("#job-id").textContent = job.id;
    const fields = ["type", "queue", "status", "progress", "priority", "attempts", "max_retries", "last_error",
      "failure_reason", "fairness_key", "idempotency_key", "created_at", "updated_at", "run_at",
      "lease_expires_at", "expires_at"];
    const shown = (v) => (v === null || v === undefined ? "–" : typeof v === "object" ? JSON.stringify(v) : String(v));
    $("#job-fields").replaceChildren(...fields.flatMap((f) => [el("dt", {}, f), el("dd", { "data-field": f }, shown(job[f]))]));
    $("#job-payload").textContent = JSON.stringify(job.payload ?? job.payload_base64, null, 2);
    const result = job.result ?? job.result_base64;  // base64 when it is not JSON
    $("#job-result-box").hidden = result === null || result === undefined;
    $("#job-result").textContent = JSON.stringify(result, null, 2);
  } catch (error) {
    if (!quiet) showError(error);
    state.job = null;
    $("#job-detail").hidden = true;
  }
}

async function cancelJob() {
  await api(`/v1/jobs/${encodeURIComponent(state.job)}/cancel?namespace=${encodeURIComponent(state.namespace)}`, { method: "POST" });
  state.job = null;
  $("#job-detail").hidden = true;
  await refreshJobs();
}

// -- dead letters ----------------------------------------------------------------------

async function refreshDead() {
  const queue = $("#dlq-queue").value;
  if (!queue) return setRows("#dlq-table", []);
  const params = new URLSearchParams({ namespace: state.namespace, queue, limit: "200" });
  const { jobs } = await api(`/v1/dlq?${params}`);
  setRows("#dlq-table", jobs.map((job) => el("tr", { "data-job-id": job.id },
    el("td", {}, el("code", {}, job.id)), el("td", {}, job.type ?? "–"),
    el("td", { class: "num" }, priority(job.priority)), el("td", { class: "num" }, number(job.attempts)),
    el("td", {}, job.last_error ?? ""), el("td", {}, when(job.updated_at)),
    el("td", {}, el("button", { class: "secondary redrive", "data-id": job.id, onclick: () => deadAction("redrive", [job.id]) }, "Redrive")))));
}

async function deadAction(action, ids) {
  const queue = $("#dlq-queue").value;
  if (action === "purge" && !confirm(`Delete every dead job of ${queue}?`)) return;
  const body = { namespace: state.namespace, queue };
  if (ids) body.ids = ids;
  const { count } = await api(`/v1/dlq/${action}`, { method: "POST", body: JSON.stringify(body) });
  $("#dlq-result").textContent = `${action === "redrive" ? "redriven" : "purged"}: ${count}`;
  await refreshDead();
}

// -- workers ---------------------------------------------------------------------------

async function refreshWorkers() {
  const { workers } = await api(`/v1/workers?namespace=${encodeURIComponent(state.namespace)}`);
  state.workers = workers;
  if (state.tab !== "workers") return;
  // Workers lease from the leader: a follower holds none of their streams.
  const c = state.cluster;
  const onFollower = c && c.role !== "leader";
  $("#workers-note").textContent = onFollower
    ? `This node is a ${c.role}: workers stream from the leader${c.leader_http ? ` (http://${c.leader_http}/)` : ""}.`
    : `${workers.length} worker stream${workers.length === 1 ? "" : "s"} open on this node for ${state.namespace}.`;
  const now = state.lastOverview ? state.lastOverview.at : Date.now();  // the node's clock
  setRows("#workers-table", workers.map((w) => el("tr", { "data-session-id": w.session_id },
    el("td", {}, w.worker_id || "–"),
    el("td", {}, w.queues.map((q) => `${q.queue} (${q.weight})`).join(", ")),
    el("td", { class: "num" }, number(w.held)), el("td", { class: "num" }, number(w.concurrency)),
    el("td", { class: "num" }, number(w.credit)), el("td", { class: "num" }, number(w.leased)),
    el("td", {}, `${age(Math.max(0, now - w.connected_at_ms))} ago`), el("td", {}, w.stream),
    el("td", {}, w.ending ? "ending" : w.waiting_for_queue ? "waiting for its queue"
      : w.paused_queues.length === w.queues.length ? "its queues are paused"
        : w.paused_queues.length ? `working (paused: ${w.paused_queues.join(", ")})` : "working"))));
}

// -- schedules ---------------------------------------------------------------------------

async function refreshSchedules() {
  const ns = encodeURIComponent(state.namespace);
  let schedules = [];
  try {
    ({ schedules } = await api(`/v1/schedules?namespace=${ns}`));
  } catch (error) {
    if (error.status !== 404) throw error;  // no such namespace yet
  }
  setRows("#schedules-table", schedules.map((s) => el("tr", { "data-schedule": s.name },
    el("td", {}, s.name), el("td", {}, s.type ?? "–"), el("td", {}, s.queue), el("td", {}, el("code", {}, s.cron)),
    el("td", {}, s.timezone), el("td", {}, s.paused ? el("span", { class: "pill bad" }, "paused") : when(s.next_fire_at)),
    el("td", { class: "num" }, number(s.fired)), el("td", {}, s.last_job_id ?? "–"), el("td", {}, s.last_error ?? ""),
    el("td", {},
      el("button", { class: "secondary trigger", onclick: () => scheduleAction(s, "trigger").catch(showError) }, "Run now"), " ",
      el("button", { class: `secondary ${s.paused ? "resume" : "pause"}`, onclick: () => scheduleAction(s, s.paused ? "resume" : "pause").catch(showError) },
        s.paused ? "Resume" : "Pause")))));
}

// Run now submits the schedule's job at once (paused or not); Pause stops its
// fires; Resume fires from the next time to come. Admin key.
async function scheduleAction(s, action) {
  const path = `/v1/schedules/${encodeURIComponent(s.name)}/${action}?namespace=${encodeURIComponent(s.namespace)}`;
  const answer = await api(path, { method: "POST" });
  $("#schedules-result").textContent = action === "trigger" ? `submitted ${answer.id}` : `${action}d ${s.name}`;
  await refreshSchedules();
}

// -- cluster ---------------------------------------------------------------------------

async function refreshCluster() {
  const c = await api("/v1/cluster");
  state.cluster = c;
  const status = $("#node-status");
  status.textContent = c.role === "leader" ? "leader (this node)" : `${c.role} · leader ${c.leader ?? "unknown"}`;
  status.className = `pill ${c.leader && c.has_quorum ? "ok" : "bad"}`;
  const fields = { node: c.node, role: c.role, leader: c.leader ?? "–", "leader gRPC": c.leader_grpc ?? "–",
    term: c.term, "commit index": c.commit_index, "applied index": c.applied_index, quorum: c.has_quorum ? "yes" : "no",
    "log format": c.log_format };
  $("#cluster-fields").replaceChildren(...Object.entries(fields).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
  setRows("#members-table", c.members.map((m) => el("tr", {}, el("td", {}, m.address),
    el("td", {}, m.connected ? "yes" : "no"), el("td", { class: "num" }, number(m.match_index)),
    el("td", { class: "num" }, number(m.lag)), el("td", { class: "num" }, number(m.log_format)))));
}

async function refreshNamespaces() {
  const { namespaces } = await api("/v1/namespaces");
  const names = namespaces.map((n) => n.name);
  if (!names.includes(state.namespace)) names.unshift(state.namespace);
  const select = $("#namespace");
  if (names.join("\n") !== [...select.options].map((o) => o.value).join("\n")) {
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  }
  select.value = state.namespace;
}

// -- the loop ----------------------------------------------------------------------------

async function refresh() {
  try {
    await refreshCluster();
    await refreshWorkers();
    await refreshOverview();
    if (state.tab === "jobs") await refreshJobs();
    if (state.tab === "dlq") await refreshDead();
    if (state.tab === "schedules") await refreshSchedules();
    $("#refreshed").textContent = `updated ${new Date().toLocaleTimeString(undefined, { hour12: false })}`;
    showError(null);
  } catch (error) {
    showError(error);
  }
}

function showTab(tab) {
  state.tab = tab;
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === tab);
  for (const section of document.querySelectorAll("section.tab")) section.hidden = section.id !== tab;
  refresh();
}

function start() {
  $("#api-key").value = state.key;
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("#api-key").value.trim();
    localStorage.setItem("kokaq.apiKey", state.key);
    refreshNamespaces().catch(showError);
    refresh();
  });
  $("#namespace").addEventListener("change", (event) => {
    state.namespace = event.target.value;
    localStorage.setItem("kokaq.namespace", state.namespace);
    state.history = [];
    state.lastOverview = null;
    state.selected = null;
    $("#shares").hidden = true;
    refresh();
  });
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  for (const id of ["#jobs-queue", "#jobs-status", "#jobs-limit"]) $(id).addEventListener("change", () => refreshJobs().catch(showError));
  $("#dlq-queue").addEventListener("change", () => refreshDead().catch(showError));
  $("#dlq-redrive-all").addEventListener("click", () => deadAction("redrive", null).catch(showError));
  $("#dlq-purge-all").addEventListener("click", () => deadAction("purge", null).catch(showError));
  $("#job-cancel").addEventListener("click", () => cancelJob().catch(showError));
  $("#job-close").addEventListener("click", () => { state.job = null; $("#job-detail").hidden = true; });
  refreshNamespaces().catch(showError);
  refresh();
  setInterval(refresh, POLL_MS);
}

start();
