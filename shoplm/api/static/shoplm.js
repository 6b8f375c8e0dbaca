// shoplm.js: the behaviour events of a storefront, sent to the shoplm service. No dependencies.
//
//   <script src="https://search.shop.example/v1/shoplm.js"></script>
//   shoplm.init({ key: "READ_KEY" });  // endpoint: by default the origin this script came from
//   shoplm.click("sku-1", { listId: answer.list_id, position: hit.position, query: "drill" });
//   shoplm.addToCart("sku-1");          // credited to the list of the click that led to sku-1
//   shoplm.purchase([{ itemId: "sku-1", value: 129.0 }]);
//
// Events wait in a queue and go out in batches (POST /v1/events, fetch with keepalive), also
// when the page is hidden or left. Each carries the time it happened, fixed when it was
// queued: the service's event identity includes it, so a batch sent twice is stored once.
// With navigator.doNotTrack === "1", the "shoplm_optout" flag in localStorage, or after
// shoplm.optOut(), nothing is sent and nothing is kept.
(function () {
  "use strict";
  if (window.shoplm) return;  // included twice: one queue, one set of listeners

  const BATCH_SIZE = 20;  // events per request; a queue this long goes out at once
  const FLUSH_MS = 1000;  // the longest an event waits in the queue
  const RETRIES = 3;  // a batch the network or an overloaded service (429, 5xx) lost is sent again, 2 s, 4 s, 8 s later
  const SESSION_IDLE_MS = 30 * 60 * 1000;  // 30 minutes without an event end a session, as web analytics count visits
  const ATTRIBUTION_MS = 30 * 60 * 1000;  // the service's SHOPLM_ATTRIBUTION_WINDOW_S default (1800 s)
  const REMEMBERED = 200;  // items whose list is remembered: bounds the sessionStorage entry
  const SID = "shoplm_sid", OPTOUT = "shoplm_optout", LISTS = "shoplm_lists";

  const script = document.currentScript;
  const config = { endpoint: script && script.src ? new URL(script.src).origin : location.origin, key: null, userId: null };
  let queue = [], timer = 0, lastStamp = 0;

  // Storage can be missing or refuse writes (privacy modes, full quota): tracking then does without.
  function read(storage, name) {
    try { return JSON.parse(window[storage].getItem(name)); } catch (error) { return null; }  // unreadable = absent
  }
  function write(storage, name, value) {
    try {
      if (value === null) window[storage].removeItem(name);
      else window[storage].setItem(name, JSON.stringify(value));
    } catch (error) { /* not kept: the next page starts without it */ }
  }

  function optedOut() {
    let flag = null;  // set by optOut(), or by the shop's own consent banner: any value but "0" or "false"
    try { flag = localStorage.getItem(OPTOUT); } catch (error) { /* no storage, no flag */ }
    return navigator.doNotTrack === "1" || (flag !== null && flag !== "0" && flag !== "false");
  }

  function randomId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // The visit's id, renewed after SESSION_IDLE_MS without use; null when opted out.
  function sessionId() {
    if (optedOut()) return null;
    const now = Date.now();
    let session = read("localStorage", SID);
    if (!session || typeof session.id !== "string" || now - session.seen > SESSION_IDLE_MS) session = { id: randomId() };
    session.seen = now;
    write("localStorage", SID, session);
    return session.id;
  }

  function reset() {
    write("localStorage", SID, null);
    write("sessionStorage", LISTS, null);
    return sessionId();
  }

  // item id -> {listId, position, at}: the list a click picked the item from, for the add-to-cart
  // or purchase that may follow on another page of the same tab.
  function lists() {
    const now = Date.now(), kept = {};
    for (const [item, seen] of Object.entries(read("sessionStorage", LISTS) || {})) {
      if (seen && now - seen.at <= ATTRIBUTION_MS) kept[item] = seen;
    }
    return kept;
  }

  function remember(itemId, { listId, position } = {}) {
    if (!listId || optedOut()) return;
    const kept = lists();
    delete kept[itemId];  // re-inserted last: the oldest entries are the first ones
    kept[itemId] = { listId, position, at: Date.now() };
    const items = Object.keys(kept);
    items.slice(0, Math.max(0, items.length - REMEMBERED)).forEach((item) => delete kept[item]);
    write("sessionStorage", LISTS, kept);
  }

  function recall(itemId) {
    const seen = lists()[itemId];
    return seen ? { listId: seen.listId, position: seen.position } : null;
  }

  // The list an event on the item is credited to: the one given, else the one remembered.
  function ledBy(itemId, ctx) {
    if (ctx.listId) return ctx;
    return { ...ctx, ...recall(itemId) };
  }

  function track(type, itemId, ctx = {}) {
    if (optedOut()) return;
    // Milliseconds, strictly increasing: two calls are two events, even within one millisecond.
    lastStamp = Math.max(Date.now(), lastStamp + 1);
    const event = { event_type: type, session_id: sessionId(), timestamp: lastStamp / 1000 };
    if (config.userId) event.user_id = config.userId;
    if (itemId != null) event.item_id = String(itemId);
    if (ctx.query) event.query = ctx.query;
    if (ctx.listId) event.list_id = ctx.listId;
    if (ctx.position != null) event.position = ctx.position;
    if (ctx.value != null) event.value = ctx.value;
    queue.push(event);
    if (queue.length >= BATCH_SIZE) flush();
    else if (!timer) timer = setTimeout(flush, FLUSH_MS);
  }

  // A batch is stored all or nothing; a 422 names each refused event (details[].loc
  // ["body", "events", i, field]), and the others are worth sending again.
  function accepted(batch, problem) {
    const refused = new Set(((problem.error || {}).details || []).map((d) => d.loc && d.loc[2]));
    return batch.filter((_, i) => !refused.has(i));
  }

  function post(batch, attempt) {
    const headers = { "content-type": "application/json" };
    if (config.key) headers["x-api-key"] = config.key;
    const retry = (why) => {
      if (attempt >= RETRIES) return console.warn("shoplm: events not sent:", why);
      setTimeout(() => post(batch, attempt + 1), 2000 * 2 ** attempt);
    };
    // keepalive: the request outlives the page, which is what an unload flush needs; unlike
    // sendBeacon it can carry the key in its header.
    return fetch(config.endpoint + "/v1/events", {
      method: "POST", headers, body: JSON.stringify({ events: batch }), keepalive: true, credentials: "omit",
    }).then((response) => {
      if (response.ok) return;
      if (response.status === 429 || response.status >= 500) return retry("HTTP " + response.status);
      return response.json().catch(() => ({})).then((problem) => {
        console.warn("shoplm: events refused:", (problem.error && problem.error.message) || "HTTP " + response.status);
        const rest = response.status === 422 ? accepted(batch, problem) : [];
        if (rest.length && rest.length < batch.length) return post(rest, attempt);
      });
    }, (error) => retry(error.message));
  }

  // Send everything queued; resolves once the service has answered (first attempts only).
  function flush() {
    clearTimeout(timer);
    timer = 0;
    const sent = [];
    while (queue.length) sent.push(post(queue.splice(0, BATCH_SIZE), 0));
    return Promise.all(sent).then(() => undefined);
  }

  function optOut() {
    write("localStorage", OPTOUT, 1);
    write("localStorage", SID, null);
    write("sessionStorage", LISTS, null);
    queue = [];
    clearTimeout(timer);
    timer = 0;
  }

  function optIn() {
    write("localStorage", OPTOUT, null);
  }

  window.addEventListener("pagehide", flush);
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") flush(); });

  window.shoplm = {
    // endpoint: the service's origin; key: the read key, if the service has one; userId: a signed-in shopper.
    init(options = {}) {
      for (const [name, value] of Object.entries(options)) if (value !== undefined) config[name] = value;
      config.endpoint = String(config.endpoint).replace(/\/+$/, "");
      return window.shoplm;
    },
    sessionId, reset, remember, recall, flush, optOut, optIn, optedOut,
    search(query, ctx = {}) { track("search", null, { ...ctx, query }); },
    view(itemId, ctx = {}) { track("view", itemId, ledBy(itemId, ctx)); },
    click(itemId, ctx = {}) { remember(itemId, ctx); track("click", itemId, ctx); },
    addToCart(itemId, ctx = {}) { track("add_to_cart", itemId, ledBy(itemId, ctx)); },
    // items: [{itemId, value}], value the revenue of that line.
    purchase(items, ctx = {}) { items.forEach(({ itemId, value }) => track("purchase", itemId, { ...ledBy(itemId, ctx), value })); },
  };
})();
