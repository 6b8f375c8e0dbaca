"""Erasing a user removes their events, their sessions' events, their profile and what the
engine derived from them (the popularity vector): afterwards every answer equals the
answer of an engine that never saw the user, on every store backend."""

from __future__ import annotations

import numpy as np

from shoplm.config import Settings
from shoplm.engine.engine import Engine
from shoplm.data.records import Event
from shoplm.store import open_store


def _ids(recs) -> list[str]:
    return [r.item_id for r in recs]


def test_erased_user_leaves_no_trace_in_any_answer(store_url, tmp_path, small_catalog):
    settings = Settings(search_index_dir=tmp_path / "index", embedding_cache_dir=tmp_path.parent / "shared-cache")
    others = [Event(1_700_000_000 + i * 60, "purchase", user_id=f"other{i % 5}", item_id=small_catalog[i % 7].item_id)
              for i in range(30)]
    # the erased user made one item the most popular of the shop, and searched
    theirs = [Event(1_700_001_000 + i, "purchase", user_id="victim", session_id="vs",
                    item_id=small_catalog[40].item_id) for i in range(25)]
    theirs += [Event(1_700_002_000, "search", session_id="vs", query="ladder"),
               Event(1_700_002_001, "view", session_id="vs", item_id=small_catalog[41].item_id)]

    store = open_store(store_url)
    store.upsert_items(small_catalog)
    store.add_events(others + theirs)
    engine = Engine.open(settings, store)
    assert _ids(engine.recommend(session_id="new-visitor", k=1)) == [small_catalog[40].item_id]  # their influence
    assert not engine.profile(user_id="victim").is_new

    assert engine.delete_user("victim") == len(theirs)

    never = open_store("memory://")  # the same shop without the user, from scratch
    never.upsert_items(small_catalog)
    never.add_events(others)
    clean = Engine.open(settings.model_copy(update={"search_index_dir": tmp_path / "index2"}), never)
    assert store.actor_events(user_id="victim") == [] and store.actor_events(session_id="vs") == []
    assert engine.profile(user_id="victim").is_new and engine.profile(session_id="vs").is_new
    np.testing.assert_allclose(engine.popularity, clean.popularity)
    for ask in (lambda e: e.recommend(session_id="new-visitor", k=10), lambda e: e.recommend(user_id="victim", k=10),
                lambda e: e.recommend(session_id="vs", k=10), lambda e: e.search("ladder", user_id="victim", k=10),
                lambda e: e.search("model", k=10), lambda e: e.similar(small_catalog[40].item_id, k=5)):
        mine, theirs_ = ask(engine), ask(clean)
        assert _ids(mine) == _ids(theirs_)
        np.testing.assert_allclose([r.score for r in mine], [r.score for r in theirs_], rtol=1e-5, atol=1e-6)
    store.close()
