"""The storefront in headless Chromium: search, open an item, see similar items, click, and
see the recommendations change. Runs `shoplm serve` as a real process on loopback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.service import ServiceProcess, run_cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("SHOPLM_SCREENSHOT_DIR", "var/screenshots"))

ITEMS = [
    ("drill-1", "Cordless drill 18V with two batteries", "Tools > Power Tools > Drills", "Makita", 129.0),
    ("drill-2", "Hammer drill 750W corded", "Tools > Power Tools > Drills", "Bosch", 89.0),
    ("drill-3", "Drill bit set for wood and metal, 30 pieces", "Tools > Accessories > Drill Bits", "Bosch", 24.0),
    ("saw-1", "Hand saw for wood, 500 mm", "Tools > Hand Tools > Saws", "Stanley", 19.9),
    ("saw-2", "Circular saw 1200W", "Tools > Power Tools > Saws", "Makita", 149.0),
    ("glue-1", "Wood glue, waterproof, 250 ml", "Adhesives > Wood Glue", "Titebond", 6.5),
    ("glue-2", "Super glue gel 20 g", "Adhesives > Instant Glue", "Loctite", 4.9),
    ("tape-1", "Duct tape silver 50 m", "Adhesives > Tapes", "3M", 8.0),
    ("sand-1", "Sandpaper assortment 120-240 grit", "Abrasives > Sandpaper", "3M", 9.5),
    ("sand-2", "Random orbit sander 300W", "Tools > Power Tools > Sanders", "Makita", 99.0),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("storefront")
    items = work / "items.csv"
    items.write_text("item_id,title,category,brand,price\n" + "".join(
        f'{i},"{t}",{c},{b},{p}\n' for i, t, c, b, p in ITEMS))
    events = work / "events.csv"
    rows = ["timestamp,user_id,event_type,item_id"]
    for u in range(12):  # other shoppers: drill buyers also buy drill bits, glue buyers tape
        pair = ("drill-1", "drill-3") if u % 2 else ("glue-1", "tape-1")
        rows += [f"{1700000000 + u * 100 + j},u{u},purchase,{item}" for j, item in enumerate(pair)]
    events.write_text("\n".join(rows) + "\n")
    store = f"sqlite:///{work / 'shop.db'}"
    run_cli("ingest", "--items", str(items), "--events", str(events), "--store", store)
    with ServiceProcess(store, work) as service:
        yield service.url


@pytest.fixture
def page(server):
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium package (`make test` does)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        yield page
        browser.close()


def _recommended(page) -> list[str]:
    return page.locator("#recommended .card").evaluate_all("nodes => nodes.map(n => n.dataset.itemId)")


def test_search_open_similar_click_and_recommendations_change(server, page):
    page.goto(server + "/")
    page.wait_for_selector("#recommended .card")
    before = _recommended(page)

    page.fill("#q", "cordless drill")
    page.click("#search-form button")
    page.wait_for_selector("#results[data-query='cordless drill'] .card")
    first = page.locator("#results .card").first
    assert first.get_attribute("data-item-id") == "drill-1"

    first.click()
    page.wait_for_selector("#item:not([hidden]) #similar .card")
    assert "Cordless drill" in page.inner_text("#item-title")
    similar = page.locator("#similar .card").evaluate_all("nodes => nodes.map(n => n.dataset.itemId)")
    assert similar and "drill-1" not in similar and "drill-2" in similar

    # the sidebar refreshes after the click event is acknowledged
    page.wait_for_function("() => document.querySelector('#profile').innerText.includes('click 1')")
    after = _recommended(page)
    assert after != before
    assert "drill-3" in after[:4]  # bought together with drill-1 by other shoppers
    assert "Drills" in page.inner_text("#profile")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "storefront.png"), full_page=True)

    page.click("#new-visitor")
    page.wait_for_function("() => document.querySelector('#profile').innerText.includes('New visitor')")
