"""The operator dashboard (/admin) in headless Chromium against `shoplm serve` on loopback: the
analytics it shows equal GET /v1/admin/analytics after searches and clicks posted with their
list_id; a rule made in its form is refused naming the field, then listed, seen acting in the
search preview (with the rules, and without them, the hits that moved marked), edited and
deleted, the previews logging nothing; an experiment is listed with its arms, shares and results
over the analytics' time range, an arm promoted and the experiment stopped from its buttons;
a wrong key, or the read key, shows an error and no data.

SHOPLM_SCREENSHOT_ADMIN=docs/admin.png saves the whole page (1280 wide), a rule in force, there."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.service import ServiceProcess, run_cli

ADMIN, READ = "admin-key-for-the-dashboard", "read-key-for-the-shop"
ITEMS = [  # item_id, title, category, brand, price
    ("drill-1", "Cordless drill 18V with two batteries", "Tools > Drills", "Makita", 129.0),
    ("drill-2", "Hammer drill 750W corded", "Tools > Drills", "Bosch", 89.0),
    ("drill-3", "Drill bit set for wood and metal", "Tools > Drill Bits", "Bosch", 24.0),
    ("drill-4", "Compact drill driver 12V", "Tools > Drills", "Bosch", 79.0),
    ("saw-1", "Hand saw for wood, 500 mm", "Tools > Saws", "Stanley", 19.9),
    ("saw-2", "Circular saw 1200W", "Tools > Saws", "Makita", 149.0),
    ("glue-1", "Wood glue, waterproof, 250 ml", "Adhesives", "Titebond", 6.5),
    ("tape-1", "Duct tape silver 50 m", "Adhesives", "3M", 8.0),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("admin")
    items = work / "items.csv"
    items.write_text("item_id,title,category,brand,price\n" + "".join(f'{i},"{t}",{c},{b},{p}\n' for i, t, c, b, p in ITEMS))
    events = work / "events.csv"
    events.write_text("timestamp,user_id,event_type,item_id\n" + "".join(
        f"{1700000000 + u * 10 + j},u{u},purchase,{item}\n" for u in range(6)
        for j, item in enumerate(("drill-1", "drill-3") if u % 2 else ("glue-1", "tape-1"))))
    store = f"sqlite:///{work / 'shop.db'}"
    run_cli("ingest", "--items", str(items), "--events", str(events), "--store", store)
    env = {"SHOPLM_ADMIN_KEY": ADMIN, "SHOPLM_READ_KEY": READ, "SHOPLM_IMPRESSION_FLUSH_S": "0.2"}
    with ServiceProcess(store, work, env=env) as service:
        _traffic(service.url)
        yield service.url


def _call(url: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"X-API-Key": key, "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _analytics(server: str, since: str = "") -> dict:
    status, report = _call(server + "/v1/admin/analytics" + (f"?since={since}" if since else ""), ADMIN)
    assert status == 200, report
    return report


def _traffic(server: str) -> None:
    """Four searches (one with no result), a recommendation list, clicks on two lists and a
    purchase, all with their list_id; then wait for the impressions to be written."""
    def search(q: str, session: str) -> dict:
        return _call(f"{server}/v1/search?" + urllib.parse.urlencode({"q": q, "session_id": session, "limit": 5}), READ)[1]

    drill, again, saw = search("drill", "s1"), search("drill", "s2"), search("saw", "s3")
    search("zzqx", "s4")
    recs = _call(f"{server}/v1/recommend?session_id=s1&k=4", READ)[1]
    picked = drill["items"][1]
    events = [
        {"session_id": "s1", "event_type": "click", "item_id": picked["item_id"], "position": 1,
         "list_id": drill["list_id"]},
        {"session_id": "s1", "event_type": "purchase", "item_id": picked["item_id"], "value": 129.0,
         "list_id": drill["list_id"]},
        {"session_id": "s2", "event_type": "click", "item_id": again["items"][0]["item_id"], "position": 0,
         "list_id": again["list_id"]},
        {"session_id": "s3", "event_type": "click", "item_id": saw["items"][0]["item_id"], "position": 0,
         "list_id": saw["list_id"]},
        {"session_id": "s1", "event_type": "click", "item_id": recs["items"][2]["item_id"], "position": 2,
         "list_id": recs["list_id"]},
    ]
    assert _call(server + "/v1/events", READ, {"events": events})[0] == 200
    _wait_for_searches(server, 4)


def _searches(server: str) -> int:
    return _analytics(server)["surfaces"].get("search", {}).get("impressions", 0)


def _wait_for_searches(server: str, n: int) -> None:
    """Until the analytics count `n` searches: impressions are written in batches."""
    deadline = time.monotonic() + 30
    while _searches(server) != n:
        assert time.monotonic() < deadline, _analytics(server)
        time.sleep(0.2)


@pytest.fixture
def page(server, browser):  # noqa: F811 - the fixture imported above
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # a new tab: empty sessionStorage
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    keys: list[str | None] = []
    page.on("request", lambda r: keys.append(r.headers.get("x-api-key")) if "/v1/" in r.url else None)
    page.keys = keys
    yield page
    context.close()
    assert not errors, errors


def _open(page, server: str) -> None:
    page.goto(f"{server}/admin#key={ADMIN}")
    page.wait_for_selector("body[data-state=open]")


def _cells(page, selector: str) -> list[dict]:
    """Each row of a table: its first cell's text (or data-query), and every data-value by column."""
    return page.locator(f"{selector} tbody tr:not(:has(td.empty))").evaluate_all("""rows => rows.map(r => {
        const first = r.firstElementChild;
        const row = {[first.dataset.key]: first.dataset.query || first.textContent};
        r.querySelectorAll('[data-value]').forEach(c => { row[c.dataset.key] = Number(c.dataset.value); });
        return row; })""")


