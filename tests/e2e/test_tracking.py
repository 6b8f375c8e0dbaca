"""The tracking snippet (/v1/shoplm.js) in headless Chromium against `shoplm serve` on loopback,
with a read key: in the storefront, a search, a click on its 3rd hit and a purchase on the item
page (reloaded in between) reach the store once each, all three with the search's list_id and
the last two with position 2; re-sending what was posted stores nothing. Opted out (by
`shoplm.optOut()`, the storage flag or Do Not Track) nothing is posted. A shop on another
origin (allowed by SHOPLM_CORS_ORIGINS) loads the snippet: a batch with an event the service
refuses still delivers the others, and events still queued when the page is left arrive once.
The route itself is public and cacheable."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

import pytest

from shoplm.api.snippet import SNIPPET
from shoplm.store import open_store
from tests.service import ServiceProcess, free_port, run_cli

READ = "read-key-for-the-tracking-test"
ITEMS = [  # item_id, title, category, brand, price; no url: a hit opens the storefront's item page
    ("drill-1", "Cordless drill 18V with two batteries", "Tools > Drills", "Makita", 129.0),
    ("drill-2", "Hammer drill 750W corded", "Tools > Drills", "Bosch", 89.0),
    ("drill-3", "Drill bit set for wood and metal", "Tools > Drill Bits", "Bosch", 24.0),
    ("drill-4", "Compact drill driver 12V", "Tools > Drills", "Bosch", 79.0),
    ("drill-5", "Brushless hammer drill 18V", "Tools > Drills", "DeWalt", 189.0),
    ("saw-1", "Hand saw for wood, 500 mm", "Tools > Saws", "Stanley", 19.9),
    ("glue-1", "Wood glue, waterproof, 250 ml", "Adhesives", "Titebond", 6.5),
]
ARRIVAL_S = 15  # the longest an event may take to reach the store
QUIET_S = 2.5  # past the snippet's 1 s flush and any retry that should not happen


class Service(NamedTuple):
    url: str
    store_url: str
    shop: str  # another origin: a page of another shop that includes the snippet (`_other_shop`)


def _other_shop(service_url: str) -> ThreadingHTTPServer:
    """A shop's page on another port of loopback (another origin, and the same address space,
    which Chrome requires to let a page reach loopback) that loads the snippet from the service."""
    page = (f'<!doctype html><title>Another shop</title><script src="{service_url}/v1/shoplm.js"></script>'
            f'<script>shoplm.init({{ key: "{READ}" }});</script>').encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    shop = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=shop.serve_forever, daemon=True).start()
    return shop


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("tracking")
    items = work / "items.csv"
    items.write_text("item_id,title,category,brand,price\n" + "".join(f'{i},"{t}",{c},{b},{p}\n' for i, t, c, b, p in ITEMS))
    store_url = f"sqlite:///{work / 'shop.db'}"
    run_cli("ingest", "--items", str(items), "--store", store_url)
    port = free_port()
    shop = _other_shop(f"http://127.0.0.1:{port}")
    shop_origin = f"http://127.0.0.1:{shop.server_address[1]}"
    env = {"SHOPLM_READ_KEY": READ, "SHOPLM_CORS_ORIGINS": json.dumps([shop_origin])}
    try:
        with ServiceProcess(store_url, work, env=env, port=port) as service:
            yield Service(service.url, store_url, shop_origin)
    finally:
        shop.shutdown()


@pytest.fixture
def page(browser):  # noqa: F811 - the fixture imported above
    context = browser.new_context()  # a new visitor: empty storage
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors


def _posted(page) -> list[list[dict]]:
    """The event batches the page posts, as they are posted."""
    batches: list[list[dict]] = []
    page.on("request", lambda r: r.method == "POST" and r.url.endswith("/v1/events")
            and batches.append(json.loads(r.post_data)["events"]))
    return batches


def _events(store_url: str, session_id: str) -> list:
    """The session's events, read from the store itself, oldest first."""
    store = open_store(store_url)
    try:
        return store.actor_events(session_id=session_id)
    finally:
        store.close()


def _event_count(store_url: str) -> int:
    store = open_store(store_url)
    try:
        return store.counts()["events"]
    finally:
        store.close()


def _arrived(store_url: str, session_id: str, n: int) -> list:
    """The session's events once `n` are stored, read again a while later (when any late duplicate is in)."""
    deadline = time.monotonic() + ARRIVAL_S
    while len(_events(store_url, session_id)) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(QUIET_S)
    return _events(store_url, session_id)


