"""Query split (by query, seeded, pure) and positives from judgments and behaviour logs."""

from __future__ import annotations

from shoplm.data.records import Event, Judgment
from shoplm.search.data import Pair, pairs_from_events, pairs_from_judgments, split_queries

QUERIES = [f"query {i}" for i in range(2000)]


def test_split_is_by_query_seeded_and_pure():
    a = split_queries(QUERIES + QUERIES[:500], 0.2, seed=13)  # repeated rows of the same query
    assert not set(a.train) & set(a.dev)
    assert sorted(a.train + a.dev) == sorted(set(QUERIES))
    assert 0.17 < len(a.dev) / len(QUERIES) < 0.23
    assert split_queries(list(reversed(QUERIES)), 0.2, seed=13) == a  # order does not matter
    assert split_queries(QUERIES, 0.2, seed=14).dev != a.dev  # the seed does
    # adding queries never moves an existing one
    bigger = split_queries(QUERIES + ["brand new query"], 0.2, seed=13)
    assert set(a.dev) <= set(bigger.dev)


def test_pairs_from_judgments_keep_relevant_with_weight():
    js = [Judgment("q", "a", 2.0), Judgment("q", "b", 0.67), Judgment("r", "c", 1.0)]
    assert pairs_from_judgments(js, 1.0) == [Pair("q", "a", 2.0), Pair("r", "c", 1.0)]


def test_pairs_from_events_window_session_and_weights():
    w = {"click": 1.0, "add_to_cart": 3.0, "purchase": 5.0, "view": 1.0}
    events = [
        Event(0, "search", session_id="s1", query="drill"),
        Event(10, "click", session_id="s1", item_id="d1"),
        Event(20, "add_to_cart", session_id="s1", item_id="d1"),
        Event(30, "view", session_id="s1", item_id="d9"),  # views are not positives
        Event(5000, "purchase", session_id="s1", item_id="d2"),  # outside the 1800 s window
        Event(15, "click", session_id="s2", item_id="x"),  # another session: no search before it
        Event(40, "click", session_id="s3", item_id="p1", query="paint"),  # carries its own query
    ]
    pairs = sorted(pairs_from_events(events, 1800, w))
    assert pairs == [Pair("drill", "d1", 3.0), Pair("paint", "p1", 1.0)]
