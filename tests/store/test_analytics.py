"""Analytics on every backend (memory, SQLite, PostgreSQL): known answers on a small log,
and the SQL aggregates equal the in-memory ones."""

from __future__ import annotations

import pytest

from shoplm.data.records import Event
from shoplm.store.analytics import analytics
from shoplm.store.base import Impression

T = 1_700_000_000.0


@pytest.fixture
def shop_log(store):
    store.add_impressions([
        Impression("l1", T, "search", ("a", "b", "c"), query="drill", session_id="s1"),
        Impression("l2", T + 5, "search", (), query="drill", session_id="s2"),
        Impression("l3", T + 10, "recommend", ("b", "c"), user_id="u1", arm="exp:b"),
        Impression("l4", T + 20, "search", ("c",), query="saw", session_id="s3"),
    ])
    store.add_events([
        Event(T + 30, "click", session_id="s1", item_id="a", position=0, list_id="l1"),
        Event(T + 90, "purchase", session_id="s1", item_id="a", value=10.0),  # credited through its click
        Event(T + 40, "add_to_cart", user_id="u1", item_id="c", list_id="l3"),
        Event(T + 50, "purchase", user_id="u1", item_id="c", value=5.0, list_id="l3"),
        Event(T + 60, "click", session_id="s1", item_id="b"),  # no list_id: l1 showed b to s1, at position 1
        Event(T + 70, "purchase", session_id="s1", item_id="b", value=7.0),  # no list_id: l1 showed b to s1
        Event(T + 65, "click", session_id="s1", item_id="z"),  # no list showed z: credited to no list
        Event(T + 80, "purchase", session_id="s9", item_id="a", value=99.0),  # another visitor
        Event(T + 3_000, "click", session_id="s1", item_id="c"),  # l1 showed c, but past the window
        Event(T + 25, "click", session_id="s3", item_id="c", position=0, list_id="l4"),
        Event(T + 25 + 4_000, "purchase", session_id="s3", item_id="c", value=99.0),  # past the window
    ])
    return store


def test_analytics_credit_clicks_carts_and_purchases_to_their_lists(shop_log):
    report = analytics(shop_log, window_s=1800)
    assert report["queries"] == [
        {"query": "drill", "searches": 2, "clicks": 2, "ctr": 1.0, "zero_results": 1, "conversions": 2, "revenue": 17.0},
        {"query": "saw", "searches": 1, "clicks": 1, "ctr": 1.0, "zero_results": 0, "conversions": 0, "revenue": 0.0},
    ]
    assert [q["query"] for q in report["zero_result_queries"]] == ["drill"]
    search, recommend = report["surfaces"]["search"], report["surfaces"]["recommend"]
    assert (search["impressions"], search["clicks"], search["conversions"], search["revenue"]) == (3, 3, 2, 17.0)
    assert search["ctr"] == pytest.approx(3 / 3) and search["conversion"] == pytest.approx(2 / 3)
    assert (recommend["impressions"], recommend["clicks"], recommend["carts"], recommend["conversions"],
            recommend["revenue"]) == (1, 0, 1, 1, 5.0)
    assert report["arms"]["exp:b"]["visitors"] == 1 and report["arms"]["exp:b"]["revenue_per_visitor"] == 5.0
    assert report["ctr_by_position"]["search"] == [
        {"position": 0, "impressions": 2, "clicks": 2, "ctr": 1.0},
        {"position": 1, "impressions": 1, "clicks": 1, "ctr": 1.0},
        {"position": 2, "impressions": 1, "clicks": 0, "ctr": 0.0},
    ]


def test_a_time_range_cuts_impressions_and_events(shop_log):
    report = analytics(shop_log, since=T + 15, until=T + 1_000)
    assert [q["query"] for q in report["queries"]] == ["saw"]
    assert report["surfaces"]["search"]["clicks"] == 1 and "recommend" not in report["surfaces"]


def test_low_ctr_queries_need_enough_searches(store):
    store.add_impressions([Impression(f"l{i}", T + i, "search", ("a",), query="rare" if i < 2 else "common")
                           for i in range(8)])
    report = analytics(store, min_searches=5)
    assert [q["query"] for q in report["low_ctr_queries"]] == ["common"]


def test_a_click_without_a_list_id_counts_for_the_last_list_that_showed_the_item(store):
    store.add_impressions([
        Impression("m1", T, "search", ("a", "b"), query="fan", session_id="s1"),
        Impression("m2", T + 10, "recommend", ("x", "b"), session_id="s1"),  # b again, later: this one counts
        Impression("m3", T + 20, "search", ("b",), query="fan", session_id="s2"),  # another session
        Impression("m4", T + 30, "similar", ("c", "d", "b"), user_id="u1"),  # a user without a session
    ])
    store.add_events([
        Event(T + 15, "click", session_id="s1", item_id="b"),  # m2, position 1
        Event(T + 16, "click", session_id="s1", item_id="a"),  # m1, position 0
        Event(T + 40, "click", user_id="u1", item_id="b"),  # m4, position 2
        Event(T + 5, "click", session_id="s1", item_id="x"),  # before m2 showed x: no list
        Event(T + 17, "add_to_cart", session_id="s1", item_id="b"),  # m2 too, as the click on it
    ])
    report = analytics(store, window_s=1800)
    clicks = {surface: (m["clicks"], m["carts"]) for surface, m in report["surfaces"].items()}
    assert clicks == {"search": (1, 0), "recommend": (1, 1), "similar": (1, 0)}
    assert [r["clicks"] for r in report["ctr_by_position"]["recommend"]] == [0, 1]
    assert [r["clicks"] for r in report["ctr_by_position"]["similar"]] == [0, 0, 1]
    assert report["ctr_by_position"]["search"][0]["clicks"] == 1