def _post(url: str, batch: list[dict]) -> dict:
    request = urllib.request.Request(url + "/v1/events", data=json.dumps({"events": batch}).encode(),
                                     headers={"X-API-Key": READ, "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _hide_twice(page) -> None:
    page.evaluate("""() => { window.dispatchEvent(new PageTransitionEvent("pagehide"));
                             window.dispatchEvent(new PageTransitionEvent("pagehide")); }""")


def _search_click_third_and_buy(page, url: str, first: str = "") -> dict:
    """In the storefront: (run `first`,) search "drill", open the 3rd hit, reload its page, buy.
    Returns the search answer."""
    page.goto(url + "/#key=" + READ)
    page.wait_for_function("() => document.querySelector('#listing').dataset.loaded === location.search")
    if first:
        page.evaluate(first)
    with page.expect_response(lambda r: "/v1/search?" in r.url and "q=drill" in r.url) as answer:
        page.fill("#q", "drill")
        page.press("#q", "Enter")
        page.wait_for_function("() => document.querySelector('#listing').dataset.loaded === '?q=drill'")
    found = answer.value.json()
    third = found["items"][2]["item_id"]
    page.click(f"#results .card[data-item-id='{third}'] .title a")
    page.wait_for_selector(f"#item:not([hidden])[data-loaded='{third}']")
    page.reload()  # a fresh page: the click's list must come from what the snippet remembered
    page.wait_for_selector(f"#item:not([hidden])[data-loaded='{third}']")
    page.click("#buy")
    page.wait_for_function("() => document.querySelector('#bought').textContent")
    return found


def test_a_search_a_click_and_a_purchase_arrive_once_with_the_list_id(server, page):
    batches = _posted(page)
    found = _search_click_third_and_buy(page, server.url)
    list_id, third = found["list_id"], found["items"][2]
    assert third["position"] == 2
    page.wait_for_function("() => document.querySelector('#profile').innerText.includes('purchase 1')")
    session = page.evaluate("shoplm.sessionId()")
    _hide_twice(page)
    page.goto("about:blank")  # left: hidden and unloaded, the queue flushed again

    events = _arrived(server.store_url, session, 3)
    assert [(e.event_type, e.item_id, e.query, e.list_id, e.position) for e in events] == [
        ("search", None, "drill", list_id, None),
        ("click", third["item_id"], "drill", list_id, 2),
        ("purchase", third["item_id"], None, list_id, 2),
    ]
    assert events[2].value == third["price"] and {e.session_id for e in events} == {session}
    sent = [event for batch in batches for event in batch]
    assert len(sent) == 3  # the page never posted an event twice
    for batch in batches:  # and posting them all again stores nothing: each keeps its timestamp
        assert _post(server.url, batch) == {"accepted": len(batch), "stored": 0, "duplicates": len(batch)}
    assert len(_events(server.store_url, session)) == 3


OPT_OUTS = {  # how: (a script run before every page's own, a script run once the storefront is up)
    "optOut()": ("", "shoplm.optOut()"),
    "storage flag": ("if (location.protocol === 'http:') localStorage.setItem('shoplm_optout', '1')", ""),
    "doNotTrack": ("Object.defineProperty(Navigator.prototype, 'doNotTrack', { get: () => '1' })", ""),
}


@pytest.mark.parametrize("how", OPT_OUTS)
def test_an_opted_out_visitor_sends_nothing(server, page, how):
    before = _event_count(server.store_url)
    batches = _posted(page)
    on_every_page, once_up = OPT_OUTS[how]
    if on_every_page:
        page.add_init_script(on_every_page)
    _search_click_third_and_buy(page, server.url, first=once_up)
    page.wait_for_function("() => document.querySelector('#profile').innerText.includes('Tracking is off')")
    assert page.evaluate("[localStorage.getItem('shoplm_sid'), sessionStorage.getItem('shoplm_lists')]") == [None, None]
    _hide_twice(page)
    page.goto("about:blank")
    time.sleep(QUIET_S)
    assert batches == [] and _event_count(server.store_url) == before


def test_a_shop_on_another_origin_sends_what_is_queued_when_its_page_is_left(server, page):
    request = urllib.request.Request(server.url + "/v1/search?" + urllib.parse.urlencode({"q": "saw"}),
                                     headers={"X-API-Key": READ})
    with urllib.request.urlopen(request, timeout=30) as response:
        found = json.load(response)
    hit = found["items"][0]
    page.goto(server.shop + "/product")
    session = page.evaluate("""async ([item, listId]) => {
        shoplm.click(item, { listId, position: 0, query: "saw" });
        shoplm.view("no-such-item");  // refused (422): the rest of its batch is sent again without it
        await shoplm.flush();
        shoplm.addToCart(item);  // the list remembered from the click
        shoplm.purchase([{ itemId: item, value: 19.9 }]);
        return shoplm.sessionId();
    }""", [hit["item_id"], found["list_id"]])
    page.goto("about:blank")  # within the 1 s the queue waits: sent by the unload flush alone

    events = _arrived(server.store_url, session, 3)
    assert [(e.event_type, e.list_id, e.position) for e in events] == [
        ("click", found["list_id"], 0), ("add_to_cart", found["list_id"], 0), ("purchase", found["list_id"], 0)]
    assert len({e.timestamp for e in events}) == 3  # three calls, three events, even within a millisecond


def test_the_snippet_is_public_and_cacheable(server):
    with urllib.request.urlopen(server.url + "/v1/shoplm.js", timeout=30) as response:  # no key
        body, headers = response.read(), response.headers
    assert headers["content-type"].startswith("application/javascript")
    assert "max-age=" in headers["cache-control"] and headers["etag"].startswith('"')
    assert body == SNIPPET.read_bytes()
    again = urllib.request.Request(server.url + "/v1/shoplm.js", headers={"If-None-Match": headers["etag"]})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(again, timeout=30)
    assert answer.value.code == 304 and answer.value.headers["etag"] == headers["etag"]