def _loads(page) -> int:
    return int(page.get_attribute("#analytics", "data-loaded"))


def test_the_analytics_on_the_page_equal_the_json(server, page):
    _open(page, server)
    assert "key=" not in page.url and page.evaluate("sessionStorage.getItem('shoplm.admin_key')") == ADMIN
    since = page.get_attribute("#analytics", "data-since")
    assert abs(int(since) - (time.time() - 7 * 86400)) < 120  # the default range: the last 7 days
    report = _analytics(server, since)

    surfaces = [{"surface": s, **{k: m[k] for k in ("impressions", "clicks", "ctr", "carts", "conversions",
                                                    "conversion", "revenue")}} for s, m in report["surfaces"].items()]
    assert _cells(page, "#surfaces") == surfaces  # exact: a float's shortest text is the same in JSON and JS
    search = report["surfaces"]["search"]
    assert (search["impressions"], search["clicks"], search["conversions"], search["revenue"]) == (4, 3, 1, 129.0)
    row = page.locator("#surfaces tbody tr", has=page.locator("th:text-is('search')"))
    assert row.locator("[data-key=ctr]").inner_text() == f"{100 * search['ctr']:.1f}%" == "75.0%"
    assert row.locator("[data-key=revenue]").inner_text() == "129.00"
    bars = page.locator("#surface-chart rect.bar").evaluate_all("rs => rs.map(r => Number(r.dataset.value))")
    assert bars == [v for s in surfaces for v in (s["ctr"], s["conversion"])]
    dots = page.locator("#position-chart circle").evaluate_all("cs => cs.map(c => Number(c.dataset.value))")
    assert dots == [r["ctr"] for rows in report["ctr_by_position"].values() for r in rows]
    assert page.locator("#position-chart polyline[data-surface=search]").count() == 1

    columns = {"#top-queries": ("searches", "clicks", "ctr", "conversions", "revenue"),
               "#zero-queries": ("searches", "zero_results"), "#low-ctr-queries": ("searches", "clicks", "ctr")}
    for table, rows in zip(columns, ("queries", "zero_result_queries", "low_ctr_queries")):
        expected = [{"query": q["query"], **{k: q[k] for k in columns[table]}} for q in report[rows]]
        assert _cells(page, table) == expected, table
    assert [q["query"] for q in report["queries"]] == ["drill", "saw", "zzqx"]
    assert [q["query"] for q in report["zero_result_queries"]] == ["zzqx"]
    status, experiments = _call(server + "/v1/admin/experiments", ADMIN)
    if status == 404 or experiments == []:
        assert "No experiments yet" in page.inner_text("#experiment-list")

    loads = _loads(page)
    page.select_option("#range", "")  # all time
    page.wait_for_function(f"() => Number(document.querySelector('#analytics').dataset.loaded) > {loads}")
    assert page.get_attribute("#analytics", "data-since") == ""
    assert _cells(page, "#surfaces") == surfaces  # everything happened in the last minute
    assert page.keys and all(key == ADMIN for key in page.keys)  # every data call carries the admin key


