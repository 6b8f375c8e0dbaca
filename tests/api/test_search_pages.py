"""Result pages through GET /v1/search: totals, pages, facets, filters, sorting and variant
groups, checked against brute force over the items themselves."""

from __future__ import annotations

import random

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from shoplm.api import create_app
from shoplm.config import Settings
from shoplm.data.records import Event, Item
from shoplm.engine.engine import Engine
from shoplm.store import open_store
from tests.api.conftest import ADMIN, R, READ

BRANDS = ["Bosch", "Makita", "DeWalt", "Stanley", "Ryobi"]
KINDS = [("drill", "Tools > Power Tools > Drills"), ("saw", "Tools > Power Tools > Saws"),
         ("hammer", "Tools > Hand Tools > Hammers"), ("glue", "Adhesives > Wood Glue"),
         ("tape", "Adhesives > Tapes"), ("screwdriver", "Tools > Hand Tools > Screwdrivers")]
COLOURS = ["red", "blue", "green", "black"]


def _catalog() -> list[Item]:
    rng = random.Random(7)
    items = []
    for i in range(60):
        kind, category = KINDS[i % len(KINDS)]
        brand = BRANDS[rng.randrange(len(BRANDS))]
        attributes = {"colours": rng.sample(COLOURS, rng.randint(1, 2)), "created_at": 1_700_000_000.0 + rng.randrange(5) * 86_400}
        if i % 10 == 0:  # some items come in variants: sizes of one product
            attributes["group_id"] = f"g{i // 20}"
        price = None if i % 13 == 0 else float(rng.choice([5, 9.5, 19, 25, 49, 120, 120, 300, 1200]))
        items.append(Item(f"{kind}-{i}", f"{brand} {kind} model {i}", category=category, brand=brand, price=price,
                          available=i % 17 != 0, attributes=attributes))
    return items


CATALOG = _catalog()
BY_ID = {item.item_id: item for item in CATALOG}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pages")
    settings = Settings(read_key=READ, admin_key=ADMIN, search_index_dir=tmp / "index", embedding_cache_dir=tmp / "cache",
                        search_filters=["category", "brand", "price", "available", "group_id", "colours", "created_at"],
                        search_facets=["category", "brand", "price", "available", "colours"])
    store = open_store("memory://")
    store.upsert_items(CATALOG)
    store.add_events([Event(1_700_000_000 + i, "purchase", user_id=f"u{i}", item_id=CATALOG[i % 7].item_id)
                      for i in range(30)])
    with TestClient(create_app(settings, Engine.open(settings, store))) as client:
        yield client


def get(shop, **params):
    response = shop.get("/v1/search", params=params, headers=R)
    assert response.status_code == 200, response.text
    return response.json()


def everything(shop, **params) -> list[dict]:
    """Every hit of every page, walked with pages of 7."""
    hits, offset = [], 0
    while True:
        page = get(shop, **params, offset=offset, limit=7)
        hits += page["items"]
        offset += 7
        if offset >= page["total"]:
            return hits


def passes(item: Item, clause: str) -> bool:
    """The documented filter semantics, written out by hand."""
    negate = clause.startswith("-")
    field, _, value = clause.lstrip("-").partition(":")
    if field == "price":
        low, _, high = value.partition("..")
        ok = item.price is not None and (not low or item.price >= float(low)) and (not high or item.price < float(high))
    elif field == "category":
        ok = any(item.category == v or item.category.startswith(v + " > ") for v in value.split("|"))
    elif field == "colours":
        ok = bool(set(item.attributes["colours"]) & set(value.split("|")))
    else:
        ok = getattr(item, field) in value.split("|")
    return ok != negate


