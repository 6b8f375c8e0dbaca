"""The `Store` contract, run against every backend: memory, SQLite and live PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from shoplm.errors import SchemaVersionMismatch, StoreError
from shoplm.data.records import Event, Item, Judgment
from shoplm.store import open_store
from shoplm.store.base import SCHEMA_VERSION


def _items():
    return [
        Item("b", "Beta", category="Tools > Saws", price=2.5, attributes={"colour": "red", "size": 3}),
        Item("a", "Alpha", description="first", brand="Acme", available=False, sponsored_bid=0.3),
    ]


def test_items_round_trip(store):
    assert store.upsert_items(_items()) == 2
    assert [i.item_id for i in store.items()] == ["a", "b"]
    assert store.items(["b", "missing", "a"]) == [_items()[0], _items()[1]]
    assert store.item_ids() == {"a", "b"}


def test_upsert_replaces_an_item(store):
    store.upsert_items(_items())
    store.upsert_items([Item("a", "Alpha 2", price=9.0)])
    assert store.items(["a"]) == [Item("a", "Alpha 2", price=9.0)]
    assert store.counts()["items"] == 2


def test_delete_items(store):
    store.upsert_items(_items())
    assert store.delete_items(["a", "zzz"]) == 1
    assert store.item_ids() == {"b"}


def test_events_are_idempotent_and_ordered(store):
    events = [
        Event(3.0, "view", user_id="u", item_id="a"),
        Event(1.0, "search", session_id="s", query="saw"),
        Event(2.0, "purchase", user_id="u", session_id="s", item_id="b", position=1, value=9.5),
    ]
    assert store.add_events(events) == 3
    assert store.add_events(events + [Event(4.0, "click", user_id="u", item_id="a")]) == 1
    frame = store.events_frame()
    assert frame["seq"].is_sorted() and frame.height == 4
    assert frame["timestamp"].to_list() == [3.0, 1.0, 2.0, 4.0]  # insertion order, not time
    row = frame.row(2, named=True)
    assert (row["user_id"], row["session_id"], row["position"], row["value"]) == ("u", "s", 1, 9.5)
    assert frame.row(1, named=True)["user_id"] is None


def test_events_differing_in_one_field_are_distinct(store):
    base = Event(1.0, "view", user_id="u", item_id="a")
    variants = [base, Event(1.0, "view", user_id="u", item_id="b"), Event(1.000001, "view", user_id="u", item_id="a"),
                Event(1.0, "click", user_id="u", item_id="a"), Event(1.0, "view", session_id="u", item_id="a")]
    assert store.add_events(variants) == 5


def _large_batch(n: int = 2_000) -> list[Event]:
    """Larger than any backend's small-batch path (PostgreSQL COPYs from 100 rows on), every
    field used, the clock running backwards so that insertion order and time order differ."""
    return [Event(10_000.0 - i, ("view", "click", "purchase")[i % 3], user_id=f"u{i % 7}",
                  session_id=None if i % 5 else f"s{i}", item_id=f"i{i % 11}", query="saw" if i % 4 == 0 else None,
                  position=i % 9 if i % 2 else None, value=1.5 * i if i % 3 == 2 else None,
                  list_id=f"l{i}" if i % 6 == 0 else None) for i in range(n)]


def test_a_large_batch_is_stored_whole_in_order_and_once(store):
    events = _large_batch()
    assert store.add_events(events[:500]) == 500
    # a repeat within the batch and 500 events already stored: each counted as not new
    assert store.add_events(events + events[1_000:1_010]) == 1_500
    assert store.add_events(events) == 0
    frame = store.events_frame()
    assert frame["seq"].is_sorted() and frame.height == 2_000
    assert frame["timestamp"].to_list() == [e.timestamp for e in events]  # insertion order
    stored = frame.drop("seq").rows()
    assert stored == [tuple(getattr(e, name) for name in frame.columns[1:]) for e in events]


def test_a_position_beyond_the_column_is_refused_whole(pg_url):
    """PostgreSQL's int4: psycopg's binary COPY would wrap 2**40 silently; the batch must fail."""
    store = open_store(pg_url)
    events = _large_batch(300)
    events[150] = Event(1.0, "click", user_id="u", item_id="a", position=2**40)
    with pytest.raises(sa.exc.DataError):
        store.add_events(events)
    assert store.counts()["events"] == 0  # nothing of the batch, not the rest of it
    events[150] = Event(1.0, "click", user_id="u", item_id="a", position=2**70)
    with pytest.raises(sa.exc.DataError):
        store.add_events(events)
    assert store.add_events(events[:150]) == 150
    store.close()


def test_judgments_upsert(store):
    store.upsert_judgments([Judgment("saw", "a", 1.0), Judgment("saw", "b", 0.0)])
    store.upsert_judgments([Judgment("saw", "a", 2.0)])
    assert store.judgments() == [Judgment("saw", "a", 2.0), Judgment("saw", "b", 0.0)]
    assert store.counts() == {"items": 0, "events": 0, "judgments": 2}


def test_empty_writes(store):
    assert store.upsert_items([]) == 0 and store.add_events([]) == 0 and store.upsert_judgments([]) == 0
    assert store.events_frame().height == 0


def test_data_survives_reopening(durable_store_url):
    store = open_store(durable_store_url)
    store.upsert_items(_items())
    store.add_events([Event(1.0, "view", user_id="u", item_id="a")])
    store.close()
    again = open_store(durable_store_url)
    assert again.counts() == {"items": 2, "events": 1, "judgments": 0}
    assert again.schema_version() == SCHEMA_VERSION
    again.close()


def test_schema_version_mismatch_is_refused(durable_store_url):
    open_store(durable_store_url).close()
    engine = sa.create_engine(durable_store_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE shoplm_meta SET value = '999' WHERE key = 'schema_version'"))
    engine.dispose()
    with pytest.raises(SchemaVersionMismatch, match="schema version 999"):
        open_store(durable_store_url)


def test_bad_urls_say_what_is_expected():
    with pytest.raises(StoreError, match="sqlite:///path.db"):
        open_store("mysql://x/y")
    with pytest.raises(StoreError, match="check that the server runs"):
        open_store("postgresql://127.0.0.1:1/nowhere")


def test_password_is_masked_in_errors():
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://bob:hunter2@127.0.0.1:1/nowhere")
    assert "hunter2" not in str(caught.value)


def _history():
    return [
        Event(5.0, "view", user_id="u", session_id="s1", item_id="a"),
        Event(1.0, "search", session_id="s1", query="saw"),  # anonymous, then the user logged in
        Event(2.0, "view", user_id="v", session_id="s2", item_id="b"),
        Event(3.0, "click", user_id="u", item_id="b"),
        Event(3.0, "view", session_id="s3", item_id="c"),
    ]


def test_actor_events_by_user_or_session(store):
    store.add_events(_history())
    assert [(e.timestamp, e.event_type) for e in store.actor_events(user_id="u")] == [(3.0, "click"), (5.0, "view")]
    assert [e.query for e in store.actor_events(session_id="s1")] == ["saw", None]
    assert store.actor_events(user_id="nobody") == [] and store.actor_events() == []
    assert store.actor_events(user_id="u")[0] == Event(3.0, "click", user_id="u", item_id="b")


def test_delete_user_erases_their_events_and_sessions(store):
    from shoplm.store.base import Impression

    store.add_events(_history())
    store.add_impressions([Impression("l1", 1.0, "search", ("a",), query="saw", session_id="s1"),
                           Impression("l2", 2.0, "recommend", ("b",), user_id="u"),
                           Impression("l3", 3.0, "search", ("a",), query="fan", session_id="s9")])
    assert store.delete_user("u") == 3
    assert store.impressions_frame()["list_id"].to_list() == ["l3"]  # the lists shown to them are gone too
    assert store.actor_events(user_id="u") == [] and store.actor_events(session_id="s1") == []
    assert store.counts()["events"] == 2
    assert store.delete_user("u") == 0


def test_impressions_round_trip_once_each(store):
    from shoplm.store.base import Impression

    shown = [Impression("l1", 10.0, "search", ("a", "b"), query="saw", session_id="s"),
             Impression("l2", 20.0, "recommend", ("b",), user_id="u", arm="exp:b")]
    assert store.add_impressions(shown) == 2
    assert store.add_impressions(shown[:1]) == 0  # a re-sent list is stored once
    frame = store.impressions_frame()
    assert frame["list_id"].to_list() == ["l1", "l2"] and frame["item_ids"].to_list() == [["a", "b"], ["b"]]
    assert store.impressions_frame(since=15.0)["list_id"].to_list() == ["l2"]
    assert store.impressions_frame(until=15.0)["arm"].to_list() == [None]


def test_events_keep_their_list_id(store):
    store.add_events([Event(1.0, "click", session_id="s", item_id="a", position=2, list_id="l1")])
    assert store.actor_events(session_id="s")[0].list_id == "l1"
    assert store.events_frame()["list_id"].to_list() == ["l1"]


def test_a_secret_is_made_once_and_shared(durable_store_url):
    first = open_store(durable_store_url)
    second = open_store(durable_store_url)
    assert first.secret("lists") == second.secret("lists") != first.secret("other")
    assert len(first.secret("lists")) == 32
    first.close(), second.close()


def test_a_version_1_store_is_upgraded_in_place(durable_store_url):
    store = open_store(durable_store_url)
    store.add_events([Event(1.0, "view", user_id="u", item_id="a")])
    store.close()
    engine = sa.create_engine(durable_store_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:  # what a version-1 store looked like
        conn.execute(sa.text("DROP INDEX IF EXISTS ix_events_list_id"))
        conn.execute(sa.text("ALTER TABLE events DROP COLUMN list_id"))
        conn.execute(sa.text("DROP TABLE impressions"))
        conn.execute(sa.text("UPDATE shoplm_meta SET value = '1' WHERE key = 'schema_version'"))
    engine.dispose()
    again = open_store(durable_store_url)
    assert again.schema_version() == SCHEMA_VERSION
    assert again.actor_events(user_id="u")[0].list_id is None
    again.add_events([Event(2.0, "click", user_id="u", item_id="a", list_id="l9")])
    assert again.actor_events(user_id="u")[1].list_id == "l9"
    again.close()


def test_a_version_3_store_gets_the_items_of_its_impressions(durable_store_url):
    from shoplm.store.analytics import analytics
    from shoplm.store.base import Impression

    store = open_store(durable_store_url)
    store.add_impressions([Impression("l1", 10.0, "search", ("a", "b"), query="fan", session_id="s")])
    store.close()
    engine = sa.create_engine(durable_store_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:  # what a version-3 store looked like
        conn.execute(sa.text("DROP TABLE impression_items"))
        conn.execute(sa.text("DROP INDEX ix_impressions_session_id"))
        conn.execute(sa.text("UPDATE shoplm_meta SET value = '3' WHERE key = 'schema_version'"))
    engine.dispose()
    again = open_store(durable_store_url)
    assert again.schema_version() == SCHEMA_VERSION == 4
    again.add_events([Event(20.0, "click", session_id="s", item_id="b")])  # no list_id: l1 showed b
    report = analytics(again)
    assert report["surfaces"]["search"]["clicks"] == 1 and report["ctr_by_position"]["search"][1]["clicks"] == 1
    again.close()