def _preview(page, query: str) -> list[str]:
    page.fill("#preview-q", query)
    page.press("#preview-q", "Enter")
    return _preview_hits(page, query)


def _preview_hits(page, query: str, column: str = "#preview-hits") -> list[str]:
    """The ids in a preview column: #preview-hits (with the rules) or #preview-plain (without)."""
    page.wait_for_selector(f"#preview[data-loaded='{query}']")
    return page.locator(f"{column} li[data-item-id]").evaluate_all("ls => ls.map(l => l.dataset.itemId)")


def _moved(page, column: str) -> dict[str, str]:
    """The hits of a preview column marked as placed differently in the other: id -> the note."""
    return dict(page.locator(f"{column} li.differs").evaluate_all(
        "ls => ls.map(l => [l.dataset.itemId, l.querySelector('.moved').textContent])"))


def _rules(server: str) -> list[dict]:
    status, body = _call(server + "/v1/admin/rules", ADMIN)
    assert status == 200, body
    return body["rules"] if isinstance(body, dict) else body


def test_a_rule_made_in_the_form_is_listed_acts_in_the_preview_and_is_deleted(server, page):
    if _call(server + "/v1/admin/rules", ADMIN)[0] == 404:
        pytest.skip("this service has no /v1/admin/rules")
    _open(page, server)
    searches = _searches(server)
    before = _preview(page, "drill")
    assert before and "glue-1" not in before and page.locator("#preview-rules li[data-rule-id]").count() == 0
    assert _preview_hits(page, "drill", "#preview-plain") == before and page.locator("#preview li.differs").count() == 0

    form = page.locator("#rule-form")
    form.locator("[name=action]").select_option("pin")
    form.locator("[name=item_id]").fill("no-such-item")
    form.locator("[name=position]").fill("0")
    form.locator("[name=query]").fill("Drill")
    form.locator("[name=name]").fill("glue with drills")
    form.locator("[type=submit]").click()
    error = form.locator(".field-error[data-error-for=item_id]")
    error.wait_for()
    assert "unknown item" in error.inner_text() and form.locator("[name=item_id]").get_attribute("aria-invalid") == "true"
    assert _rules(server) == [] and page.locator("#rules tr[data-rule-id]").count() == 0

    form.locator("[name=item_id]").fill("glue-1")
    form.locator("[type=submit]").click()
    page.wait_for_selector("#rules tr[data-rule-id]")
    (rule,) = _rules(server)
    assert (rule["action"], rule["item_id"], rule["position"], rule["query"], rule["name"]) == \
        ("pin", "glue-1", 0, "drill", "glue with drills")
    listed = page.inner_text(f"#rules tr[data-rule-id='{rule['id']}']")
    assert "pin at 0" in listed and "glue-1" in listed and "query “drill”" in listed
    assert form.locator(".field-error").count() == 0 and form.locator("[name=item_id]").input_value() == ""

    page.wait_for_function("() => document.querySelector('#preview-hits li')?.dataset.itemId === 'glue-1'")
    assert _preview_hits(page, "drill") == ["glue-1", *before][:10]  # 10: the preview's page size
    assert page.inner_text("#preview-hits li[data-item-id='glue-1'] .rule-reason") == \
        f"pinned by rule {rule['id']}: glue with drills"
    assert _preview_hits(page, "drill", "#preview-plain") == before  # the engine's own order, the rule left out
    assert page.locator("#preview-plain .rule-reason").count() == 0
    assert len(before) < 10  # so every hit is in both columns, the pinned one aside
    assert _moved(page, "#preview-hits") == {"glue-1": "not found without the rules",
                                             **{i: f"#{p + 1} without the rules" for p, i in enumerate(before)}}
    assert _moved(page, "#preview-plain") == {i: f"#{p + 2} with the rules" for p, i in enumerate(before)}
    assert f"Rule {rule['id']}" in page.inner_text("#preview-rules")
    assert _preview(page, "saw")[0] != "glue-1" and page.locator("#preview-rules li[data-rule-id]").count() == 0
    if os.environ.get("SHOPLM_SCREENSHOT_ADMIN"):
        _preview(page, "drill")
        page.locator("#preview-q").blur()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=os.environ["SHOPLM_SCREENSHOT_ADMIN"], full_page=True)

    _preview(page, "drill")
    page.click(f"#rules button[aria-label='Edit rule {rule['id']}']")
    assert page.inner_text("#rule-form-title") == f"Edit rule {rule['id']}"
    assert form.locator("[name=item_id]").input_value() == "glue-1" and form.locator("[name=query]").input_value() == "drill"
    form.locator("[name=position]").fill("1")
    form.locator("[type=submit]").click()
    page.wait_for_function(f"() => document.querySelector(\"#rules tr[data-rule-id='{rule['id']}']\")"
                           ".innerText.includes('pin at 1')")
    assert [(r["id"], r["position"]) for r in _rules(server)] == [(rule["id"], 1)]
    page.wait_for_function("() => document.querySelectorAll('#preview-hits li')[1]?.dataset.itemId === 'glue-1'")
    assert before[0] not in _moved(page, "#preview-hits") and "glue-1" in _moved(page, "#preview-hits")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"#rules button[aria-label='Delete rule {rule['id']}']")
    page.wait_for_selector(f"#rules tr[data-rule-id='{rule['id']}']", state="detached")
    assert _rules(server) == []
    assert "glue-1" not in _preview_hits(page, "drill") and page.locator("#preview-rules li[data-rule-id]").count() == 0
    page.wait_for_function("() => !document.querySelector('#preview li.differs')")
    time.sleep(0.5)  # impressions are written every 0.2 s: none of the previews was logged
    assert _searches(server) == searches


