// The dashboard's merchandising panel: rules and synonyms listed, made, edited and deleted
// through /v1/admin/rules and /v1/admin/synonyms, and a search preview with the rules and
// without them, beside the rules acting on its query. Uses admin.js's api(), text(), button() and fail().
"use strict";

const SURFACES = ["search", "browse", "recommend", "similar"];  // shoplm/data/rules.py SURFACES
const PREVIEW_HITS = 10;
// As shoplm.data.text.normalise compares queries: NFKC, case-folded, single spaces.
const normalise = (s) => s.normalize("NFKC").toLowerCase().split(/\s+/).filter(Boolean).join(" ");

let rules = [], synonyms = [];
const editing = { rule: null, synonym: null };  // the id whose form is open for a PUT, else null

function forgetMerchandising() {
  rules = [];
  synonyms = [];
  delete $("preview").dataset.loaded;
}

async function loadMerchandising() {
  const [r, s] = await Promise.all([collection("/v1/admin/rules", "rules"), collection("/v1/admin/synonyms", "synonyms")]);
  $("merchandising-missing").hidden = r !== null;
  for (const id of ["rules", "rule-form", "preview"]) $(id).closest(".panel").hidden = r === null;
  $("synonyms").closest(".panel").hidden = s === null;
  rules = r || [];
  synonyms = s || [];
  renderRules();
  renderSynonyms();
  $("merchandising").dataset.loaded = String(Number($("merchandising").dataset.loaded || 0) + 1);
}

function ruleAction(r) {
  if (r.action === "pin") return `pin at ${r.position}`;
  if (r.action === "boost") return `boost ↑${r.amount}`;
  if (r.action === "bury") return `bury ↓${r.amount}`;
  return r.action;
}

function ruleScope(r) {
  const parts = [];
  if (r.query != null) parts.push(`query “${r.query}”`);
  if (r.query_contains && r.query_contains.length) parts.push(`query has ${r.query_contains.join(" ")}`);
  if (r.category != null) parts.push(`category ${r.category}`);
  const surfaces = r.surfaces || SURFACES;
  if (surfaces.length < SURFACES.length || !parts.length) {
    parts.push(surfaces.length < SURFACES.length ? `on ${surfaces.join(", ")}` : "everywhere");
  }
  return parts.join("; ");
}

function ruleWindow(r, now = Date.now() / 1000) {
  if (r.start == null && r.end == null) return "always";
  const span = [r.start != null ? `from ${when(r.start)}` : "", r.end != null ? `until ${when(r.end)}` : ""];
  const state = r.end != null && now >= r.end ? " (ended)" : r.start != null && now < r.start ? " (not yet)" : "";
  return span.filter(Boolean).join(" ") + state;
}

// shoplm/engine/rules.py `applies`, now, for a page with no category filter: a search for the
// normalised `query`, or a browse page when it is empty.
function actsOn(r, query, now = Date.now() / 1000) {
  const typed = query.split(" "), contains = r.query_contains || [];
  return (r.surfaces || SURFACES).includes(query ? "search" : "browse") && (r.start == null || now >= r.start)
    && (r.end == null || now < r.end) && (r.query == null || r.query === query) && r.category == null
    && (!contains.length || (query !== "" && contains.every((w) => typed.includes(w))));
}

function renderRules() {
  const body = $("rules").tBodies[0];
  body.replaceChildren();
  for (const r of rules) {
    const tr = document.createElement("tr");
    tr.dataset.ruleId = r.id;
    tr.append(text("td", r.id), text("td", r.name || "—"), text("td", ruleAction(r)), text("td", r.item_id, "mono"),
              text("td", ruleScope(r)), text("td", ruleWindow(r)));
    const cell = document.createElement("td");
    cell.className = "buttons";
    cell.append(button("Edit", async () => editRule(r), `Edit rule ${r.id}`),
                button("Delete", () => removeRecord("rules", r.id), `Delete rule ${r.id}`));
    tr.append(cell);
    body.append(tr);
  }
  if (!rules.length) body.append(emptyRow(7, "No rules yet: results are ranked as the engine ranks them."));
}

function renderSynonyms() {
  const body = $("synonyms").tBodies[0];
  body.replaceChildren();
  for (const s of synonyms) {
    const tr = document.createElement("tr");
    tr.dataset.synonymId = s.id;
    tr.append(text("td", s.id), text("td", s.terms.join(", ")),
              text("td", s.to && s.to.length ? `→ ${s.to.join(", ")}` : "each other"));
    const cell = document.createElement("td");
    cell.className = "buttons";
    cell.append(button("Edit", async () => editSynonym(s), `Edit synonym ${s.id}`),
                button("Delete", () => removeRecord("synonyms", s.id), `Delete synonym ${s.id}`));
    tr.append(cell);
    body.append(tr);
  }
  if (!synonyms.length) body.append(emptyRow(4, "No synonyms yet."));
}

