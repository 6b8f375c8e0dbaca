// The shoplm storefront: plain JavaScript over the public API, no build step.
// What is shown lives in the query string (?q=&category=&brand=&price=&sort=&page=, or ?item=),
// so back/forward, reload and shared links show the same page. Events go through the tracking
// snippet (/v1/shoplm.js, window.shoplm), with the list_id and position of the hit picked.
"use strict";

// The key comes in the URL fragment (/#key=...): a fragment is never sent to the server, so
// the key cannot end up in access logs. It is then removed from the address bar.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("key")) {
  localStorage.setItem("shoplm.key", fragment.get("key"));
  history.replaceState(null, "", location.pathname + location.search);
}
const KEY = localStorage.getItem("shoplm.key");
shoplm.init({ key: KEY });

const PAGE_SIZE = 12;  // hits per page: four rows of three
const MAX_WINDOW = 10000;  // the service's default search_max_window: offset + limit past it is refused
const FACETS = "brand,category,price";
const SEPARATOR = " > ";  // category path levels
const SUGGEST_DELAY_MS = 150;  // typing pause before asking for suggestions
const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const wholeMoney = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 0 });
const number = new Intl.NumberFormat("en-US");

// The visit's id, kept by the snippet; none when the visitor opted out of tracking.
function withSession(params) {
  const session = shoplm.sessionId();
  if (session) params.set("session_id", session);
  return params;
}
let currentItem = null;
let searched = null;  // a query typed, its search event sent with the list_id of its answer
let generation = 0;  // the latest navigation; answers to older ones are dropped

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const headers = { "content-type": "application/json", ...(KEY ? { "X-API-Key": KEY } : {}) };
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new ApiError(response.status, (body.error && body.error.message) || response.statusText);
  }
  return response.status === 204 ? null : response.json();
}

function text(tag, value, cls) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (cls) node.className = cls;
  return node;
}

const price = (value) => (value == null ? "" : money.format(value));
const lastLevel = (path) => path.split(SEPARATOR).pop();

// --- state <-> query string -------------------------------------------------------------
function readState() {
  const p = new URLSearchParams(location.search);
  return {
    q: (p.get("q") || "").trim(), category: p.get("category") || "", brands: p.getAll("brand"),
    price: p.get("price") || "", sort: p.get("sort") || "relevance",
    page: Math.max(1, parseInt(p.get("page"), 10) || 1), item: p.get("item") || "",
  };
}

function href(state) {
  const p = new URLSearchParams();
  if (state.item) return "?" + new URLSearchParams({ item: state.item });
  if (state.q) p.set("q", state.q);
  if (state.category) p.set("category", state.category);
  (state.brands || []).forEach((b) => p.append("brand", b));
  if (state.price) p.set("price", state.price);
  if (state.sort && state.sort !== "relevance") p.set("sort", state.sort);
  if (state.page > 1) p.set("page", state.page);
  return p.toString() ? "?" + p : location.pathname;
}

function go(state, focusHeading = false) {
  history.pushState(null, "", href(state));
  return render(focusHeading);
}

function navLink(state, label) {
  const a = text("a", label);
  a.href = href(state);
  a.dataset.nav = "";
  return a;
}

// A modified click (new tab, new window) is left to the browser.
const plainClick = (e) => e.button === 0 && !(e.metaKey || e.ctrlKey || e.shiftKey || e.altKey);

// Internal links (data-nav) change the page in place; after a new page of hits the focus goes to its heading.
document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-nav]");
  if (!a || e.defaultPrevented || !plainClick(e)) return;
  e.preventDefault();
  history.pushState(null, "", a.href);
  render(Boolean(a.closest("#pagination, #breadcrumbs, #spelling"))).catch(showError);
});
window.addEventListener("popstate", () => render().catch(showError));

