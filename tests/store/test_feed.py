"""The change feed (shoplm/store/feed.py): two store objects on one PostgreSQL database stand
in for two hosts. Writes through A reach B's feed in commit order, once each; a listener
that was down catches up from its last id, reconnects after its connection is killed, and
applies repeated or out-of-order notifications once, in order. SQLite and memory:// keep no
feed and say so."""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import replace

import pytest
import sqlalchemy as sa

from shoplm.data.experiments import Experiment
from shoplm.data.records import Item
from shoplm.data.rules import Rule, Synonym, parse_rule
from shoplm.errors import NotFound
from shoplm.store import open_store
from shoplm.store.base import SCHEMA_VERSION, Change
from shoplm.store.feed import ChangeListener, follow_changes


@pytest.fixture
def hosts(pg_url):
    """Two stores on one database: what two `shoplm serve` machines hold."""
    a, b = open_store(pg_url), open_store(pg_url)
    yield a, b
    a.close(), b.close()


def _rule(item_id: str = "a") -> Rule:
    parsed = parse_rule({"action": "pin", "item_id": item_id, "position": 0, "query": "saw"})
    assert isinstance(parsed, Rule), parsed
    return parsed


def _experiment() -> Experiment:
    arms = [{"name": "x", "share": 0.5}, {"name": "y", "share": 0.5}]
    return Experiment.parse({"name": "e", "salt": "s", "arms": arms})


def _write_everything(store) -> list[tuple[str, dict]]:
    """One of every catalog write; returns the (kind, payload) each should log."""
    store.upsert_items([Item("a", "Alpha"), Item("b", "Beta")])
    store.delete_items(["b", "never-there"])
    assert store.delete_items(["never-there"]) == 0  # deletes nothing: logs nothing
    rule = store.put_rule(_rule())
    store.put_rule(replace(rule, position=2))
    synonym = store.put_synonym(Synonym(("tv", "television")))
    experiment = store.put_experiment(_experiment())
    assert store.delete_rule(rule.id) and not store.delete_rule(rule.id)
    store.delete_synonym(synonym.id)
    store.delete_experiment(experiment.id)
    with pytest.raises(NotFound):  # rolled back: no change
        store.put_rule(replace(rule, id=999))
    return [("items_upserted", {"item_ids": ["a", "b"]}), ("items_deleted", {"item_ids": ["b"]}),
            ("rule_put", {"id": rule.id}), ("rule_put", {"id": rule.id}), ("synonym_put", {"id": synonym.id}),
            ("experiment_put", {"id": experiment.id}), ("rule_deleted", {"id": rule.id}),
            ("synonym_deleted", {"id": synonym.id}), ("experiment_deleted", {"id": experiment.id})]


def test_writes_through_a_appear_in_bs_feed_in_order_once(hosts):
    a, b = hosts
    assert b.change_feed and b.last_change_id() == 0 and b.changes_after(0) == []
    expected = _write_everything(a)
    changes = b.changes_after(0)
    assert [(c.kind, c.payload) for c in changes] == expected
    ids = [c.id for c in changes]
    assert ids == sorted(set(ids)) and b.last_change_id() == ids[-1]
    assert all(isinstance(c, Change) and c.created_at > 1.6e9 for c in changes)
    assert b.changes_after(ids[2]) == changes[3:]  # after an id: exactly the later ones
    assert b.changes_after(0, limit=2) == changes[:2]


def _collector():
    applied: list[Change] = []
    return applied, applied.extend


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_listener_on_b_applies_as_writes_commit_through_a(hosts):
    a, b = hosts
    applied, apply = _collector()
    listener = follow_changes(b, apply, after_id=b.last_change_id(), poll_s=60)  # LISTEN, not the poll
    try:
        _wait_for(listener.listening.is_set)
        a.upsert_items([Item("a", "Alpha")])
        _wait_for(lambda: len(applied) == 1)
        a.put_synonym(Synonym(("tv", "television")))
        _wait_for(lambda: len(applied) == 2)
    finally:
        listener.stop()
    assert [c.kind for c in applied] == ["items_upserted", "synonym_put"]
    assert listener.last_id == applied[-1].id == a.last_change_id()


def test_a_listener_that_was_down_catches_up_from_its_last_id(hosts):
    a, b = hosts
    a.upsert_items([Item("a", "Alpha")])
    seen = b.last_change_id()  # what B had applied when it went down
    a.upsert_items([Item("b", "Beta")])
    a.delete_items(["a"])
    applied, apply = _collector()
    listener = ChangeListener(b, apply, after_id=seen)
    assert listener.catch_up() == 2 and listener.catch_up() == 0
    assert [c.payload for c in applied] == [{"item_ids": ["b"]}, {"item_ids": ["a"]}]
    # the same through the thread, after more writes while it was stopped
    a.put_rule(_rule())
    restarted = ChangeListener(b, apply, after_id=listener.last_id, poll_s=60).start()
    try:
        _wait_for(lambda: len(applied) == 3)
    finally:
        restarted.stop()
    assert [c.kind for c in applied] == ["items_upserted", "items_deleted", "rule_put"]