async function removeRecord(kind, id) {
  const what = kind === "rules" ? "rule" : "synonym";
  if (!confirm(`Delete ${what} ${id}? Every engine stops applying it from its next request.`)) return;
  await api(`/v1/admin/${kind}/${id}`, { method: "DELETE" });
  if (editing[what] === id) resetForm(what);
  await loadMerchandising();
  await refreshPreview();
}

// --- the forms -------------------------------------------------------------------------------
const FORMS = { rule: "rule-form", synonym: "synonym-form" };
const listed = (value) => value.split(",").map((t) => t.trim()).filter(Boolean);
const seconds = (local) => (local ? new Date(local).getTime() / 1000 : undefined);  // datetime-local is local time
function localTime(s) {
  if (s == null) return "";
  const d = new Date(s * 1000);
  d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
  return d.toISOString().slice(0, 16);
}

function ruleBody(f) {
  const action = f.namedItem("action").value;
  const body = { action, item_id: f.namedItem("item_id").value.trim() };
  const whole = (name) => (f.namedItem(name).value === "" ? undefined : Number(f.namedItem(name).value));
  if (action === "pin") body.position = whole("position");
  if (action === "boost" || action === "bury") body.amount = whole("amount");
  for (const name of ["query", "category", "name"]) {
    if (f.namedItem(name).value.trim()) body[name] = f.namedItem(name).value.trim();
  }
  if (f.namedItem("query_contains").value.trim()) body.query_contains = [f.namedItem("query_contains").value.trim()];
  const surfaces = [...f].filter((n) => n.name === "surfaces" && n.checked).map((n) => n.value);
  if (surfaces.length < SURFACES.length) body.surfaces = surfaces;
  body.start = seconds(f.namedItem("start").value);
  body.end = seconds(f.namedItem("end").value);
  return body;
}

function showAction() {
  const action = $("rule-form").elements.namedItem("action").value;
  for (const label of $("rule-form").querySelectorAll("[data-for-action]")) {
    label.hidden = !label.dataset.forAction.split(" ").includes(action);
  }
}
$("rule-form").elements.namedItem("action").addEventListener("change", showAction);

function editRule(r) {
  const f = $("rule-form").elements;
  resetForm("rule");
  editing.rule = r.id;
  f.namedItem("action").value = r.action;
  for (const name of ["item_id", "position", "amount", "query", "category", "name"]) f.namedItem(name).value = r[name] ?? "";
  f.namedItem("query_contains").value = (r.query_contains || []).join(" ");
  for (const n of f) if (n.name === "surfaces") n.checked = (r.surfaces || SURFACES).includes(n.value);
  f.namedItem("start").value = localTime(r.start);
  f.namedItem("end").value = localTime(r.end);
  formMode("rule", `Edit rule ${r.id}`, `Save rule ${r.id}`, true);
}

function editSynonym(s) {
  const f = $("synonym-form").elements;
  resetForm("synonym");
  editing.synonym = s.id;
  f.namedItem("terms").value = s.terms.join(", ");
  f.namedItem("to").value = (s.to || []).join(", ");
  formMode("synonym", `Edit synonym ${s.id}`, `Save synonym ${s.id}`, true);
}

function formMode(what, title, submit, focus = false) {
  const form = $(FORMS[what]);
  $(`${what}-form-title`).textContent = title;
  form.querySelector("[type=submit]").textContent = submit;
  form.querySelector(".cancel").hidden = editing[what] === null;
  showAction();
  if (focus) form.querySelector("input, select").focus();
}

function resetForm(what) {
  const form = $(FORMS[what]);
  form.reset();
  editing[what] = null;
  clearErrors(form);
  formMode(what, `New ${what}`, `Add ${what}`);
}

function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((n) => n.remove());
  form.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
  form.querySelector(".form-error").hidden = true;
}

// A 422 names its fields in `loc` (["body", "item_id"], or ["body", "rule", 0, "item_id"]): each
// message goes next to that field; one naming no field of the form goes above it.
function showErrors(form, error) {
  clearErrors(form);
  const general = [];
  for (const detail of error.details.length ? error.details : [{ loc: [], msg: error.message }]) {
    const name = (detail.loc || []).filter((p) => typeof p === "string").reverse().find((p) => form.elements.namedItem(p));
    if (!name) {
      general.push(detail.msg);
      continue;
    }
    const field = form.elements.namedItem(name);
    const input = field instanceof RadioNodeList ? field[0] : field;
    const where = input.closest("fieldset") || input.closest("label");
    if (where.querySelector(`.field-error[data-error-for="${name}"]`)) continue;
    const note = text("span", detail.msg, "field-error");
    note.dataset.errorFor = name;
    note.id = `${form.id}-error-${name}`;
    where.append(note);
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", note.id);
  }
  const top = form.querySelector(".form-error");
  top.textContent = general.join(" ");
  top.hidden = !general.length;
  (form.querySelector("[aria-invalid]") || top).focus?.();
}