async function render(focusHeading = false) {
  const state = readState();
  const ticket = ++generation;
  closeSuggestions();
  $("error").hidden = true;
  $("q").value = state.q;
  if (state.item) await showItem(state.item, ticket);
  else await showResults(state, ticket);
  if (ticket !== generation) return;
  if (focusHeading) { $("content-title").focus(); window.scrollTo(0, 0); }
  refreshSidebar(state.item ? { item_id: state.item } : state.category ? { category: state.category } : {})
    .catch(showError);
}

function showError(error) {
  $("error").textContent = "Something went wrong: " + error.message;
  $("error").hidden = false;
}

// --- a results page ---------------------------------------------------------------------
function searchParams(state) {
  const p = new URLSearchParams({ q: state.q, offset: (state.page - 1) * PAGE_SIZE, limit: PAGE_SIZE,
                                  sort: state.sort, facets: FACETS });
  if (state.category) p.append("filter", "category:" + state.category);
  if (state.brands.length) p.append("filter", "brand:" + state.brands.join("|"));
  if (state.price) p.append("filter", "price:" + state.price);
  return withSession(p);
}

async function showResults(state, ticket) {
  const key = location.search;
  document.body.dataset.view = "results";
  $("item").hidden = true;
  $("listing").hidden = false;
  $("listing").setAttribute("aria-busy", "true");
  let page;
  try {
    page = await api("/v1/search?" + searchParams(state));
  } finally {
    if (ticket === generation) $("listing").removeAttribute("aria-busy");
  }
  if (ticket !== generation) return;
  if (searched !== null && searched === state.q) shoplm.search(state.q, { listId: page.list_id });
  searched = null;
  const title = state.q ? `Results for “${state.q}”` : state.category ? lastLevel(state.category) : "Popular right now";
  $("content-title").textContent = title;
  document.title = title + " · shoplm";
  $("sort").value = state.sort;
  const plural = page.total === 1 ? "" : "s";
  $("total").textContent = `${number.format(page.total)}${page.total_exact ? "" : "+"} result${plural}`;
  $("total").dataset.total = page.total;
  renderBreadcrumbs(state);
  renderSpelling(state, page.corrected_query);
  renderFacets(state, page.facets);
  renderHits(state, page);
  renderPagination(state, page.total);
  $("listing").dataset.loaded = key;
}

function renderBreadcrumbs(state, linkLast = false) {
  const list = $("breadcrumbs").querySelector("ol");
  list.replaceChildren();
  $("breadcrumbs").hidden = !state.category;
  if (!state.category) return;
  const parts = state.category.split(SEPARATOR);
  const crumbs = [["All products", ""], ...parts.map((part, i) => [part, parts.slice(0, i + 1).join(SEPARATOR)])];
  crumbs.forEach(([label, path], i) => {
    const li = document.createElement("li");
    const here = i === crumbs.length - 1 && !linkLast;
    li.append(here ? text("span", label) : navLink({ ...state, category: path, page: 1 }, label));
    if (here) li.firstChild.setAttribute("aria-current", "page");
    list.append(li);
  });
}

function renderSpelling(state, corrected) {
  const line = $("spelling");
  line.replaceChildren();
  line.hidden = !corrected;
  if (!corrected) return;
  const strong = document.createElement("strong");
  strong.append(navLink({ q: corrected }, corrected));
  line.append("Showing results for ", strong, ` instead of “${state.q}”.`);
}

function renderHits(state, page) {
  const list = $("results");
  list.replaceChildren();
  list.start = page.offset + 1;
  if (!page.items.length) {
    list.append(text("li", page.total ? "No more results: go back a page." : "No results. Try fewer words or filters.",
                     "empty"));
  }
  page.items.forEach((hit) => list.append(hitCard(hit, state.q, page.list_id)));
}

