"""The recommendation lists shops put on their pages, through HTTP on every store backend:
bought together and the cart (`items=`), trending / new / best sellers (`list=`), and
`POST /v1/rank` of a supplied list (shoplm/engine/lists.py, shoplm/recommend/complements.py)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from shoplm.api import create_app
from shoplm.config import Settings
from shoplm.engine.engine import Engine
from shoplm.store import open_store
from tests.api.conftest import A, ADMIN, R, READ

DAY = 86_400.0
NOW = 1_780_000_000.0  # the newest event: "now" for the lists

ITEMS = [
    {"item_id": "bread", "title": "White sandwich bread loaf", "category": "Bakery > Bread", "price": 2.5},
    {"item_id": "butter", "title": "Salted butter", "category": "Dairy > Butter", "price": 3.0},
    {"item_id": "jam", "title": "Strawberry jam", "category": "Pantry > Spreads", "price": 4.0},
    {"item_id": "old-jam", "title": "Apricot jam", "category": "Pantry > Spreads", "price": 4.0, "available": False},
    {"item_id": "milk", "title": "Whole milk", "category": "Dairy > Milk", "price": 1.2},
    {"item_id": "cereal", "title": "Corn flakes cereal", "category": "Pantry > Cereal", "price": 3.5},
    {"item_id": "shampoo", "title": "Herbal shampoo", "category": "Care > Hair", "price": 5.0},
    {"item_id": "sourdough", "title": "Sourdough bread loaf", "category": "Bakery > Bread", "price": 4.5,
     "created_at": "2026-06-01T00:00:00Z"},
    {"item_id": "oat-milk", "title": "Oat milk", "category": "Dairy > Milk", "price": 2.0,
     "created_at": "2026-05-01T00:00:00Z"},
    {"item_id": "steady", "title": "Steady seller tea", "category": "Pantry > Tea", "price": 3.0},
    {"item_id": "spike", "title": "Viral hot sauce", "category": "Pantry > Sauces", "price": 6.0},
]

BASKETS = {  # session -> items bought together (each a purchase, 10 minutes apart)
    "s1": ["bread", "butter", "jam"],
    "s2": ["bread", "butter"],
    "s3": ["milk", "cereal"],
    "s4": ["milk", "cereal", "bread"],
    "s5": ["shampoo"],
    "s6": ["bread", "old-jam"],
}


def _events() -> list[dict]:
    events = []
    for b, (session, items) in enumerate(BASKETS.items()):
        for i, item in enumerate(items):
            events.append({"user_id": f"buyer-{b}", "session_id": session, "event_type": "purchase",
                           "item_id": item, "timestamp": NOW - 20 * DAY + b * DAY + i * 600})
    for day in range(14):  # steady: one view a day for two weeks
        events.append({"user_id": "viewer", "session_id": f"v{day}", "event_type": "view", "item_id": "steady",
                       "timestamp": NOW - (13 - day) * DAY - 3_600})
    for i in range(4):  # spike: four views in the last hours, nothing before
        events.append({"user_id": f"fan-{i}", "session_id": f"f{i}", "event_type": "view", "item_id": "spike",
                       "timestamp": NOW - i * 3_600})
    events.append({"user_id": "once", "session_id": "o1", "event_type": "view", "item_id": "shampoo",
                   "timestamp": NOW})  # one view: not enough to trend
    return events


@pytest.fixture
def shop(store_url, tmp_path):
    settings = Settings(read_key=READ, admin_key=ADMIN, search_index_dir=tmp_path / "index",
                        embedding_cache_dir=tmp_path.parent / "shared-cache")
    with TestClient(create_app(settings, Engine.open(settings, open_store(store_url)))) as client:
        yield _filled(client)


def _filled(client):
    assert client.post("/v1/items", json={"items": ITEMS}, headers=A).status_code == 200
    events = _events()
    for start in range(0, len(events), 50):
        assert client.post("/v1/events", json={"events": events[start:start + 50]}, headers=R).status_code == 200
    return client


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["item_id"] for hit in response.json()["items"]]


def test_bought_together_ranks_co_purchases_and_never_the_item_or_an_unservable_one(shop):
    response = shop.get("/v1/items/bread/bought-together", headers=R)
    ids = _ids(response)
    assert ids[0] == "butter"  # two baskets with bread, the most of any item
    assert set(ids) == {"butter", "jam", "milk", "cereal"}  # only co-purchases: no shampoo, no old-jam (unavailable)
    assert response.json()["items"][0]["reason"] == "often bought with White sandwich bread loaf"
    assert response.json()["list_id"]


def test_a_new_item_borrows_the_complements_of_its_text_neighbours(shop):
    response = shop.get("/v1/items/sourdough/bought-together", params={"k": 3}, headers=R)
    ids = _ids(response)
    assert ids and ids[0] == "butter" and "sourdough" not in ids
    assert response.json()["items"][0]["reason"].startswith("often bought with items like ")


def test_the_cart_gets_complements_first_and_never_a_cart_item(shop):
    ids = _ids(shop.get("/v1/recommend", params={"items": "bread,butter", "k": 5}, headers=R))
    assert ids[0] == "jam"  # bought with both
    assert not {"bread", "butter", "old-jam"} & set(ids)
    assert len(ids) == 5  # filled after the complements with next items


def test_a_hidden_item_is_never_bought_together(shop):
    rule = {"action": "hide", "item_id": "butter"}
    assert shop.post("/v1/admin/rules", json=rule, headers=A).status_code == 201
    assert "butter" not in _ids(shop.get("/v1/items/bread/bought-together", headers=R))
    assert "butter" not in _ids(shop.get("/v1/recommend", params={"items": "bread"}, headers=R))


@pytest.mark.parametrize("params, field", [
    ({"items": ""}, "items"), ({"items": " , "}, "items"), ({"items": "bread,nope"}, "items"),
    ({"items": ",".join(f"i{n}" for n in range(101))}, "items"), ({"list": "hot"}, "list"),
    ({"items": "bread", "list": "trending"}, "list"), ({"item_id": "bread", "items": "jam"}, "items"),
])
def test_bad_cart_or_list_names_the_field(shop, params, field):
    response = shop.get("/v1/recommend", params=params, headers=R)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_lists_have_their_known_answers(shop):
    assert _ids(shop.get("/v1/recommend", params={"list": "trending"}, headers=R))[0] == "spike"
    trending = _ids(shop.get("/v1/recommend", params={"list": "trending", "k": 20}, headers=R))
    assert "shampoo" not in trending  # one view today is not a trend
    best = _ids(shop.get("/v1/recommend", params={"list": "best_sellers", "k": 3}, headers=R))
    assert best[0] == "bread"  # four purchases, the most
    assert "old-jam" not in _ids(shop.get("/v1/recommend", params={"list": "best_sellers", "k": 20}, headers=R))
    new = _ids(shop.get("/v1/recommend", params={"list": "new", "k": 20}, headers=R))
    # created_at first, else the first event: sourdough is dated after every event, oat-milk before
    assert new[:2] == ["sourdough", "spike"] and new[-1] == "oat-milk" and "old-jam" not in new


def test_a_list_narrows_to_a_category(shop):
    dairy = _ids(shop.get("/v1/recommend", params={"list": "best_sellers", "category": "Dairy"}, headers=R))
    assert dairy == ["milk", "butter"]  # two purchases each, milk's more recent
    reason = shop.get("/v1/recommend", params={"list": "best_sellers", "category": "Dairy"}, headers=R).json()
    assert reason["items"][0]["reason"] == "best seller in Dairy"


def test_a_list_comes_in_the_visitors_order(shop):
    plain = _ids(shop.get("/v1/recommend", params={"list": "best_sellers", "k": 20}, headers=R))
    shop.post("/v1/events", json={"events": [{"session_id": "dairy-fan", "event_type": "view",
                                              "item_id": "oat-milk", "timestamp": NOW}]}, headers=R)
    mine = _ids(shop.get("/v1/recommend", params={"list": "best_sellers", "k": 20, "session_id": "dairy-fan"},
                         headers=R))
    assert set(mine) == set(plain) and mine != plain
    assert mine[0] == "milk"  # the best seller closest to what the visitor looked at


def test_rank_returns_exactly_the_supplied_ids_that_exist_in_the_visitors_order(shop):
    shop.post("/v1/events", json={"events": [{"session_id": "milky", "event_type": "view", "item_id": "milk",
                                              "timestamp": NOW}]}, headers=R)
    supplied = ["shampoo", "oat-milk", "ghost", "bread", "old-jam"]
    response = shop.post("/v1/rank", json={"session_id": "milky", "items": supplied}, headers=R)
    assert response.status_code == 200, response.text
    body = response.json()
    ranked = [hit["item_id"] for hit in body["items"]]
    assert sorted(ranked) == sorted(["shampoo", "oat-milk", "bread", "old-jam"]) and body["unknown"] == ["ghost"]
    assert ranked[0] == "oat-milk" and body["list_id"]
    assert [hit["position"] for hit in body["items"]] == list(range(4))


@pytest.mark.parametrize("body, loc", [
    ({"items": []}, "items"), ({"items": [f"i{n}" for n in range(1_001)]}, "items"),
    ({"items": ["bread", "jam", "bread"]}, "items"), ({"items": ["bread"], "user": "x"}, "user"),
])
def test_bad_rank_requests_name_the_field(shop, body, loc):
    response = shop.post("/v1/rank", json=body, headers=R)
    assert response.status_code == 422, response.text
    assert loc in response.text