def test_repeated_and_out_of_order_notifications_apply_once_in_order(hosts):
    a, b = hosts
    applied, apply = _collector()
    listener = ChangeListener(b, apply, after_id=b.last_change_id())
    for item_id in "xyz":
        a.upsert_items([Item(item_id, item_id.upper())])
    first, second, third = (c.id for c in b.changes_after(0))
    for change_id in (third, first, third, second, first):  # the first one reads them all
        listener.notified(change_id)
    assert [c.id for c in applied] == [first, second, third]
    assert [c.payload["item_ids"] for c in applied] == [["x"], ["y"], ["z"]]


def test_an_apply_that_fails_is_offered_the_same_changes_again(hosts):
    a, b = hosts
    calls: list[list[int]] = []

    def flaky(changes: list[Change]) -> None:
        calls.append([c.id for c in changes])
        if len(calls) == 1:
            raise RuntimeError("the engine could not take it")

    a.upsert_items([Item("a", "Alpha")])
    listener = ChangeListener(b, flaky, after_id=0, retry_s=0.05, poll_s=60).start()
    try:
        _wait_for(lambda: len(calls) == 2)
    finally:
        listener.stop()
    assert calls[0] == calls[1] and listener.last_id == calls[0][-1]


def test_a_listener_reconnects_and_catches_up_after_its_connection_is_killed(hosts, pg_url):
    a, b = hosts
    applied, apply = _collector()
    listener = ChangeListener(b, apply, after_id=0, retry_s=0.05, poll_s=60).start()
    admin = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        _wait_for(listener.listening.is_set)
        with admin.begin() as conn:  # what a database restart or a dropped connection does to it
            killed = conn.execute(sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'shoplm-change-listener' AND datname = current_database()")).scalar()
        assert killed == 1
        a.upsert_items([Item("a", "Alpha")])  # committed while the listener may be down
        a.put_rule(_rule())
        _wait_for(lambda: len(applied) == 2)
        assert listener.connections >= 2
        a.delete_items(["a"])  # and LISTEN works again on the new connection
        _wait_for(lambda: len(applied) == 3)
    finally:
        listener.stop()
        admin.dispose()
    assert [c.kind for c in applied] == ["items_upserted", "rule_put", "items_deleted"]


def test_concurrent_writers_are_seen_once_each_in_id_order(hosts, pg_url):
    """Ids follow commit order (the advisory lock in feed.py): a listener reading while several
    writers commit misses none, even though it only ever asks for ids after its last one."""
    a, b = hosts
    applied, apply = _collector()
    listener = ChangeListener(b, apply, after_id=0, poll_s=60).start()
    writers = [open_store(pg_url) for _ in range(4)]

    def write(store, w: int) -> None:
        for i in range(25):
            store.upsert_items([Item(f"w{w}-{i}", "item")])

    try:
        _wait_for(listener.listening.is_set)
        threads = [threading.Thread(target=write, args=(s, w)) for w, s in enumerate(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        _wait_for(lambda: len(applied) == 100)
    finally:
        listener.stop()
        for store in writers:
            store.close()
    ids = [c.id for c in applied]
    assert ids == sorted(set(ids)) == [c.id for c in a.changes_after(0)]
    assert sorted(c.payload["item_ids"][0] for c in applied) == sorted(f"w{w}-{i}" for w in range(4) for i in range(25))


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_single_host_stores_keep_no_feed_and_say_so(kind, tmp_path, caplog):
    store = open_store("memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'shop.db'}")
    _write_everything(store)
    assert not store.change_feed and store.changes_after(0) == [] and store.last_change_id() == 0
    with caplog.at_level(logging.INFO, logger="shoplm.store.feed"):
        assert follow_changes(store, lambda changes: None, after_id=0) is None
    assert "keeps no change feed" in caplog.text and "use PostgreSQL" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # one host so far: no alarm
    caplog.clear()
    if kind == "sqlite":  # a second machine opened the same file (a network share): a warning naming it
        other = open_store(f"sqlite:///{tmp_path / 'shop.db'}")
        assert other.note_host("till-2.shop.example") == [socket.gethostname()]
        other.close()
        with caplog.at_level(logging.INFO, logger="shoplm.store.feed"):
            assert follow_changes(store, lambda changes: None, after_id=0) is None
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1 and "till-2.shop.example" in warned[0] and "only when it restarts" in warned[0]
    store.close()


def test_a_version_2_store_is_upgraded_to_the_feed(durable_store_url):
    store = open_store(durable_store_url)
    store.upsert_items([Item("a", "Alpha")])
    store.close()
    engine = sa.create_engine(durable_store_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:  # what a version-2 store looked like
        conn.execute(sa.text("DROP TABLE IF EXISTS changes"))
        conn.execute(sa.text("UPDATE shoplm_meta SET value = '2' WHERE key = 'schema_version'"))
    engine.dispose()
    again = open_store(durable_store_url)
    assert again.schema_version() == SCHEMA_VERSION == 4
    assert again.items(["a"]) == [Item("a", "Alpha")] and again.changes_after(0) == []
    again.upsert_items([Item("b", "Beta")])
    assert [c.payload for c in again.changes_after(0)] == ([{"item_ids": ["b"]}] if again.change_feed else [])
    again.close()