clauses = st.lists(st.one_of(
    st.lists(st.sampled_from(BRANDS), min_size=1, max_size=2, unique=True).map(lambda v: "brand:" + "|".join(v)),
    st.sampled_from(BRANDS).map(lambda v: "-brand:" + v),
    st.sampled_from(["price:10..100", "price:..25", "price:100..", "price:19..121", "-price:..20"]),
    st.sampled_from(["category:Tools", "category:Tools > Hand Tools", "category:Adhesives|Tools > Power Tools > Saws",
                     "-category:Adhesives"]),
    st.lists(st.sampled_from(COLOURS), min_size=1, max_size=2, unique=True).map(lambda v: "colours:" + "|".join(v)),
), max_size=3)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filters=clauses, query=st.sampled_from(["", "drill", "hand tools", "glue tape", "makita"]))
def test_facet_counts_and_totals_equal_brute_force_over_the_result_set(shop, filters, query):
    page = get(shop, q=query, filter=filters, facets="brand,colours,price,category", group=False, limit=5)
    hits = everything(shop, q=query, filter=filters, group=False)
    ids = [h["item_id"] for h in hits]
    assert len(ids) == len(set(ids)) == page["total"]  # every page cut from one order: no item twice, none lost
    assert [h["position"] for h in hits] == list(range(len(hits)))
    assert all(passes(BY_ID[i], c) for i in ids for c in filters)
    assert all(BY_ID[i].available for i in ids)
    # filtering narrows the query's set and nothing else: the filtered set is the unfiltered one, filtered by hand
    unfiltered = [h["item_id"] for h in everything(shop, q=query, group=False)]
    assert set(ids) == {i for i in unfiltered if all(passes(BY_ID[i], c) for c in filters)}
    # each facet counts the set without its own field's filters (disjunctive)
    for facet in ("brand", "colours", "price"):
        others = [c for c in filters if c.lstrip("-").partition(":")[0] != facet]
        pool = [BY_ID[i] for i in unfiltered if all(passes(BY_ID[i], c) for c in others)]
        if facet == "brand":
            expected = _count(item.brand for item in pool)
        elif facet == "colours":
            expected = _count(c for item in pool for c in item.attributes["colours"])
        else:
            edges = [10, 25, 50, 100, 250, 500, 1000]
            expected = _count(_bucket(item.price, edges) for item in pool if item.price is not None)
        if facet != "price":  # a value a clause selected is listed even when the top 10 leave it out
            for clause in filters:
                if clause.startswith(f"{facet}:"):
                    for value in clause.partition(":")[2].split("|"):
                        expected.setdefault(value, 0)
        assert page["facets"][facet] == expected, facet


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10])


def _bucket(price: float, edges: list[float]) -> str:
    low = max([e for e in edges if e <= price], default=None)
    high = min([e for e in edges if e > price], default=None)
    return f"{'' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'}"


def test_clicking_a_price_bucket_shows_exactly_its_count(shop):
    facets = get(shop, facets="price")["facets"]["price"]
    for bucket, count in facets.items():
        assert get(shop, filter=[f"price:{bucket}"], group=False)["total"] == count


def test_category_facet_is_a_drill_down_tree(shop):
    top = get(shop, facets="category")["facets"]["category"]
    assert set(top) == {"Tools", "Adhesives"}
    tree = get(shop, facets="category", filter=["category:Tools > Hand Tools"])["facets"]["category"]
    # level 0 unfiltered (disjunctive), the children of Tools, and those of Tools > Hand Tools
    assert {"Tools", "Adhesives", "Tools > Hand Tools", "Tools > Power Tools",
            "Tools > Hand Tools > Hammers", "Tools > Hand Tools > Screwdrivers"} == set(tree)
    assert "Tools > Power Tools > Drills" not in tree
    assert get(shop, facets="category.lvl1")["facets"]["category.lvl1"]["Adhesives > Tapes"] == sum(
        1 for i in CATALOG if i.category == "Adhesives > Tapes" and i.available)


@pytest.mark.parametrize("sort", ["price_asc", "price_desc", "newest", "popular"])
@pytest.mark.parametrize("query", ["", "drill saw"])
def test_every_sort_orders_the_whole_set_with_relevance_breaking_ties(shop, sort, query):
    relevance = [h["item_id"] for h in everything(shop, q=query, group=False)]
    rank = {item_id: i for i, item_id in enumerate(relevance)}
    ordered = [h["item_id"] for h in everything(shop, q=query, sort=sort, group=False)]
    assert sorted(ordered) == sorted(relevance)
    popular = {}
    for i in range(30):
        popular[CATALOG[i % 7].item_id] = popular.get(CATALOG[i % 7].item_id, 0) + 1

    def key(item_id):
        item = BY_ID[item_id]
        value = {"price_asc": item.price, "price_desc": None if item.price is None else -item.price,
                 "newest": -item.created_at, "popular": -popular.get(item_id, 0)}[sort]
        return (value is None, value or 0.0, rank[item_id])

    if sort == "popular":  # time-decayed counts: same order as the raw counts here (all events at one moment)
        assert [popular.get(i, 0) for i in ordered] == sorted((popular.get(i, 0) for i in ordered), reverse=True)
    else:
        assert ordered == sorted(ordered, key=key)


