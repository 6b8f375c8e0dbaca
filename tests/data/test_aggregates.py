"""Aggregates on a tiny log with known answers, and the same answers from every backend."""

from __future__ import annotations

import pytest

from shoplm.data.aggregates import dataset_stats, item_counts, item_popularity, user_summaries
from shoplm.data.records import Event, Item

DAY = 86_400.0
WEIGHTS = {"search": 0.0, "view": 1.0, "click": 1.0, "add_to_cart": 3.0, "purchase": 5.0}


@pytest.fixture
def filled(store):
    store.upsert_items([Item(i, i.upper()) for i in ("a", "b", "c")])
    store.add_events([
        Event(0 * DAY, "view", user_id="u1", item_id="a"),
        Event(10 * DAY, "purchase", user_id="u1", item_id="b"),
        Event(10 * DAY, "view", user_id="u1", item_id="a"),  # tie in time: input order is kept
        Event(5 * DAY, "search", session_id="s1", query="saw"),
        Event(6 * DAY, "click", session_id="s1", item_id="a"),
    ])
    return store


def test_item_counts(filled):
    counts = item_counts(filled.events_frame())
    assert counts.select(["item_id", "view", "click", "purchase", "total"]).rows() == [
        ("a", 2, 1, 0, 3), ("b", 0, 0, 1, 1)]


def test_popularity_halves_every_half_life(filled):
    pop = dict(item_popularity(filled.events_frame(), WEIGHTS, half_life_days=10).rows())
    assert pop["b"] == pytest.approx(5.0)
    assert pop["a"] == pytest.approx(1.0 + 0.5 + 2 ** -0.4)
    first = item_popularity(filled.events_frame(), WEIGHTS, half_life_days=10)["item_id"][0]
    assert first == "b"


def test_user_summaries(filled):
    rows = {r["actor"]: r for r in user_summaries(filled.events_frame(), last_n=2).iter_rows(named=True)}
    assert set(rows) == {"u1", "session:s1"}
    u1 = rows["u1"]
    assert (u1["view"], u1["purchase"], u1["total"], u1["first_seen"], u1["last_seen"]) == (2, 1, 3, 0.0, 10 * DAY)
    assert u1["last_items"] == ["b", "a"]
    assert rows["session:s1"]["user_id"] is None and rows["session:s1"]["last_items"] == ["a"]


def test_dataset_stats(filled):
    stats = dataset_stats(filled.events_frame(), filled.item_ids(), filled.counts())
    assert stats["users"] == 1 and stats["sessions"] == 1 and stats["events"] == 5
    assert stats["events_by_type"] == {"search": 1, "view": 2, "click": 1, "add_to_cart": 0, "purchase": 1}
    assert stats["history_length"]["buckets"]["1"] == 1 and stats["history_length"]["buckets"]["2-3"] == 1
    assert stats["items_without_events"] == 1 and stats["share_items_without_events"] == pytest.approx(1 / 3, abs=1e-4)


def test_empty_store_stats(store):
    stats = dataset_stats(store.events_frame(), store.item_ids(), store.counts())
    assert stats["users"] == 0 and stats["history_length"]["actors"] == 0
