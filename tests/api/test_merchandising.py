"""/v1/admin/rules and /v1/admin/synonyms: CRUD on every store backend, 422s that name the
field with nothing written, the admin key, and a rule and a synonym acting on the next search;
/v1/search?rules=false (and preview=true), the admin key's preview: the page without the rules
(with them), never logged as an impression."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from shoplm.api import create_app
from shoplm.config import Settings
from shoplm.engine.engine import Engine
from shoplm.store import open_store
from tests.api.conftest import ADMIN, READ, A, R
from tests.api.test_routes import error
from tests.engine.test_rules import CATALOG

PIN = {"action": "pin", "item_id": "drill-1", "position": 0, "query": "saw", "name": "summer sale",
       "start": "2024-06-01T00:00:00Z"}


def test_rule_crud(client, catalog):
    created = client.post("/v1/admin/rules", json=PIN, headers=A)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["id"] >= 1 and rule["start"] == 1_717_200_000.0 and rule["end"] is None
    assert rule["surfaces"] == ["search", "browse", "recommend", "similar"] and rule["created_at"] == rule["updated_at"]
    assert client.get("/v1/admin/rules", headers=A).json() == {"rules": [rule]}
    assert client.get(f"/v1/admin/rules/{rule['id']}", headers=A).json() == rule
    replaced = client.put(f"/v1/admin/rules/{rule['id']}", json={**PIN, "position": 2, "start": None}, headers=A)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["position"] == 2 and replaced.json()["created_at"] == rule["created_at"]
    assert client.delete(f"/v1/admin/rules/{rule['id']}", headers=A).status_code == 204
    error(client.get(f"/v1/admin/rules/{rule['id']}", headers=A), 404)
    error(client.delete(f"/v1/admin/rules/{rule['id']}", headers=A), 404)
    error(client.put(f"/v1/admin/rules/{rule['id']}", json=PIN, headers=A), 404)
    assert client.get("/v1/admin/rules", headers=A).json() == {"rules": []}


BAD_RULES = [
    ({"item_id": "no-such-item"}, "item_id"),
    ({"start": "2024-06-02", "end": "2024-06-01T12:00:00Z"}, "end"),
    ({"position": None}, "position"),
    ({"action": "feature"}, "action"),
    ({"amount": 3}, "amount"),
    ({"surfaces": ["browse"]}, "surfaces"),
    ({"colour": "red"}, "colour"),
]


def test_a_bad_rule_is_a_422_naming_the_field_and_writes_nothing(client, catalog):
    for change, field in BAD_RULES:
        body = error(client.post("/v1/admin/rules", json={**PIN, **change}, headers=A), 422)
        assert field in body["message"] and any(field in map(str, d["loc"]) for d in body["details"]), (field, body)
        rule_id = client.post("/v1/admin/rules", json=PIN, headers=A).json()["id"]
        error(client.put(f"/v1/admin/rules/{rule_id}", json={**PIN, **change}, headers=A), 422)
        assert client.get(f"/v1/admin/rules/{rule_id}", headers=A).json()["item_id"] == PIN["item_id"]  # unchanged
        assert client.delete(f"/v1/admin/rules/{rule_id}", headers=A).status_code == 204
    assert client.get("/v1/admin/rules", headers=A).json() == {"rules": []}


def test_synonym_crud_and_422s(client, catalog):
    created = client.post("/v1/admin/synonyms", json={"terms": ["Sofa", "couch"]}, headers=A)
    assert created.status_code == 201, created.text
    synonym = created.json()
    assert synonym["terms"] == ["sofa", "couch"] and synonym["to"] == []
    one_way = client.post("/v1/admin/synonyms", json={"terms": ["tv"], "to": ["television"]}, headers=A).json()
    assert [s["id"] for s in client.get("/v1/admin/synonyms", headers=A).json()["synonyms"]] == [synonym["id"], one_way["id"]]
    assert client.put(f"/v1/admin/synonyms/{synonym['id']}", json={"terms": ["sofa", "settee"]},
                      headers=A).json()["terms"] == ["sofa", "settee"]
    for bad in ({"terms": ["sofa"]}, {"terms": []}, {"terms": ["a\x00b", "c"]}):
        body = error(client.post("/v1/admin/synonyms", json=bad, headers=A), 422)
        assert "terms" in body["message"], body
    assert client.delete(f"/v1/admin/synonyms/{one_way['id']}", headers=A).status_code == 204
    assert [s["id"] for s in client.get("/v1/admin/synonyms", headers=A).json()["synonyms"]] == [synonym["id"]]
    error(client.get(f"/v1/admin/synonyms/{one_way['id']}", headers=A), 404)


@pytest.mark.parametrize("path", ["/v1/admin/rules", "/v1/admin/synonyms", "/v1/admin/rules/1"])
def test_merchandising_needs_the_admin_key(client, path):
    error(client.get(path), 401)
    error(client.get(path, headers=R), 403)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("merchandising")
    settings = Settings(read_key=READ, admin_key=ADMIN, search_index_dir=tmp / "index", embedding_cache_dir=tmp / "cache")
    store = open_store("memory://")
    store.upsert_items(CATALOG)
    with TestClient(create_app(settings, Engine.open(settings, store))) as client:
        yield client


def search(shop, **params) -> dict:
    response = shop.get("/v1/search", params={"limit": 50, **params}, headers=R)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_rule_acts_on_the_next_search_and_recommendation(shop):
    before = search(shop, q="fan")
    rule = shop.post("/v1/admin/rules", json={"action": "pin", "item_id": "lamp-1", "position": 0, "query": "fan",
                                              "name": "summer sale", "end": time.time() + 3600}, headers=A).json()
    hide = shop.post("/v1/admin/rules", json={"action": "hide", "item_id": "glue-1"}, headers=A).json()
    after = search(shop, q="fan")
    assert after["items"][0]["item_id"] == "lamp-1" and after["total"] == before["total"] + 1
    assert after["items"][0]["reason"] == f"pinned by rule {rule['id']}: summer sale" and after["items"][0]["position"] == 0
    assert "glue-1" not in [h["item_id"] for h in search(shop, q="")["items"]]
    assert "glue-1" not in [h["item_id"] for h in shop.get("/v1/recommend?k=50", headers=R).json()["items"]]
    for created in (rule, hide):
        assert shop.delete(f"/v1/admin/rules/{created['id']}", headers=A).status_code == 204
    assert [h["item_id"] for h in search(shop, q="fan")["items"]] == [h["item_id"] for h in before["items"]]


def test_a_synonym_acts_on_the_next_search_and_is_highlighted(shop):
    assert search(shop, q="zorbo")["total"] == 0
    synonym = shop.post("/v1/admin/synonyms", json={"terms": ["zorbo"], "to": ["fan"]}, headers=A).json()
    found = search(shop, q="zorbo", group="false")
    assert {h["item_id"] for h in found["items"]} == {"fan-1", "fan-2", "fan-3", "fan-4", "fan-5"}
    assert all("<mark>" in h["highlight"] for h in found["items"])
    assert shop.delete(f"/v1/admin/synonyms/{synonym['id']}", headers=A).status_code == 204
    assert search(shop, q="zorbo")["total"] == 0


def _impressions(shop) -> int:
    engine = shop.app.state.engine
    engine.impressions.flush()
    return len(engine.store.impressions_frame())


def test_rules_false_is_the_page_without_the_rules_for_the_admin_key_only_and_never_logged(shop):
    plain = search(shop, q="fan", facets="brand")
    pin = shop.post("/v1/admin/rules", json={"action": "pin", "item_id": "lamp-1", "position": 0, "query": "fan",
                                             "name": "summer sale"}, headers=A).json()
    hide = shop.post("/v1/admin/rules", json={"action": "hide", "item_id": plain["items"][1]["item_id"]},
                     headers=A).json()
    bury = shop.post("/v1/admin/rules", json={"action": "bury", "item_id": plain["items"][0]["item_id"], "amount": 2},
                     headers=A).json()
    try:
        merchandised = search(shop, q="fan", facets="brand")
        assert merchandised["items"][0]["item_id"] == "lamp-1" and merchandised["total"] == plain["total"]  # +1 -1
        before = _impressions(shop)
        params = {"q": "fan", "limit": 50, "facets": "brand", "rules": "false"}
        unmerchandised = shop.get("/v1/search", params=params, headers=A)
        assert unmerchandised.status_code == 200, unmerchandised.text
        page = unmerchandised.json()
        assert [(h["item_id"], h["position"], h["reason"]) for h in page["items"]] == \
            [(h["item_id"], h["position"], h["reason"]) for h in plain["items"]]  # the engine's order, every reason its own
        assert (page["total"], page["facets"], page["list_id"]) == (plain["total"], plain["facets"], None)
        preview = shop.get("/v1/search", params={"q": "fan", "limit": 50, "preview": "true"}, headers=A).json()
        assert [h["item_id"] for h in preview["items"]] == [h["item_id"] for h in merchandised["items"]]
        assert preview["list_id"] is None and preview["items"][0]["reason"] == f"pinned by rule {pin['id']}: summer sale"
        browse = shop.get("/v1/search", params={"q": "", "limit": 50, "rules": "false"}, headers=A).json()
        assert plain["items"][1]["item_id"] in [h["item_id"] for h in browse["items"]]  # the hidden item is back
        assert _impressions(shop) == before  # nothing logged as shown to shoppers

        for flag in ({"rules": "false"}, {"preview": "true"}):
            error(shop.get("/v1/search", params={"q": "fan", **flag}, headers=R), 403)  # never on the read key
            error(shop.get("/v1/search", params={"q": "fan", **flag}), 401)
        assert search(shop, q="fan", rules="true")["list_id"] is not None  # the default: a shopper's page, logged
        assert _impressions(shop) == before + 1
    finally:
        for created in (pin, hide, bury):
            assert shop.delete(f"/v1/admin/rules/{created['id']}", headers=A).status_code == 204