function hitCard(hit, query, listId) {
  const li = document.createElement("li");
  li.className = "card";
  Object.assign(li.dataset, { itemId: hit.item_id, position: hit.position, brand: hit.brand || "",
                              category: hit.category || "", price: hit.price == null ? "" : hit.price });
  const target = hit.url || href({ item: hit.item_id });
  const clicked = { listId, position: hit.position, ...(query ? { query } : {}) };
  const thumb = document.createElement("a");
  thumb.className = "thumb";
  thumb.href = target;
  thumb.tabIndex = -1;  // the title link is the same place: one tab stop per hit
  thumb.setAttribute("aria-hidden", "true");
  if (hit.image_url) {
    const img = document.createElement("img");
    Object.assign(img, { src: hit.image_url, alt: "", loading: "lazy", decoding: "async" });
    img.addEventListener("error", () => img.remove());
    thumb.append(img);
  }
  const title = document.createElement("h2");
  title.className = "title";
  const link = document.createElement("a");
  link.href = target;
  link.innerHTML = hit.highlight;  // the API escapes the title and adds only <mark>
  title.append(link);
  li.append(thumb, title);
  const meta = [hit.brand, hit.category && lastLevel(hit.category)].filter(Boolean).join(" · ");
  if (meta) li.append(text("p", meta, "meta"));
  if (hit.price != null) li.append(text("p", price(hit.price), "price"));
  if (hit.variants > 1) li.append(text("p", `${hit.variants} variants`, "variants"));
  if (hit.reason) li.append(text("p", hit.reason, "reason"));
  const links = [thumb, link];
  if (hit.url) {
    const more = text("a", "Similar items", "more");
    more.href = href({ item: hit.item_id });
    li.append(more);
    links.push(more);
  }
  links.forEach((a) => a.addEventListener("click", (e) => openHit(e, a, hit.item_id, clicked)));
  return li;
}

// Every click on a hit is an event; a link to this page's own item view opens in place.
function openHit(e, a, itemId, context) {
  shoplm.click(itemId, context);
  const inPage = a.getAttribute("href").startsWith("?");
  if (!inPage || !plainClick(e)) return;
  e.preventDefault();
  go({ item: itemId }, true).catch(showError);
}

function renderPagination(state, total) {
  const nav = $("pagination");
  const list = nav.querySelector("ul");
  list.replaceChildren();
  const last = Math.min(Math.ceil(total / PAGE_SIZE), Math.floor((MAX_WINDOW - PAGE_SIZE) / PAGE_SIZE) + 1);
  nav.hidden = last <= 1 && state.page === 1;
  if (nav.hidden) return;
  const entry = (page, label, rel) => {
    const li = list.appendChild(document.createElement("li"));
    if (page === state.page && !rel) {
      li.append(text("span", label, "current"));
      li.firstChild.setAttribute("aria-current", "page");
    } else if (page < 1 || page > last || page === state.page) {
      li.append(text("span", label, "disabled"));
    } else {
      const a = li.appendChild(navLink({ ...state, page }, label));
      if (rel) a.rel = rel;
      else a.setAttribute("aria-label", `Page ${page}`);
    }
  };
  entry(state.page - 1, "‹ Previous", "prev");
  const pages = [...new Set([1, last, state.page - 2, state.page - 1, state.page, state.page + 1, state.page + 2])]
    .filter((p) => p >= 1 && p <= last).sort((a, b) => a - b);
  pages.forEach((p, i) => {
    if (i && p > pages[i - 1] + 1) list.append(text("li", "…", "gap"));
    entry(p, String(p));
  });
  entry(state.page + 1, "Next ›", "next");
}

// --- the facet sidebar --------------------------------------------------------------------
function renderFacets(state, facets) {
  const focused = document.activeElement && document.activeElement.dataset.key;  // kept across the redraw
  renderCategories(state, facets.category || {});
  renderBrands(state, facets.brand || {});
  renderPrices(state, facets.price || {});
  $("clear-filters").hidden = !(state.category || state.brands.length || state.price);
  if (focused) {
    const again = [...$("filters").querySelectorAll("[data-key]")].find((n) => n.dataset.key === focused);
    if (again) again.focus();
  }
}

function facetBody(id, empty) {
  const section = $(id);
  section.hidden = empty;
  const body = section.querySelector(".body");
  body.replaceChildren();
  return body;
}

