"""Engines on several hosts over one PostgreSQL store (shoplm/engine/follow.py): two engines
that share nothing but the database stand in for two machines. What one writes, the other
serves once the change feed delivers it, whatever the order or repetition of the changes;
one that was away catches up, or reloads when the changes it missed were pruned.
(tests/api/test_hosts.py does the same with two `shoplm serve` processes.)"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from shoplm.config import Settings
from shoplm.data.experiments import Experiment
from shoplm.data.records import Event, Item
from shoplm.data.rules import Rule, Synonym, parse_rule
from shoplm.engine.engine import Engine
from shoplm.engine.listing import PageRequest
from shoplm.store import open_store
from shoplm.store.base import Change
from tests.reliability.conftest import catalog

KETTLE = Item("new-1", "Zanzibar copper kettle", category="Kitchen > Kettles", brand="Zz", price=30.0)


def _until(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def hosts(pg_url, tmp_path):
    """Engines A and B on one database, each with its own indexes (as on two machines);
    merchandising and experiments are re-read only through the feed (refresh an hour)."""
    seed = open_store(pg_url)
    seed.upsert_items(catalog(40))
    seed.close()
    engines = []
    for name in "ab":
        settings = Settings(search_index_dir=tmp_path / name / "index", embedding_cache_dir=tmp_path / "cache",
                            rules_refresh_s=3600, popularity_refresh_s=3600)
        engines.append(Engine.open(settings, open_store(pg_url)))
    a, b = engines
    a.follow(poll_s=60)  # LISTEN wakes them, not the poll
    b.follow(poll_s=60)
    assert _until(lambda: a.follower.listener.listening.is_set() and b.follower.listener.listening.is_set())
    yield a, b
    for engine in engines:
        engine.close()


def _found(engine: Engine, item_id: str, query: str) -> bool:
    return item_id in [r.item_id for r in engine.search(query, k=5)]


def _page(engine: Engine, query: str) -> list[str]:
    """The ids of a search page, merchandising rules applied."""
    return [hit.item_id for hit in engine.search_page(PageRequest(query=query)).hits]


def test_items_written_through_a_are_found_changed_and_gone_through_b(hosts):
    a, b = hosts
    a.upsert_items([KETTLE])
    assert _until(lambda: _found(b, "new-1", "zanzibar copper kettle"))
    a.upsert_items([replace(KETTLE, title="Zanzibar enamel teapot", price=12.5)])
    assert _until(lambda: b.items["new-1"].price == 12.5)
    assert b.items["new-1"].title == "Zanzibar enamel teapot"
    assert [r.item_id for r in b.search("enamel teapot", k=1)] == ["new-1"]  # indexed by its new title
    a.delete_item("new-1")
    assert _until(lambda: "new-1" not in b.items) and not _found(b, "new-1", "zanzibar teapot")
    assert _until(lambda: a.follower.last_id == b.follower.last_id == a.store.last_change_id())  # set once applied


def test_merchandising_experiments_and_erasure_reach_b(hosts):
    a, b = hosts
    rule = parse_rule({"action": "pin", "item_id": "item-7", "position": 0, "query": "model"})
    assert isinstance(rule, Rule)
    a.put_rule(rule)
    assert _until(lambda: _page(b, "model")[:1] == ["item-7"])
    a.put_synonym(Synonym(("zanzibar",), to=("model",)))  # one way: "zanzibar" also matches "model"
    assert _until(lambda: b.search_pipeline.lexical.scores("zanzibar").any())  # no title says zanzibar
    arms = [{"name": "x", "share": 0.5}, {"name": "y", "share": 0.5}]
    a.put_experiment(Experiment.parse({"name": "e", "salt": "s", "arms": arms}))
    assert _until(lambda: [e.name for e in b.experiments()] == ["e"])
    assert b.arm("u1", None) is not None

    row = b.catalog.row("item-5")
    a.add_events([Event(time.time(), "purchase", "u1", "s1", "item-5")])
    b.refresh_popularity()  # what B's housekeeping does every popularity_refresh_s
    assert b.popularity[row] == a.popularity[a.catalog.row("item-5")] > 0
    assert a.delete_user("u1") == 1  # erasure is on the feed: every host forgets the purchase at once
    assert _until(lambda: b.popularity[b.catalog.row("item-5")] == 0.0)


def test_a_model_swapped_in_on_a_is_loaded_by_b(hosts, monkeypatch):
    a, b = hosts
    loaded = {"a": [], "b": []}
    monkeypatch.setattr(a, "_load_model", lambda directory: loaded["a"].append(str(directory)))
    monkeypatch.setattr(b, "_load_model", lambda directory: loaded["b"].append(str(directory)))
    a.reload_model("/models/2026-12-01")
    assert _until(lambda: loaded["b"] == ["/models/2026-12-01"])
    assert _until(lambda: a.follower.last_id == a.store.last_change_id())
    assert loaded["a"] == ["/models/2026-12-01"]  # A loaded it once: its own change is not applied again


def test_changes_twice_or_out_of_order_leave_the_stores_state(hosts):
    a, b = hosts
    b.follower.stop()  # B applies by hand below
    a.upsert_items([KETTLE])
    a.upsert_items([replace(KETTLE, price=99.0)])
    a.delete_item("item-1")
    changes = a.store.changes_after(b.follower.last_id)
    assert [c.kind for c in changes] == ["items_upserted", "items_upserted", "items_deleted"]
    for batch in ([changes[2], changes[0]], [changes[1]], [changes[1], changes[0]], [changes[2]]):
        b.follower.apply(batch)  # repeated and reversed: each re-reads what the store holds now
        assert b.items["new-1"].price == 99.0 and "item-1" not in b.items
    late = Change(changes[0].id, "items_upserted", {"item_ids": ["new-1", "item-1"]}, changes[0].created_at)
    b.follower.apply([late])  # a late "upserted item-1" cannot bring back the deleted item
    assert "item-1" not in b.items and b.items["new-1"].price == 99.0


def test_a_host_away_longer_than_the_retention_reloads_everything(hosts):
    a, b = hosts
    b.follower.stop()
    away_at = b.follower.last_id
    a.upsert_items([KETTLE])
    a.delete_item("item-2")
    a.put_synonym(Synonym(("zanzibar",), to=("model",)))
    logged = len(a.store.changes_after(0))
    assert a.store.prune_changes(time.time() + 1) == logged - 1  # all but the newest
    with pytest.raises(Exception, match="pruned"):
        b.store.changes_after(away_at)
    b.follower = None
    b.change_id = away_at
    b.follow(poll_s=60)  # catches up from where it was: the changes are gone, so it reloads
    assert _until(lambda: "new-1" in b.items and "item-2" not in b.items)
    assert _until(lambda: b.search_pipeline.lexical.scores("zanzibar").any())
    assert _until(lambda: b.follower.last_id == a.store.last_change_id())  # set once the reload returned


def test_with_a_feed_peer_workers_get_only_popularity(hosts):
    a, b = hosts
    told = []
    a.peers.append(told.append)
    a.upsert_items([KETTLE])
    a.add_events([Event(time.time(), "view", "u2", "s2", "new-1")])
    assert told == [{"popularity": {"new-1": a.settings.event_weights["view"]}}]
