// The shoplm storefront: plain JavaScript over the public API, no build step.
"use strict";

// The key comes in the URL fragment (/#key=...): a fragment is never sent to the server, so
// the key cannot end up in access logs. It is then removed from the address bar.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("key")) {
  localStorage.setItem("shoplm.key", fragment.get("key"));
  history.replaceState(null, "", location.pathname + location.search);
}
const KEY = localStorage.getItem("shoplm.key");

function newVisitor() {
  const id = "web-" + (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
  localStorage.setItem("shoplm.session", id);
  return id;
}
let session = localStorage.getItem("shoplm.session") || newVisitor();
let lastQuery = null;
let currentItem = null;

const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const headers = { "content-type": "application/json", ...(KEY ? { "X-API-Key": KEY } : {}) };
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error((body.error && body.error.message) || response.statusText);
  }
  return response.status === 204 ? null : response.json();
}

function sendEvent(event) {
  return api("/v1/events", {
    method: "POST",
    body: JSON.stringify({ events: [{ session_id: session, ...event }] }),
  });
}

function text(tag, value, cls) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (cls) node.className = cls;
  return node;
}

function card(hit, onClick) {
  const node = document.createElement("div");
  node.className = "card";
  node.dataset.itemId = hit.item_id;
  if (hit.score !== undefined && hit.score !== null) node.append(text("span", hit.score.toFixed(3), "score"));
  node.append(text("div", hit.title, "title"));
  const meta = [hit.brand, hit.category, hit.price != null ? "$" + hit.price.toFixed(2) : null].filter(Boolean);
  if (meta.length) node.append(text("div", meta.join(" · "), "meta"));
  if (hit.reason) node.append(text("div", hit.reason, "reason"));
  node.addEventListener("click", onClick);
  return node;
}

function renderList(container, hits, onClick, emptyText) {
  container.replaceChildren();
  if (!hits.length) container.append(text("p", emptyText, "empty"));
  hits.forEach((hit, position) => container.append(card(hit, () => onClick(hit, position))));
}

async function search(q) {
  lastQuery = q;
  $("item").hidden = true;
  $("results").hidden = false;
  $("content-title").textContent = `Results for “${q}”`;
  await sendEvent({ event_type: "search", query: q });
  const found = await api(`/v1/search?q=${encodeURIComponent(q)}&session_id=${session}&k=12`);
  renderList($("results"), found.items, (hit, position) => openItem(hit.item_id, { query: q, position }),
             "No results.");
  $("results").dataset.query = q;
  refreshSidebar();
}

async function openItem(itemId, from = {}) {
  await sendEvent({ event_type: "click", item_id: itemId, ...(from.query ? { query: from.query } : {}),
                    ...(from.position !== undefined ? { position: from.position } : {}) });
  const item = await api(`/v1/items/${encodeURIComponent(itemId)}`);
  currentItem = item;
  $("results").hidden = true;
  $("item").hidden = false;
  $("content-title").textContent = item.category || "Product";
  $("item-title").textContent = item.title;
  $("item-meta").textContent = [item.brand, item.price != null ? "$" + item.price.toFixed(2) : null]
    .filter(Boolean).join(" · ");
  $("item-description").textContent = item.description || "";
  const similar = await api(`/v1/items/${encodeURIComponent(itemId)}/similar?k=6`);
  renderList($("similar"), similar.items, (hit, position) => openItem(hit.item_id, { position }), "Nothing similar.");
  refreshSidebar();
}

async function refreshSidebar() {
  const context = currentItem && !$("item").hidden ? `&item_id=${encodeURIComponent(currentItem.item_id)}` : "";
  const recs = await api(`/v1/recommend?session_id=${session}&k=8${context}`);
  renderList($("recommended"), recs.items, (hit, position) => openItem(hit.item_id, { position }),
             "Nothing yet.");
  const profile = await api(`/v1/sessions/${session}/profile`);
  const box = $("profile");
  box.replaceChildren();
  if (profile.is_new) {
    box.append(text("p", "New visitor: no history yet. Search or click to personalise.", "empty"));
    return;
  }
  const list = document.createElement("dl");
  const counts = Object.entries(profile.event_counts).filter(([, n]) => n > 0).map(([t, n]) => `${t} ${n}`);
  const rows = [
    ["Activity", counts.join(", ")],
    ["Top categories", profile.top_categories.map(([c, w]) => `${c} (${Math.round(w * 100)}%)`).join("; ")],
    ["Top brands", profile.top_brands.map(([b]) => b).join(", ")],
    ["Interests", profile.nearest_categories.map(([c]) => c).join("; ")],
    ["Recent searches", profile.recent_queries.join(", ")],
  ];
  if (profile.price_band) rows.push(["Price band", `$${profile.price_band.p25} – $${profile.price_band.p75}`]);
  rows.filter(([, v]) => v).forEach(([k, v]) => list.append(text("dt", k), text("dd", v)));
  box.append(list);
}

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("q").value.trim();
  if (q) search(q).catch(showError);
});
$("add-to-cart").addEventListener("click", () =>
  currentItem && sendEvent({ event_type: "add_to_cart", item_id: currentItem.item_id }).then(refreshSidebar).catch(showError));
$("new-visitor").addEventListener("click", () => {
  session = newVisitor();
  currentItem = null;
  $("visitor").textContent = session;
  home().catch(showError);
});
$("home").addEventListener("click", (e) => { e.preventDefault(); home().catch(showError); });

function showError(error) {
  $("content-title").textContent = "Something went wrong: " + error.message;
}

async function home() {
  $("item").hidden = true;
  $("results").hidden = false;
  $("content-title").textContent = "Popular right now";
  const recs = await api(`/v1/recommend?session_id=${session}&k=12`);
  renderList($("results"), recs.items, (hit, position) => openItem(hit.item_id, { position }), "The catalog is empty.");
  $("results").dataset.query = "";
  await refreshSidebar();
}

$("visitor").textContent = session;
home().catch(showError);