def test_groups_collapse_to_their_best_ranked_variant(shop):
    ungrouped = [h["item_id"] for h in everything(shop, group=False)]
    grouped = everything(shop)
    members: dict[str, list[str]] = {}
    for item_id in ungrouped:
        group = BY_ID[item_id].group_id
        if group:
            members.setdefault(group, []).append(item_id)
    shown = {BY_ID[h["item_id"]].group_id: h for h in grouped if BY_ID[h["item_id"]].group_id}
    assert set(shown) == set(members)
    for group, hit in shown.items():
        assert hit["item_id"] == members[group][0]  # the first in rank order
        assert hit["variants"] == (len(members[group]) if len(members[group]) > 1 else None)
    assert get(shop)["total"] == len(grouped) == len(ungrouped) - sum(len(m) - 1 for m in members.values())


def test_plain_parameters_filter_like_filter_clauses(shop):
    a = get(shop, brand=["Bosch", "Makita"], group=False, limit=100)
    b = get(shop, filter=["brand:Bosch|Makita"], group=False, limit=100)
    assert a["total"] == b["total"] > 0 and a["items"] == b["items"]


def test_hits_carry_display_fields_and_highlights(shop):
    hit = get(shop, q="drills", attributes="colours,nothing")["items"][0]
    assert "<mark>drill</mark>" in hit["highlight"]
    assert set(hit["attributes"]) == {"colours"}


@pytest.mark.parametrize("params, field, names", [
    ({"facets": "weight"}, "facets", "category, brand, price, available, colours"),
    ({"filter": "weight:3"}, "filter", "category, brand, price"),
    ({"filter": "price:cheap"}, "filter", "numbers or a range"),
    ({"filter": "price:50..10"}, "filter", "empty"),
    ({"filter": "brand"}, "filter", "FIELD:VALUE"),
    ({"sort": "cheapest"}, "sort", "price_asc"),
    ({"colour": "red"}, "colour", "colours"),
    ({"offset": 9_995, "limit": 10}, "offset", "10000"),
    ({"limit": 101}, "limit", ""),
])
def test_bad_fields_answer_422_naming_the_field_and_the_allowed_ones(shop, params, field, names):
    response = shop.get("/v1/search", params=params, headers=R)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["details"][0]["loc"] == ["query", field]
    assert names in error["message"]


def test_suggest_completes_from_the_catalog_and_clicked_queries(shop):
    body = shop.get("/v1/suggest", params={"q": "scre", "k": 3}, headers=R).json()
    assert body["suggestions"][0]["text"].startswith("screwdriver")
    assert body["items"] and all("screwdriver" in i["title"] for i in body["items"])
    assert shop.get("/v1/suggest", params={"q": ""}, headers=R).json() == {"suggestions": [], "items": [],
                                                                           "list_id": None}
    assert shop.get("/v1/suggest", params={"q": "x", "k": 0}, headers=R).status_code == 422