function renderCategories(state, counts) {
  const body = facetBody("facet-category", !Object.keys(counts).length && !state.category);
  const root = document.createElement("ul");
  root.className = "tree";
  const nodes = new Map();  // path -> its <li>; the API lists a parent before its children
  if (state.category) {
    const li = document.createElement("li");
    li.append(navLink({ ...state, category: "", page: 1 }, "‹ All categories"));
    li.firstChild.dataset.key = "category:";
    root.append(li);
  }
  for (const [path, n] of Object.entries(counts)) {
    const li = document.createElement("li");
    const a = navLink({ ...state, category: path, page: 1 }, lastLevel(path));
    a.dataset.key = "category:" + path;
    if (path === state.category) a.setAttribute("aria-current", "true");
    li.append(a, " ", text("span", number.format(n), "count"));
    const parent = nodes.get(path.split(SEPARATOR).slice(0, -1).join(SEPARATOR));
    if (parent) {
      let children = parent.querySelector(":scope > ul");
      if (!children) parent.append(children = document.createElement("ul"));
      children.append(li);
    } else {
      root.append(li);
    }
    nodes.set(path, li);
  }
  body.append(root);
}

function renderBrands(state, counts) {
  const values = { ...counts };
  state.brands.forEach((b) => { if (!(b in values)) values[b] = 0; });  // a checked brand stays visible
  const body = facetBody("facet-brand", !Object.keys(values).length);
  for (const [brand, n] of Object.entries(values)) {
    const input = Object.assign(document.createElement("input"), { type: "checkbox", value: brand,
                                                                  checked: state.brands.includes(brand) });
    input.dataset.key = "brand:" + brand;
    input.addEventListener("change", () => {
      const brands = [...body.querySelectorAll("input:checked")].map((box) => box.value);
      go({ ...state, brands, page: 1 }).catch(showError);
    });
    const label = document.createElement("label");
    label.append(input, " " + brand + " ", text("span", number.format(n), "count"));
    body.append(label);
  }
}

function priceLabel(range) {
  const [low, high] = range.split("..")
    .map((edge) => (edge ? (Number.isInteger(+edge) ? wholeMoney : money).format(+edge) : ""));
  if (!low) return `Under ${high}`;
  if (!high) return `${low} and up`;
  return `${low} – ${high}`;
}

function renderPrices(state, counts) {
  const values = { "": null, ...counts };
  if (state.price && !(state.price in values)) values[state.price] = 0;
  const body = facetBody("facet-price", !Object.keys(counts).length && !state.price);
  for (const [range, n] of Object.entries(values)) {
    const input = Object.assign(document.createElement("input"), { type: "radio", name: "price", value: range,
                                                                  checked: state.price === range });
    input.dataset.key = "price:" + range;
    input.addEventListener("change", () => go({ ...state, price: range, page: 1 }).catch(showError));
    const label = document.createElement("label");
    label.append(input, " " + (range ? priceLabel(range) : "Any price") + " ");
    if (n !== null) label.append(text("span", number.format(n), "count"));
    body.append(label);
  }
}

$("sort").addEventListener("change", () => go({ ...readState(), sort: $("sort").value, page: 1 }).catch(showError));
$("clear-filters").addEventListener("click", () => {
  const { q, sort } = readState();
  go({ q, sort, brands: [], page: 1 }).catch(showError);
  $("q").focus();
});

// --- the search box and its suggestions -------------------------------------------------------
let suggestTimer = 0, suggestTicket = 0, suggestMissing = false, options = [], active = -1;

function startSearch(q) {
  closeSuggestions();
  searched = q;
  return go({ q, brands: [], page: 1 });
}

async function suggest() {
  const prefix = $("q").value;
  const ticket = ++suggestTicket;
  if (!prefix.trim() || suggestMissing) return closeSuggestions();
  let answer;
  try {
    answer = await api("/v1/suggest?" + withSession(new URLSearchParams({ q: prefix, k: 5 })));
  } catch (error) {
    if (error.status === 404) suggestMissing = true;  // a service without autocomplete: the box still searches
    return closeSuggestions();
  }
  if (ticket !== suggestTicket || document.activeElement !== $("q")) return;
  options = [...answer.suggestions.map((s) => ({ text: s.text })), ...answer.items.map((hit) => ({ hit, listId: answer.list_id }))];
  showSuggestions(prefix);
}