def test_a_synonym_made_in_the_form_is_listed_and_deleted(server, page):
    if _call(server + "/v1/admin/synonyms", ADMIN)[0] == 404:
        pytest.skip("this service has no /v1/admin/synonyms")
    _open(page, server)
    form = page.locator("#synonym-form")
    form.locator("[name=terms]").fill("adhesive, glue")
    form.locator("[type=submit]").click()
    page.wait_for_selector("#synonyms tr[data-synonym-id]")
    (synonym,) = _call(server + "/v1/admin/synonyms", ADMIN)[1]["synonyms"]
    assert synonym["terms"] == ["adhesive", "glue"] and "adhesive, glue" in page.inner_text("#synonyms tbody")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"#synonyms button[aria-label='Delete synonym {synonym['id']}']")
    page.wait_for_selector("#synonyms tr[data-synonym-id]", state="detached")
    assert _call(server + "/v1/admin/synonyms", ADMIN)[1]["synonyms"] == []


def test_a_wrong_key_or_the_read_key_shows_an_error_and_no_data(server, page):
    page.goto(f"{server}/admin#key=not-the-key")
    page.wait_for_selector("#error:not([hidden])")
    assert "not valid" in page.inner_text("#error") and "key=" not in page.url
    assert page.is_hidden("#dashboard") and page.locator("#dashboard tbody tr").count() == 0
    assert page.evaluate("sessionStorage.getItem('shoplm.admin_key')") is None

    page.fill("#key", READ)
    page.press("#key", "Enter")
    page.wait_for_function("() => document.querySelector('#error').innerText.includes('admin key')")
    assert page.is_hidden("#dashboard") and page.locator("#dashboard tbody tr").count() == 0

    page.fill("#key", ADMIN)
    page.press("#key", "Enter")
    page.wait_for_selector("body[data-state=open]")
    assert page.is_hidden("#error") and page.locator("#surfaces tbody tr").count() == len(_analytics(server)["surfaces"])
    page.click("#forget-key")
    assert page.is_hidden("#dashboard") and page.locator("#dashboard tbody tr").count() == 0