def test_display_fields_round_trip_and_reach_the_hits(tmp_path):
    settings = Settings(read_key=READ, admin_key=ADMIN, search_index_dir=tmp_path / "index",
                        embedding_cache_dir=tmp_path / "cache")
    with TestClient(create_app(settings, Engine.open(settings, open_store("memory://")))) as client:
        item = {"item_id": "d1", "title": "Cordless drill", "image_url": "https://cdn.example/d1.jpg", "url": "/p/d1",
                "created_at": "2024-05-01T00:00:00Z", "group_id": "drills", "attributes": {"colour": "red"}}
        admin = {"X-API-Key": ADMIN}
        assert client.post("/v1/items", json={"items": [item]}, headers=admin).status_code == 200
        stored = client.get("/v1/items/d1", headers=R).json()
        assert (stored["image_url"], stored["url"], stored["group_id"], stored["created_at"]) == (
            "https://cdn.example/d1.jpg", "/p/d1", "drills", 1_714_521_600.0)
        assert stored["attributes"] == {"colour": "red"}
        hit = client.get("/v1/search", params={"q": "drill", "attributes": "colour"}, headers=R).json()["items"][0]
        assert (hit["image_url"], hit["url"], hit["attributes"]) == ("https://cdn.example/d1.jpg", "/p/d1", {"colour": "red"})
        bad = client.post("/v1/items", json={"items": [{**item, "url": "javascript:alert(1)"}]}, headers=admin)
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["loc"] == ["body", "items", 0, "url"]


@pytest.mark.parametrize("facet", ["brand", "price", "category.lvl1", "colours"])
def test_with_variant_groups_a_value_counts_what_clicking_it_shows(shop, facet):
    counts = get(shop, facets=facet)["facets"][facet]  # grouped, as the pages are
    field = "category" if facet.startswith("category") else facet
    for value, count in counts.items():
        assert get(shop, filter=[f"{field}:{value}"])["total"] == count, value


def test_a_selected_value_stays_in_its_facet_and_correct_false_searches_as_typed(shop):
    rare = get(shop, facets="colours", filter=["colours:black"], q="zzz drill")["facets"]["colours"]
    assert "black" in rare
    typo = get(shop, q="dril")
    assert typo["corrected_query"] == "drill" and typo["total"] > 0
    as_typed = get(shop, q="dril", correct=False)
    assert as_typed["corrected_query"] is None


def test_an_item_indexed_while_a_page_is_computed_waits_for_the_next_page(tmp_path, monkeypatch):
    """Another worker's item can reach the index between the page's columns and its ranking:
    that page leaves it out (no error), the next one shows it."""
    from shoplm.engine.listing import PageRequest

    settings = Settings(search_index_dir=tmp_path / "index", embedding_cache_dir=tmp_path / "cache")
    store = open_store("memory://")
    store.upsert_items(CATALOG[:10])
    engine = Engine.open(settings, store)
    before = engine.facet_columns()
    engine.upsert_items([Item("new-1", "Zanzibar copper kettle")])
    monkeypatch.setattr(engine, "facet_columns", lambda: before)  # the columns read before the item arrived
    assert "new-1" not in [h.item_id for h in engine.search_page(PageRequest("zanzibar copper kettle")).hits]
    monkeypatch.undo()
    assert [h.item_id for h in engine.search_page(PageRequest("zanzibar copper kettle")).hits] == ["new-1"]


def test_pages_inside_the_head_skip_the_cosines_and_agree_with_one_long_page(tmp_path, monkeypatch):
    """The set below the re-ranked head is ordered by cosine only for a page that reaches it;
    walking the pages gives the same order as one page of the whole set either way."""
    from shoplm.search.pipeline import Matches

    settings = Settings(search_index_dir=tmp_path / "index", embedding_cache_dir=tmp_path / "cache", hybrid_depth=5)
    store = open_store("memory://")
    store.upsert_items(CATALOG)
    with TestClient(create_app(settings, Engine.open(settings, store)), headers=R) as client:
        calls = []
        cosines = Matches.cosines
        monkeypatch.setattr(Matches, "cosines", lambda self, rows: calls.append(len(rows)) or cosines(self, rows))
        whole = get(client, q="drill", limit=100)
        assert whole["total"] > 5 and calls and calls[-1] > 0  # the set runs past the head of 5
        calls.clear()
        first = get(client, q="drill", limit=3)
        assert not calls  # page 1 lies inside the head
        assert [h["item_id"] for h in everything(client, q="drill")] == [h["item_id"] for h in whole["items"]]
        assert [h["item_id"] for h in first["items"]] == [h["item_id"] for h in whole["items"][:3]]
        assert get(client, q="drill", limit=3, sort="price_asc")["total"] == whole["total"]
