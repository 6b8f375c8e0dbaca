"""Merchandising rules and synonyms, on the data model, on lists (`Plan`) and on the engine's
pages and recommendations: what a rule does, where and when it acts, and what it never does
(show an item that is hidden, unavailable or filtered out)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from shoplm.config import Settings
from shoplm.data.records import Item
from shoplm.data.rules import Rule, Synonym, parse_rule, parse_synonym
from shoplm.engine.engine import Engine
from shoplm.engine.listing import PageRequest
from shoplm.engine.rules import Plan
from shoplm.errors import InvalidRecords
from shoplm.search.facets import parse_filters
from shoplm.search.index import ItemFilter
from shoplm.store import open_store


def _item(item_id, title, category, brand, price, **extra):
    return Item(item_id, title, category=category, brand=brand, price=price, available=extra.pop("available", True),
                attributes=extra)


CATALOG = [
    _item("fan-1", "Quiet desk fan", "Home > Cooling > Fans", "Breeze", 30.0),
    _item("fan-2", "Tower fan with remote", "Home > Cooling > Fans", "Breeze", 60.0),
    _item("fan-3", "Pedestal fan", "Home > Cooling > Fans", "Aero", 45.0),
    _item("fan-4", "Ceiling fan with light, white", "Home > Cooling > Fans", "Aero", 120.0, group_id="ceiling"),
    _item("fan-5", "Ceiling fan with light, black", "Home > Cooling > Fans", "Aero", 125.0, group_id="ceiling"),
    _item("fan-6", "Window fan, two speeds", "Home > Cooling > Fans", "Breeze", 40.0, available=False),
    _item("heater-1", "Oil radiator heater", "Home > Heating", "Warmth", 80.0),
    _item("sofa-1", "Grey three seat sofa", "Home > Living > Sofas", "Comfy", 400.0),
    _item("sofa-2", "Leather sofa", "Home > Living > Sofas", "Lux", 900.0),
    _item("sofa-3", "Corner sofa bed", "Home > Living > Sofas", "Comfy", 650.0),
    _item("chair-1", "Reading armchair", "Home > Living > Chairs", "Comfy", 250.0),
    _item("tv-1", "Television 55 inch 4K", "Electronics > TV", "Vision", 700.0),
    _item("tv-2", "Television 43 inch", "Electronics > TV", "Vision", 400.0),
    _item("bracket-1", "TV wall bracket", "Electronics > TV Accessories", "Mount", 35.0),
    _item("lamp-1", "Floor lamp, brass", "Home > Lighting", "Glow", 90.0),
    _item("lamp-2", "Desk lamp LED", "Home > Lighting", "Glow", 25.0),
    _item("drill-1", "Cordless drill 18V", "Tools > Drills", "Makita", 129.0),
    _item("saw-1", "Hand saw", "Tools > Saws", "Stanley", 19.9),
    _item("glue-1", "Wood glue", "Adhesives", "Titebond", 6.5),
    _item("tape-1", "Duct tape, silver", "Adhesives", "Gorilla", 8.0),
]
BY_ID = {item.item_id: item for item in CATALOG}
NOW = time.time()


def rule(**fields) -> Rule:
    parsed = parse_rule(fields)
    assert isinstance(parsed, Rule), parsed
    return parsed


# --- the data model ----------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "field"), [
    ({"action": "pin", "item_id": "a"}, "position"),
    ({"action": "boost", "item_id": "a", "amount": 0}, "amount"),
    ({"action": "hide", "item_id": "a", "position": 2}, "position"),
    ({"action": "feature", "item_id": "a"}, "action"),
    ({"action": "hide"}, "item_id"),
    ({"action": "hide", "item_id": "a", "start": "2024-06-02", "end": "2024-06-01"}, "end"),
    ({"action": "hide", "item_id": "a", "end": "yesterday"}, "end"),
    ({"action": "hide", "item_id": "a", "surfaces": ["checkout"]}, "surfaces"),
    ({"action": "hide", "item_id": "a", "query": "fan", "surfaces": ["browse"]}, "surfaces"),
    ({"action": "hide", "item_id": "a", "colour": "red"}, "colour"),
])
def test_bad_rules_name_the_field(fields, field):
    problems = parse_rule(fields)
    assert isinstance(problems, list) and field in [p.field for p in problems], problems


def test_rules_and_synonyms_are_normalised_as_they_are_compared():
    parsed = rule(action="pin", item_id="fan-1", position=0, query="  Quiet   FAN ", query_contains=["Desk Fan", "fan"],
                  category="Home>Cooling >Fans", start="2024-06-01T00:00:00Z", surfaces=["search", "search"])
    assert (parsed.query, parsed.query_contains, parsed.category) == ("quiet fan", ("desk", "fan"), "Home > Cooling > Fans")
    assert parsed.start == 1_717_200_000.0 and parsed.surfaces == ("search",)
    assert parse_synonym({"terms": ["TV"], "to": ["Television", "tv"]}) == Synonym(("tv",), ("television",))
    assert [p.field for p in parse_synonym({"terms": ["sofa"]})] == ["terms"]


# --- on a list of rows -------------------------------------------------------------------
def test_hide_then_boost_and_bury_by_id_then_pins_by_position_ties_by_id():
    rules = [rule(action="boost", item_id="r7", amount=2), rule(action="bury", item_id="r0", amount=3),
             rule(action="pin", item_id="r8", position=0), rule(action="pin", item_id="r9", position=0),
             rule(action="hide", item_id="r2"), rule(action="pin", item_id="r2", position=0, name="hidden wins")]
    rules = [replace(r, id=i) for i, r in enumerate(rules, start=1)]
    plan = Plan(rules, [7, 0, 8, 9, 2, 2])
    visible = plan.visible(10)
    assert visible.tolist() == [i != 2 for i in range(10)]
    order, reasons = plan.arrange(np.flatnonzero(visible))
    # boost 7 by 2 -> [0,1,3,4,7,5,6,8,9]; bury 0 by 3 -> [1,3,4,0,7,5,6,8,9]; pins 8 at 0 (rule 3), 9 right after (rule 4)
    assert order.tolist() == [8, 9, 1, 3, 4, 0, 7, 5, 6]
    assert reasons == {7: "boosted by rule 1", 8: "pinned by rule 3", 9: "pinned by rule 4"}


def test_moves_stop_at_the_ends_and_a_row_outside_the_list_is_never_added():
    rules = [replace(r, id=i) for i, r in enumerate([
        rule(action="boost", item_id="a", amount=50), rule(action="bury", item_id="b", amount=50),
        rule(action="pin", item_id="c", position=99, name="last"), rule(action="pin", item_id="d", position=0),
        rule(action="pin", item_id="c", position=7)], start=1)]
    plan = Plan(rules, [3, 1, 0, 42, 0])
    order, reasons = plan.arrange(np.arange(5))
    assert order.tolist() == [3, 2, 4, 1, 0]  # 3 to the top, 1 to the end, 0 pinned last by rule 5 (position 7 < 99)
    assert 42 not in order and reasons[0] == "pinned by rule 5"
    shown, notes = plan.top([4, 3, 2], mask=np.array([True] * 43), k=2)  # a list takes a pin its mask allows
    assert shown == [42, 3] and notes == {42: "pinned by rule 4", 3: "boosted by rule 1"}
    shown, _ = plan.top([4, 3, 2], mask=np.zeros(43, dtype=bool), k=10)
    assert 0 not in shown and 42 not in shown


def test_under_an_explicit_sort_only_hide_acts_and_pins_still_join_the_set():
    plan = Plan([rule(action="pin", item_id="x", position=0), rule(action="hide", item_id="y")], [5, 1], moves=False)
    order, reasons = plan.arrange(np.array([0, 2, 5]))
    assert order.tolist() == [0, 2, 5] and reasons == {}
    assert plan.pinned(6).tolist() == [False] * 5 + [True] and not plan.visible(6)[1]


def test_a_rule_naming_a_variant_makes_it_its_groups_first():
    codes = np.array([-1, 7, -1, 7, 7])
    plan = Plan([rule(action="boost", item_id="v", amount=1)], [4])
    assert plan.lead(np.array([1, 0, 3, 2, 4]), codes).tolist() == [4, 1, 0, 3, 2]


# --- on the engine -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rules")
    settings = Settings(search_index_dir=tmp / "index", embedding_cache_dir=tmp / "cache",
                        search_filters=["category", "brand", "price", "available", "group_id"])
    store = open_store("memory://")
    store.upsert_items(CATALOG)
    opened = Engine.open(settings, store)
    yield opened
    opened.close()


@pytest.fixture(autouse=True)
def no_rules_left(request):
    yield
    if "engine" in request.fixturenames:
        engine = request.getfixturevalue("engine")
        for r in engine.merchandising.rules:
            engine.delete_rule(r.id)
        for s in engine.merchandising.synonyms:
            engine.delete_synonym(s.id)


def page(engine, query="", filters=(), **fields):
    request = PageRequest(query=query, clauses=tuple(parse_filters(filters, engine.schema)),
                          **{"limit": 50, "group": False, **fields})
    return engine.search_page(request)


def ids(result) -> list[str]:
    return [h.item_id for h in result.hits]


def test_a_pin_shows_the_item_there_named_in_its_reason_even_outside_the_query_set(engine):
    before, other = page(engine, "fan", facets=("brand",)), ids(page(engine, "fan heater"))
    assert "lamp-1" not in ids(before)
    pinned = engine.put_rule(rule(action="pin", item_id="lamp-1", position=1, query="Fan", name="summer sale"))
    after = page(engine, " FAN ", facets=("brand",))
    assert ids(after)[1] == "lamp-1" and after.hits[1].reason == f"pinned by rule {pinned.id}: summer sale"
    assert [i for i in ids(after) if i != "lamp-1"] == ids(before)
    assert after.total == before.total + 1 and after.facets["brand"]["Glow"] == 1  # counted as it is shown
    assert ids(page(engine, "fan heater")) == other  # another query: untouched


def test_a_rule_never_shows_what_filters_availability_or_hide_keep_out(engine):
    engine.put_rule(rule(action="pin", item_id="fan-6", position=0, query="fan"))  # unavailable
    engine.put_rule(rule(action="pin", item_id="lamp-1", position=0, query="fan"))  # brand Glow
    engine.put_rule(rule(action="pin", item_id="fan-1", position=0))
    engine.put_rule(rule(action="hide", item_id="fan-1"))
    assert "fan-6" not in ids(page(engine, "fan")) and "fan-1" not in ids(page(engine, "fan"))
    filtered = page(engine, "fan", ["brand:Breeze"], facets=("brand",))
    assert ids(filtered) == ["fan-2"] and filtered.total == 1  # fan-1 hidden, fan-6 unavailable, lamp-1 filtered
    assert filtered.facets["brand"] == {"Aero": 3, "Breeze": 1, "Glow": 1}  # disjunctive: Glow counts for its own click
    assert ids(page(engine, "fan", ["brand:Glow"])) == ["lamp-1"]
    assert "fan-1" not in ids(page(engine, "")) and page(engine, "").total == len(CATALOG) - 2
    assert "fan-1" not in [r.item_id for r in engine.recommend(k=20)] + [r.item_id for r in engine.similar("fan-2", k=20)]


def test_hide_takes_the_item_out_of_the_total_and_the_facets(engine):
    before = page(engine, "fan", facets=("brand",))
    engine.put_rule(rule(action="hide", item_id="fan-3", query_contains="fan"))
    after = page(engine, "fan", facets=("brand",))
    assert ids(after) == [i for i in ids(before) if i != "fan-3"] and after.total == before.total - 1
    assert after.facets["brand"]["Aero"] == before.facets["brand"]["Aero"] - 1


def test_boost_and_bury_move_by_positions(engine):
    order = ids(page(engine, "fan"))
    up = engine.put_rule(rule(action="boost", item_id=order[-1], amount=1, name="margin"))
    engine.put_rule(rule(action="bury", item_id=order[0], amount=2))
    moved = ids(page(engine, "fan"))
    expected = order[1:-1]
    expected.insert(len(expected) - 1, order[-1])
    expected.insert(2, order[0])
    assert moved == expected
    hit = next(h for h in page(engine, "fan").hits if h.item_id == order[-1])
    assert hit.reason == f"boosted by rule {up.id}: margin"


def test_scope_by_query_words_category_surface_and_time_window(engine):
    engine.put_rule(rule(action="pin", item_id="heater-1", position=0, query_contains=["fan"]))
    assert ids(page(engine, "tower fan"))[0] == "heater-1" and ids(page(engine, "fan"))[0] == "heater-1"
    assert "heater-1" not in ids(page(engine, "fans")) and ids(page(engine, ""))[0] != "heater-1"  # words, not stems
    engine.put_rule(rule(action="pin", item_id="fan-3", position=0, category="Home > Cooling > Fans"))
    assert ids(page(engine, "", ["category:Home>Cooling>Fans"]))[0] == "fan-3"
    assert ids(page(engine, "", filter=ItemFilter(category="Home > Cooling > Fans")))[0] == "fan-3"
    assert ids(page(engine, "", ["category:Home"]))[0] != "fan-3"
    engine.put_rule(rule(action="pin", item_id="glue-1", position=0, surfaces=["browse"]))
    assert ids(page(engine, ""))[0] == "glue-1" and "glue-1" not in ids(page(engine, "lamp"))
    engine.put_rule(rule(action="pin", item_id="saw-1", position=0, query="lamp", end=NOW - 60))
    engine.put_rule(rule(action="pin", item_id="drill-1", position=0, query="lamp", start=NOW + 3600))
    assert not {"saw-1", "drill-1"} & set(ids(page(engine, "lamp")))
    engine.put_rule(rule(action="pin", item_id="tape-1", position=0, query="lamp", start=NOW - 60, end=NOW + 3600))
    assert ids(page(engine, "lamp"))[0] == "tape-1"


def test_pages_cut_from_the_merchandised_order_cover_the_set_once(engine):
    engine.put_rule(rule(action="pin", item_id="glue-1", position=7))
    engine.put_rule(rule(action="hide", item_id="tv-1"))
    engine.put_rule(rule(action="boost", item_id="saw-1", amount=2))
    whole = page(engine, "")
    walked = [h.item_id for offset in range(0, whole.total, 4) for h in page(engine, "", offset=offset, limit=4).hits]
    assert walked == ids(whole) and len(set(walked)) == whole.total == len(CATALOG) - 2  # tv-1 hidden, fan-6 unavailable
    assert walked[7] == "glue-1" and "tv-1" not in walked


def test_an_explicit_sort_keeps_its_order_and_still_hides(engine):
    engine.put_rule(rule(action="pin", item_id="lamp-1", position=0, query="fan"))
    engine.put_rule(rule(action="hide", item_id="fan-1", query="fan"))
    sorted_page = page(engine, "fan", sort="price_asc")
    assert "fan-1" not in ids(sorted_page) and "lamp-1" in ids(sorted_page)  # the pin still joins the set
    prices = [BY_ID[i].price for i in ids(sorted_page)]
    assert prices == sorted(prices) and sorted_page.total == page(engine, "fan").total


def test_a_rule_naming_a_variant_shows_that_variant_for_its_group(engine):
    grouped = ids(page(engine, "ceiling fan", group=True))
    shown = next(i for i in grouped if i in ("fan-4", "fan-5"))
    other = "fan-5" if shown == "fan-4" else "fan-4"
    engine.put_rule(rule(action="pin", item_id=other, position=0, query="ceiling fan"))
    result = page(engine, "ceiling fan", group=True)
    assert ids(result)[0] == other and shown not in ids(result) and result.variants[other] == 2


def test_recommendations_and_similar_items_follow_the_rules(engine):
    pinned = engine.put_rule(rule(action="pin", item_id="glue-1", position=0, surfaces=["recommend"], name="new"))
    engine.put_rule(rule(action="pin", item_id="fan-6", position=1, surfaces=["recommend"]))  # unavailable
    engine.put_rule(rule(action="hide", item_id="fan-2", surfaces=["recommend", "similar"]))
    recs = engine.recommend(k=5)
    assert recs[0].item_id == "glue-1" and recs[0].reason == f"pinned by rule {pinned.id}: new" and len(recs) == 5
    assert not {"fan-6", "fan-2"} & {r.item_id for r in engine.recommend(k=20)}
    drills = engine.recommend(k=5, filter=ItemFilter(category="Tools"))
    assert {r.item_id for r in drills} == {"drill-1", "saw-1"}  # glue-1 is no tool: its pin does not show it here
    engine.put_rule(rule(action="pin", item_id="saw-1", position=0, category="Tools", surfaces=["recommend"]))
    assert engine.recommend(k=5, filter=ItemFilter(category="Tools"))[0].item_id == "saw-1"
    assert engine.recommend(k=5)[1].item_id != "saw-1"
    engine.put_rule(rule(action="pin", item_id="lamp-2", position=0, surfaces=["similar"]))
    similar = engine.similar("fan-1", k=4)
    assert similar[0].item_id == "lamp-2" and similar[0].reason.startswith("pinned by rule")
    assert all(r.reason == "similar to Quiet desk fan" for r in similar[1:]) and "fan-2" not in [r.item_id for r in similar]


def test_an_unknown_item_is_refused_naming_item_id(engine):
    with pytest.raises(InvalidRecords) as refused:
        engine.put_rule(rule(action="hide", item_id="no-such-item"))
    assert [p.field for p in refused.value.problems[0]] == ["item_id"] and engine.merchandising.rules == ()


def test_synonyms_change_lexical_matches_without_rebuilding_embeddings(engine, monkeypatch):
    lexical = engine.search_pipeline.lexical
    version, vectors = lexical.version, engine.search_pipeline.vectors.vectors.copy()

    def no_item_encoding(*args, **kwargs):
        raise AssertionError("a synonym must not re-encode the catalog")

    monkeypatch.setattr(engine.search_pipeline.encoder, "encode", no_item_encoding)
    assert page(engine, "zorbo").total == 0 and not lexical.scores("settee").any()
    one_way = engine.put_synonym(Synonym(("zorbo",), ("fan",)))
    engine.put_synonym(Synonym(("settee", "sofa")))
    assert set(ids(page(engine, "zorbo"))) == {"fan-1", "fan-2", "fan-3", "fan-4", "fan-5"}
    assert page(engine, "settee").corrected_query is None  # a synonym is a known word, not a misspelling
    sofas = {i for i, s in zip(lexical.ids, lexical.scores("settee")) if s > 0}
    assert sofas == {"sofa-1", "sofa-2", "sofa-3"}
    assert page(engine, "fan").total == 5
    assert "zorbo" not in lexical.query_terms("fan")  # one-way: fan does not find zorbo
    assert lexical.version == version and np.array_equal(engine.search_pipeline.vectors.vectors, vectors)
    engine.delete_synonym(one_way.id)
    assert page(engine, "zorbo").total == 0  # the next request after the change


def test_changes_reach_peers_at_once_and_other_processes_within_the_refresh(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'shop.db'}")
    store.upsert_items(CATALOG[:3])
    a = Engine(Settings(), store)
    b = Engine(Settings(), store)
    a.peers.append(b.apply)
    elsewhere = Engine(Settings(rules_refresh_s=0.05), store)
    written = a.put_rule(rule(action="hide", item_id="fan-1"))
    assert b.merchandising.rules == (written,) and elsewhere.merchandising.rules == ()
    store.put_synonym(Synonym(("sofa", "couch")))  # as `shoplm rules add` or another host would: straight to the store
    time.sleep(0.1)
    elsewhere.merchandising.check()  # what every page and recommendation does first
    assert elsewhere.merchandising.rules == (written,) and len(elsewhere.merchandising.synonyms) == 1
    a.delete_rule(written.id)
    assert b.merchandising.rules == ()
    store.close()
