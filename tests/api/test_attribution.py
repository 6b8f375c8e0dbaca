"""Attribution through HTTP on every store: a search's list_id, its impression, a click and a
purchase carrying it, and the analytics that count them exactly."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from shoplm.api import create_app
from shoplm.config import Settings
from shoplm.engine.engine import Engine
from shoplm.store import open_store
from tests.api.conftest import A, ADMIN, R, READ
from tests.api.test_answers import CATALOG


@pytest.fixture
def shop(store_url, tmp_path):
    settings = Settings(read_key=READ, admin_key=ADMIN, search_index_dir=tmp_path / "index",
                        embedding_cache_dir=tmp_path.parent / "shared-cache", impression_flush_s=60.0)
    store = open_store(store_url)
    store.upsert_items(CATALOG)
    with TestClient(create_app(settings, Engine.open(settings, store))) as client:
        yield client


def test_a_search_its_click_and_purchase_show_in_the_analytics_exactly(shop):
    page = shop.get("/v1/search", params={"q": "Wood glue", "session_id": "s1", "k": 3}, headers=R).json()
    other = shop.get("/v1/search", params={"q": "wood  GLUE", "session_id": "s2", "k": 3}, headers=R).json()
    empty = shop.get("/v1/search", params={"q": "zzqx", "session_id": "s3"}, headers=R).json()
    recs = shop.get("/v1/recommend", params={"session_id": "s1", "k": 3}, headers=R).json()
    assert len({page["list_id"], other["list_id"], empty["list_id"], recs["list_id"]}) == 4
    picked = page["items"][1]
    events = [
        {"session_id": "s1", "event_type": "click", "item_id": picked["item_id"], "position": picked["position"],
         "list_id": page["list_id"], "query": "Wood glue"},
        {"session_id": "s1", "event_type": "purchase", "item_id": picked["item_id"], "value": 12.5,
         "list_id": page["list_id"]},
        {"session_id": "s1", "event_type": "click", "item_id": recs["items"][0]["item_id"], "position": 0,
         "list_id": recs["list_id"]},
    ]
    assert shop.post("/v1/events", json={"events": events}, headers=R).status_code == 200
    report = shop.get("/v1/admin/analytics", headers=A).json()
    (glue,) = [q for q in report["queries"] if q["query"] == "wood glue"]
    assert glue == {"query": "wood glue", "searches": 2, "clicks": 1, "ctr": 0.5, "zero_results": 0,
                    "conversions": 1, "revenue": 12.5}
    assert [q["query"] for q in report["zero_result_queries"]] == ["zzqx"]
    search = report["surfaces"]["search"]
    assert (search["impressions"], search["clicks"], search["conversions"], search["revenue"]) == (3, 1, 1, 12.5)
    assert report["surfaces"]["recommend"]["clicks"] == 1
    assert report["ctr_by_position"]["search"][1] == {"position": 1, "impressions": 2, "clicks": 1, "ctr": 0.5}
    assert shop.get("/v1/admin/analytics", headers=R).status_code == 403  # never on the read key


def test_a_list_id_the_service_did_not_issue_is_refused_naming_the_field(shop):
    bad = {"session_id": "s", "event_type": "click", "item_id": "glue-1", "list_id": "00000000deadbeef00000000"}
    response = shop.post("/v1/events", json={"events": [bad]}, headers=R)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["body", "events", 0, "list_id"]
    bad_range = shop.get("/v1/admin/analytics", params={"since": 100, "until": 50}, headers=A)
    assert bad_range.status_code == 422 and bad_range.json()["error"]["details"][0]["loc"] == ["query", "until"]


def test_report_analytics_writes_markdown_charts_and_json(shop, store_url, tmp_path):
    if store_url == "memory://":
        pytest.skip("the CLI opens the store by URL: a memory store is another process's")
    from typer.testing import CliRunner

    from shoplm.cli import app

    page = shop.get("/v1/search", params={"q": "drill", "session_id": "s1"}, headers=R).json()
    shop.post("/v1/events", json={"events": [{"session_id": "s1", "event_type": "click", "position": 0,
                                              "item_id": page["items"][0]["item_id"], "list_id": page["list_id"]}]},
              headers=R)
    shop.app.state.engine.impressions.flush()
    result = CliRunner().invoke(app, ["report", "analytics", "--store", store_url, "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| drill |" in text and (tmp_path / "report" / "surfaces.png").stat().st_size > 1_000
    assert (tmp_path / "report" / "positions.png").is_file() and (tmp_path / "report" / "analytics.json").is_file()