function group(label, entries) {
  const node = document.createElement("ul");
  node.setAttribute("role", "group");
  node.setAttribute("aria-label", label);
  node.append(text("li", label, "group-label"));
  node.firstChild.setAttribute("role", "presentation");
  entries.forEach((entry) => node.append(entry));
  return node;
}

function showSuggestions(prefix) {
  const box = $("suggestions");
  box.replaceChildren();
  active = -1;
  $("q").removeAttribute("aria-activedescendant");
  if (!options.length) return closeSuggestions();
  const entries = options.map((option, i) => {
    const li = document.createElement("li");
    Object.assign(li, { id: `suggestion-${i}`, className: "option" });
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", "false");
    const label = li.appendChild(document.createElement("span"));
    if (option.hit) {
      label.textContent = option.hit.title;
      li.append(text("span", price(option.hit.price), "price"));
    } else if (option.text.startsWith(prefix.toLowerCase())) {  // the completion in bold, as search engines do
      label.append(option.text.slice(0, prefix.length), text("strong", option.text.slice(prefix.length)));
    } else label.textContent = option.text;
    li.addEventListener("mousedown", (e) => e.preventDefault());  // keep the focus in the box
    li.addEventListener("click", () => pick(i));
    return li;
  });
  const queries = entries.filter((_, i) => !options[i].hit), products = entries.filter((_, i) => options[i].hit);
  if (queries.length) box.append(group("Searches", queries));
  if (products.length) box.append(group("Products", products));
  box.hidden = false;
  $("q").setAttribute("aria-expanded", "true");
}

function closeSuggestions() {
  clearTimeout(suggestTimer);
  suggestTicket++;
  $("suggestions").hidden = true;
  $("suggestions").replaceChildren();
  $("q").setAttribute("aria-expanded", "false");
  $("q").removeAttribute("aria-activedescendant");
  options = [];
  active = -1;
}

function highlightOption(index) {
  const previous = $(`suggestion-${active}`);
  if (previous) { previous.setAttribute("aria-selected", "false"); previous.classList.remove("active"); }
  active = index;
  const node = $(`suggestion-${index}`);
  node.setAttribute("aria-selected", "true");
  node.classList.add("active");
  node.scrollIntoView({ block: "nearest" });
  $("q").setAttribute("aria-activedescendant", node.id);
}

function pick(index) {
  const option = options[index];
  closeSuggestions();
  if (!option.hit) {
    $("q").value = option.text;
    startSearch(option.text).catch(showError);
    return;
  }
  shoplm.click(option.hit.item_id, { listId: option.listId, position: option.hit.position });
  go({ item: option.hit.item_id }, true).catch(showError);
}

$("q").addEventListener("input", () => {
  clearTimeout(suggestTimer);
  suggestTimer = setTimeout(() => suggest().catch(showError), SUGGEST_DELAY_MS);
});
$("q").addEventListener("keydown", (e) => {
  const open = !$("suggestions").hidden;
  if ((e.key === "ArrowDown" || e.key === "ArrowUp") && open) {
    e.preventDefault();
    const step = e.key === "ArrowDown" ? 1 : -1, n = options.length;
    highlightOption(active < 0 ? (step > 0 ? 0 : n - 1) : (active + step + n) % n);
  } else if (e.key === "ArrowDown" && $("q").value.trim()) {
    e.preventDefault();
    suggest().catch(showError);
  } else if (e.key === "Enter" && open && active >= 0) {
    e.preventDefault();
    pick(active);
  } else if (e.key === "Escape" && open) {
    e.preventDefault();  // and the search box keeps its text
    closeSuggestions();
  }
});
$("q").addEventListener("blur", closeSuggestions);
$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("q").value.trim();
  (q ? startSearch(q) : go({ brands: [], page: 1 })).catch(showError);
});