async function submit(what, body) {
  const form = $(FORMS[what]), kind = `${what}s`, id = editing[what];
  try {
    await api(id === null ? `/v1/admin/${kind}` : `/v1/admin/${kind}/${id}`,
              { method: id === null ? "POST" : "PUT", body: JSON.stringify(body) });
  } catch (error) {
    if (error.status === 422 || error.status === 404) return showErrors(form, error);
    throw error;
  }
  resetForm(what);
  await loadMerchandising();
  await refreshPreview();
}

$("rule-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const body = ruleBody($("rule-form").elements);
  if (body.surfaces && !body.surfaces.length) {
    return showErrors($("rule-form"), new ApiError(422, "", [{ loc: ["surfaces"], msg: "pick at least one surface" }]));
  }
  submit("rule", body).catch(fail);
});
$("synonym-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const f = $("synonym-form").elements;
  const body = { terms: listed(f.namedItem("terms").value) };
  if (listed(f.namedItem("to").value).length) body.to = listed(f.namedItem("to").value);
  submit("synonym", body).catch(fail);
});
for (const what of Object.keys(FORMS)) {
  $(FORMS[what]).querySelector(".cancel").addEventListener("click", () => resetForm(what));
}

// --- the preview -------------------------------------------------------------------------------
// Two calls of GET /v1/search, admin key only and never logged as an impression: preview=true
// (the page as shoppers see it, rules in force) and rules=false (the engine's own order).
let previewTicket = 0;  // the latest preview: an older answer arriving after it is dropped

// One column: each hit, its rule's reason if a rule placed it, and where it is in the other
// column when that differs ("#3 without the rules", or not in the other column's first hits).
function renderHits(list, hits, other, otherName) {
  const at = new Map(other.map((h) => [h.item_id, h.position]));
  list.replaceChildren();
  for (const hit of hits) {
    const li = document.createElement("li");
    li.dataset.itemId = hit.item_id;
    li.dataset.position = hit.position;
    li.append(text("span", hit.title, "title"), text("span", [hit.item_id, hit.brand].filter(Boolean).join(" · "), "meta"));
    if (/ by rule \d+/.test(hit.reason || "")) li.append(text("span", hit.reason, "rule-reason"));
    const there = at.get(hit.item_id);
    if (there !== hit.position) {
      li.classList.add("differs");
      li.dataset.otherPosition = there ?? "";
      const absent = other.length < PREVIEW_HITS ? `not found ${otherName} the rules`  // the other list is whole
        : `not in the first ${PREVIEW_HITS} ${otherName} the rules`;
      li.append(text("span", there === undefined ? absent : `#${there + 1} ${otherName} the rules`, "moved"));
    }
    list.append(li);
  }
  if (!hits.length) list.append(text("li", "No results.", "empty"));
}

function pageNote(page) {
  const found = `${count.format(page.total)} result${page.total === 1 ? "" : "s"}`;
  return page.corrected_query ? `${found} for “${page.corrected_query}” (spelling corrected).` : `${found}.`;
}

async function preview(q) {
  $("preview-q").value = q;
  const ticket = ++previewTicket, params = { q, limit: PREVIEW_HITS };
  const [page, plain] = await Promise.all([
    api("/v1/search?" + new URLSearchParams({ ...params, preview: "true" })),
    api("/v1/search?" + new URLSearchParams({ ...params, rules: "false" })),
  ]);
  if (ticket !== previewTicket) return;
  renderHits($("preview-hits"), page.items, plain.items, "without");
  renderHits($("preview-plain"), plain.items, page.items, "with");
  $("preview-note").textContent = pageNote(page);
  $("preview-plain-note").textContent = pageNote(plain);
  const query = normalise(q), acting = rules.filter((r) => actsOn(r, query));
  const shown = new Set(page.items.map((h) => h.item_id));
  $("preview-rules").replaceChildren(...acting.map((r) => {
    const effect = r.action === "hide" ? "left out" : shown.has(r.item_id) ? "shown" : "not in the first " + PREVIEW_HITS;
    const li = text("li", `Rule ${r.id}${r.name ? " (" + r.name + ")" : ""}: ${ruleAction(r)} ${r.item_id} — ${effect}`);
    li.dataset.ruleId = r.id;
    return li;
  }));
  if (!acting.length) $("preview-rules").append(text("li", "No rule acts on this query.", "empty"));
  $("preview").dataset.loaded = q;
  $("preview").dataset.total = page.total;
  $("preview").dataset.totalWithoutRules = plain.total;
}

async function refreshPreview() {
  if ($("preview").dataset.loaded !== undefined) await preview($("preview").dataset.loaded);
}

$("preview-form").addEventListener("submit", (e) => {
  e.preventDefault();
  preview($("preview-q").value.trim()).catch(fail);
});