def test_an_experiment_is_listed_with_its_arms_shares_and_results(server, page):
    if _call(server + "/v1/admin/experiments", ADMIN)[0] == 404:
        pytest.skip("this service has no /v1/admin/experiments")
    status, experiment = _call(server + "/v1/admin/experiments", ADMIN, {"name": "fusion", "arms": [
        {"name": "control", "share": 0.5}, {"name": "bm25", "share": 0.5, "settings": {"hybrid_dense_weight": 0.2}}]})
    assert status in (200, 201), experiment
    try:
        searches = _searches(server)
        for v in range(8):  # visitors in both arms, two in three clicking
            hits = _call(f"{server}/v1/search?q=saw&session_id=x{v}", READ)[1]
            if v % 3:
                click = {"session_id": f"x{v}", "event_type": "click", "item_id": hits["items"][0]["item_id"],
                         "position": 0, "list_id": hits["list_id"]}
                assert _call(server + "/v1/events", READ, {"events": [click]})[0] == 200
        _wait_for_searches(server, searches + 8)
        _open(page, server)
        since = page.get_attribute("#experiments", "data-since")
        assert since == page.get_attribute("#analytics", "data-since") != ""  # one time range: the last 7 days
        results = _call(f"{server}/v1/admin/experiments/{experiment['id']}/results?since={since}", ADMIN)[1]
        assert results["since"] == int(since)
        selector = f"#experiment-list [data-experiment='{experiment['id']}']"
        panel = page.locator(selector)
        assert "fusion · running" in panel.inner_text() and "hybrid_dense_weight = 0.2" in panel.inner_text()
        figures = ("visitors", "clicked", "click_rate", "ctr", "conversion", "revenue_per_visitor")
        expected = [{"arm": arm, "share": 0.5, **{k: results["arms"][arm][k] for k in figures}} for arm in ("control", "bm25")]
        versus = results["arms"]["bm25"]["vs_control"]["click_rate"]["p_value"]
        if versus is not None:
            expected[1]["vs_control"] = versus
        assert _cells(page, f"#experiment-list [data-experiment='{experiment['id']}'] table") == expected
        report = _analytics(server)
        assert _cells(page, "#arms") == [{"arm": arm, **{k: m[k] for k in ("visitors", "impressions", "clicks", "ctr",
                                          "conversions", "conversion", "revenue", "revenue_per_visitor")}}
                                         for arm, m in report["arms"].items()]

        def stored() -> dict:
            return _call(f"{server}/v1/admin/experiments/{experiment['id']}", ADMIN)[1]

        asked: list[str] = []
        page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
        page.click(f"button[aria-label='Stop experiment {experiment['id']}']")
        assert "Stop experiment" in asked[0] and stored()["status"] == "running"  # not confirmed: nothing changes
        page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
        page.click(f"button[aria-label='Promote arm bm25 of experiment {experiment['id']}']")
        page.wait_for_selector(f"{selector}[data-status=promoted]")
        assert "Promote arm “bm25”" in asked[1] and (stored()["status"], stored()["winner"]) == ("promoted", "bm25")
        assert "fusion · promoted (winner: bm25)" in panel.inner_text() and "serving everyone" in panel.inner_text()
        page.once("dialog", lambda dialog: dialog.accept())
        page.click(f"button[aria-label='Stop experiment {experiment['id']}']")
        page.wait_for_selector(f"{selector}[data-status=stopped]")
        assert stored()["status"] == "stopped" and "fusion · stopped" in panel.inner_text()
        assert panel.locator("button").count() == 0  # nothing left to stop or promote
    finally:
        _call_delete(f"{server}/v1/admin/experiments/{experiment['id']}")


def _call_delete(url: str) -> None:
    request = urllib.request.Request(url, method="DELETE", headers={"X-API-Key": ADMIN})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 204
