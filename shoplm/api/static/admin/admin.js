// The shoplm operator dashboard: plain JavaScript over the admin API, no build step.
// Here: the key, analytics (GET /v1/admin/analytics) and experiments (/v1/admin/experiments);
// merchandising.js: rules and synonyms (/v1/admin/rules, /v1/admin/synonyms) and the preview.
// The page itself holds no data: every figure comes from a call made with the admin key.
"use strict";

// The key is typed in, or comes in the URL fragment (/admin#key=...): a fragment is never sent
// to the server, so the key stays out of access logs; it is then removed from the address bar.
// sessionStorage: the key is forgotten when the tab is closed.
const KEY_NAME = "shoplm.admin_key";
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("key")) {
  sessionStorage.setItem(KEY_NAME, fragment.get("key"));
  history.replaceState(null, "", location.pathname + location.search);
}

const $ = (id) => document.getElementById(id);
const count = new Intl.NumberFormat("en-US");
const amount = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const rate = (v) => (100 * v).toFixed(1) + "%";
const when = (s) => new Date(s * 1000).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });

class ApiError extends Error {
  constructor(status, message, details) { super(message); this.status = status; this.details = details || []; }
}

async function api(path, options = {}) {
  const headers = { "X-API-Key": sessionStorage.getItem(KEY_NAME) || "" };
  if (options.body) headers["content-type"] = "application/json";
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = body.error || {};
    throw new ApiError(response.status, error.message || response.statusText, error.details);
  }
  return response.status === 204 ? null : response.json();
}

// A list answer, as `{"rules": [...]}` or a bare list; null when the route does not exist.
async function collection(path, name) {
  try {
    const body = await api(path);
    return Array.isArray(body) ? body : body[name] || [];
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
}

function text(tag, value, cls) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (cls) node.className = cls;
  return node;
}

function emptyRow(span, message) {
  const tr = document.createElement("tr"), td = text("td", message, "empty");
  td.colSpan = span;
  tr.append(td);
  return tr;
}

function button(label, onClick, ariaLabel) {
  const b = text("button", label);
  b.type = "button";
  if (ariaLabel) b.setAttribute("aria-label", ariaLabel);
  b.addEventListener("click", () => onClick().catch(fail));
  return b;
}

// --- the key ---------------------------------------------------------------------------
function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// Any 401/403 drops the key and every figure shown: a wrong key, or the read key, shows no data.
function fail(error) {
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    signOut(`The service refused the key: ${error.message}`);
  } else {
    showError(error.message || String(error));
  }
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY_NAME);
  forgetMerchandising();
  for (const node of document.querySelectorAll("#dashboard tbody, #dashboard table.queries, #arms, .chart, "
                                              + "#preview-hits, #preview-plain, #preview-rules, #experiment-list")) {
    node.replaceChildren();
  }
  $("dashboard").hidden = true;
  $("forget-key").hidden = true;
  $("key-form").hidden = $("signed-out").hidden = false;
  document.body.dataset.state = "signed-out";
  showError(message);
  $("key").focus();
}

async function openDashboard() {
  showError("");
  const range = rangeParams();
  await loadAnalytics(range);  // the first call made: it checks the key
  $("dashboard").hidden = $("forget-key").hidden = false;
  $("key-form").hidden = $("signed-out").hidden = true;
  await Promise.all([loadMerchandising(), loadExperiments(range)]);
  document.body.dataset.state = "open";
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY_NAME, $("key").value.trim());
  $("key").value = "";
  openDashboard().catch(fail);
});
$("forget-key").addEventListener("click", () => signOut());

// --- analytics ---------------------------------------------------------------------------
function table(node, columns, rows, empty) {
  const head = document.createElement("thead"), body = document.createElement("tbody"), tr = document.createElement("tr");
  for (const c of columns) tr.append(Object.assign(text("th", c.label, c.format || c.cell ? "" : "text"), { scope: "col" }));
  head.append(tr);
  for (const row of rows) body.append(tableRow(columns, row));
  if (!rows.length) body.append(emptyRow(columns.length, empty));
  node.replaceChildren(head, body);
}

function tableRow(columns, row) {
  const tr = document.createElement("tr");
  columns.forEach((c, i) => {
    const value = row[c.key];
    const shown = !c.format ? value : value === undefined ? "—" : c.format(value);  // undefined: not reported
    const cell = c.cell ? c.cell(row) : text(i ? "td" : "th", shown, i && !c.format ? "text" : "");
    if (!i) cell.scope = "row";
    cell.dataset.key = c.key;
    if (c.format && value !== undefined) cell.dataset.value = value;
    tr.append(cell);
  });
  return tr;
}

const COUNTS = (keys) => keys.map(([key, label, format = count.format]) => ({ key, label, format }));
const SURFACE_COLUMNS = [{ key: "surface", label: "Surface" }, ...COUNTS([
  ["impressions", "Impressions"], ["clicks", "Clicks"], ["ctr", "CTR", rate], ["carts", "Carts"],
  ["conversions", "Conversions"], ["conversion", "Conversion", rate], ["revenue", "Revenue", amount.format]])];