// --- an item page and the sidebar -------------------------------------------------------
async function showItem(itemId, ticket) {
  const item = await api(`/v1/items/${encodeURIComponent(itemId)}`);
  if (ticket !== generation) return;
  currentItem = item;
  document.body.dataset.view = "item";
  $("listing").hidden = true;
  $("item").hidden = false;
  $("content-title").textContent = item.title;
  document.title = item.title + " · shoplm";
  renderBreadcrumbs({ category: item.category || "", brands: [], page: 1 }, true);
  $("item-meta").textContent = item.brand || "";
  $("item-price").textContent = price(item.price);
  $("item-description").textContent = item.description || "";
  $("bought").textContent = "";
  $("item-image").hidden = !item.image_url;
  if (item.image_url) $("item-image").src = item.image_url;  // a broken one hides itself (below)
  $("item-url").hidden = !item.url;
  if (item.url) $("item-url").href = item.url;
  const id = encodeURIComponent(itemId);
  const [together, similar] = await Promise.all([
    api(`/v1/items/${id}/bought-together?k=4`), api(`/v1/items/${id}/similar?k=6`)]);
  if (ticket !== generation) return;
  renderList($("together"), together, "Not bought with anything yet.");
  renderList($("similar"), similar, "Nothing similar.");
  $("item").dataset.loaded = itemId;
}

function renderList(container, answer, emptyText) {
  container.replaceChildren();
  if (!answer.items.length) container.append(text("li", emptyText, "empty"));
  answer.items.forEach((hit) => {
    const li = document.createElement("li");
    li.className = "card";
    li.dataset.itemId = hit.item_id;
    const link = text("a", hit.title, "title");
    link.href = href({ item: hit.item_id });
    link.addEventListener("click", (e) => openHit(e, link, hit.item_id, { listId: answer.list_id, position: hit.position }));
    li.append(link);
    const meta = [hit.brand, price(hit.price)].filter(Boolean).join(" · ");
    if (meta) li.append(text("p", meta, "meta"));
    if (hit.reason) li.append(text("p", hit.reason, "reason"));
    container.append(li);
  });
}

// The sidebar reads the profile once the events queued so far are stored.
async function refreshSidebar(context = {}) {
  await shoplm.flush();
  const recs = await api("/v1/recommend?" + withSession(new URLSearchParams({ k: 6, ...context })));
  renderList($("recommended"), recs, "Nothing yet.");
  const session = shoplm.sessionId();
  $("visitor").textContent = session || "not tracked";
  const box = $("profile");
  box.replaceChildren();
  if (!session) {
    box.append(text("p", "Tracking is off: nothing you do here is recorded.", "empty"));
    return;
  }
  const profile = await api(`/v1/sessions/${encodeURIComponent(session)}/profile`);
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
  const band = profile.price_band;
  if (band) rows.push(["Price band", `${price(band.p25)} – ${price(band.p75)}`]);
  rows.filter(([, v]) => v).forEach(([k, v]) => list.append(text("dt", k), text("dd", v)));
  box.append(list);
}

// A cart or purchase on the item page is credited to the list of the click that led here.
$("add-to-cart").addEventListener("click", () => {
  if (!currentItem) return;
  shoplm.addToCart(currentItem.item_id);
  refreshSidebar({ item_id: currentItem.item_id }).catch(showError);
});
$("buy").addEventListener("click", () => {
  if (!currentItem) return;
  shoplm.purchase([{ itemId: currentItem.item_id, value: currentItem.price }]);
  $("bought").textContent = "Thank you: your order is placed.";
  refreshSidebar({ item_id: currentItem.item_id }).catch(showError);
});
$("new-visitor").addEventListener("click", () => {
  shoplm.reset();
  currentItem = null;
  go({ brands: [], page: 1 }).catch(showError);
});

$("item-image").addEventListener("error", () => { $("item-image").hidden = true; });
$("visitor").textContent = shoplm.sessionId() || "not tracked";
render().catch(showError);