const QUERY = { key: "query", label: "Query", cell: (row) => {
  const th = document.createElement("th");
  th.append(button(row.query, () => preview(row.query), `Preview the search “${row.query}”`));
  th.dataset.query = row.query;
  return th;
} };
const QUERY_COLUMNS = {
  "top-queries": [QUERY, ...COUNTS([["searches", "Searches"], ["clicks", "Clicks"], ["ctr", "CTR", rate],
                                    ["conversions", "Conv."], ["revenue", "Revenue", amount.format]])],
  "zero-queries": [QUERY, ...COUNTS([["searches", "Searches"], ["zero_results", "No results"]])],
  "low-ctr-queries": [QUERY, ...COUNTS([["searches", "Searches"], ["clicks", "Clicks"], ["ctr", "CTR", rate]])],
};
const ARM_COLUMNS = [{ key: "arm", label: "Arm" }, ...COUNTS([
  ["visitors", "Visitors"], ["impressions", "Impressions"], ["clicks", "Clicks"], ["ctr", "CTR", rate],
  ["conversions", "Conversions"], ["conversion", "Conversion", rate], ["revenue", "Revenue", amount.format],
  ["revenue_per_visitor", "Revenue / visitor", amount.format]])];

let analyticsTicket = 0;  // the latest request: an older answer arriving after it is dropped

// The time range chosen (`since`, Unix seconds, or nothing: all time), as the analytics and the
// experiments' results both take it.
function rangeParams() {
  const span = $("range").value;
  return span ? { since: Math.floor(Date.now() / 1000) - Number(span) } : {};
}
const rangeText = (params) => (params.since !== undefined ? `since ${when(params.since)}` : "everything stored");

async function loadAnalytics(params = rangeParams()) {
  const ticket = ++analyticsTicket;
  const report = await api("/v1/admin/analytics?" + new URLSearchParams(params));
  if (ticket !== analyticsTicket) return;
  $("analytics").dataset.since = params.since ?? "";
  $("range-text").textContent = rangeText(params);
  const surfaces = Object.entries(report.surfaces).map(([surface, m]) => ({ surface, ...m }));
  table($("surfaces"), SURFACE_COLUMNS, surfaces, "No list was shown in this time range.");
  Charts.bars($("surface-chart"), surfaces.map((s) => ({ label: s.surface, values: [s.ctr, s.conversion] })),
              ["CTR", "conversion"], "Click-through and conversion rate by surface");
  Charts.lines($("position-chart"), Object.entries(report.ctr_by_position).map(([name, rows]) => ({
    name, points: rows.map((r) => ({ x: r.position, y: r.ctr, note: `${r.clicks} of ${r.impressions}` })) })),
               "Click-through rate by position, per surface");
  table($("top-queries"), QUERY_COLUMNS["top-queries"], report.queries, "No searches.");
  table($("zero-queries"), QUERY_COLUMNS["zero-queries"], report.zero_result_queries, "Every search found something.");
  table($("low-ctr-queries"), QUERY_COLUMNS["low-ctr-queries"], report.low_ctr_queries, "No query searched 5 times yet.");
  table($("arms"), ARM_COLUMNS, Object.entries(report.arms).map(([arm, m]) => ({ arm, ...m })),
        "No list was shown to an experiment arm in this time range.");
  $("analytics").dataset.loaded = String(Number($("analytics").dataset.loaded || 0) + 1);
}

function loadFigures() {  // the analytics and the experiments' results, over one time range
  const range = rangeParams();
  return Promise.all([loadAnalytics(range), loadExperiments(range)]);
}
$("range").addEventListener("change", () => loadFigures().catch(fail));
$("refresh").addEventListener("click", () => loadFigures().catch(fail));

// --- experiments -------------------------------------------------------------------------------
// GET /v1/admin/experiments lists them; each one's results, over the time range chosen above,
// come from /v1/admin/experiments/{id}/results?since=, per arm, each tested against the first arm.
// Stop (POST .../stop) and promote (POST .../promote {"arm"}) are one call each, after a confirm.
let experimentsTicket = 0;

async function loadExperiments(params = rangeParams()) {
  const ticket = ++experimentsTicket;
  const list = await collection("/v1/admin/experiments", "experiments");
  await Promise.all((list || []).map(async (exp) => {
    if (exp.results || exp.id == null) return;
    try {
      exp.results = await api(`/v1/admin/experiments/${exp.id}/results?` + new URLSearchParams(params));
    } catch (error) {
      if (error.status !== 404) throw error;
    }
  }));
  if (ticket !== experimentsTicket) return;
  $("experiments").dataset.since = params.since ?? "";
  $("experiments-range").textContent = list && list.length ? `Results over the lists shown ${rangeText(params)}.` : "";
  renderExperiments(list);
  $("experiments").dataset.loaded = String(Number($("experiments").dataset.loaded || 0) + 1);
}

async function stopExperiment(exp) {
  if (!confirm(`Stop experiment ${exp.id} (“${exp.name}”)? Every visitor goes back to the service as configured.`)) return;
  await api(`/v1/admin/experiments/${exp.id}/stop`, { method: "POST" });
  await loadExperiments();
}

async function promoteArm(exp, arm) {
  if (!confirm(`Promote arm “${arm}” of experiment ${exp.id} (“${exp.name}”)? Every visitor gets this arm `
               + "from now on, until the experiment is stopped.")) return;
  await api(`/v1/admin/experiments/${exp.id}/promote`, { method: "POST", body: JSON.stringify({ arm }) });
  await loadExperiments();
}

function promoteCell(row) {  // a running or promoted experiment's arm: promote it, unless it won already
  const td = document.createElement("td"), exp = row.experiment;
  td.className = "buttons";
  if (exp.winner === row.arm && exp.status === "promoted") td.append(text("span", "serving everyone", "muted"));
  else if (exp.status !== "stopped" && exp.id != null) {
    td.append(button("Promote", () => promoteArm(exp, row.arm), `Promote arm ${row.arm} of experiment ${exp.id}`));
  }
  return td;
}

const settingsText = (s) => Object.entries(s || {}).map(([k, v]) => `${k} = ${v}`).join(", ") || "as configured";
function versus(row) {  // the arm's click rate against the first arm's: difference, 95% interval, p
  const t = row.vs_control && row.vs_control.click_rate;
  const td = text("td", !t || t.p_value == null ? "—" : `${points(t.difference)} [${points(t.low)}, ${points(t.high)}], `
                  + `p = ${t.p_value.toFixed(3)}`);
  if (t && t.p_value != null) td.dataset.value = t.p_value;
  return td;
}
const points = (d) => (d >= 0 ? "+" : "−") + Math.abs(100 * d).toFixed(1);
const EXPERIMENT_COLUMNS = [{ key: "arm", label: "Arm" },
  { key: "share", label: "Traffic", format: rate }, { key: "settings", label: "Changes" }, ...COUNTS([
    ["visitors", "Visitors"], ["clicked", "Clicked"], ["click_rate", "Click rate", rate], ["ctr", "CTR", rate],
    ["conversion", "Bought", rate], ["revenue_per_visitor", "Revenue / visitor", amount.format]]),
  { key: "vs_control", label: "Click rate vs first arm (points)", cell: versus },
  { key: "promote", label: "", cell: promoteCell }];

function renderExperiments(experiments) {
  const node = $("experiment-list");
  node.replaceChildren();
  if (!experiments || !experiments.length) {
    node.append(text("p", experiments ? "No experiments yet." : "No experiments yet (this service has no "
                     + "/v1/admin/experiments).", "note"));
    return;
  }
  for (const exp of experiments) {
    const panel = document.createElement("div"), results = exp.results || {};
    panel.className = "panel";
    panel.dataset.experiment = exp.id ?? exp.name;
    panel.dataset.status = exp.status;
    const head = document.createElement("div");
    head.className = "section-head";
    head.append(text("h3", `${exp.name} · ${exp.status}${exp.winner ? " (winner: " + exp.winner + ")" : ""}`));
    if (exp.status !== "stopped" && exp.id != null) {
      head.append(button("Stop", () => stopExperiment(exp), `Stop experiment ${exp.id}`));
    }
    panel.append(head);
    if (exp.created_at) panel.append(text("p", `Started ${when(exp.created_at)}.`, "muted"));
    const rows = exp.arms.map((arm) => ({ arm: arm.name, share: arm.share, settings: settingsText(arm.settings),
                                          experiment: exp, ...((results.arms || {})[arm.name] || {}) }));
    const t = document.createElement("table");
    t.className = "numbers";
    table(t, EXPERIMENT_COLUMNS, rows, "No arms.");
    panel.append(t);
    const ratio = results.sample_ratio;
    if (ratio) {
      panel.append(text("p", ratio.mismatch
        ? `Sample-ratio mismatch (p = ${ratio.p_value.toPrecision(2)}): the visitors per arm do not match the shares, `
          + "so assignment or logging is broken; trust no difference."
        : `The visitors per arm match the shares (sample-ratio test p = ${ratio.p_value.toPrecision(2)}).`,
      ratio.mismatch ? "error" : "muted"));
    }
    if (results.test) panel.append(text("p", `Test: ${results.test}.`, "muted"));
    node.append(panel);
  }
}

// --- start: once merchandising.js has loaded too ------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  resetForm("rule");
  resetForm("synonym");
  if (sessionStorage.getItem(KEY_NAME)) openDashboard().catch(fail);
  else signOut();
});
