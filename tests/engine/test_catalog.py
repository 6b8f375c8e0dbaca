"""The live catalog's derived caches stay right when a read lands in the middle of a write."""

from __future__ import annotations

from shoplm.config import Settings
from shoplm.data.records import Item
from shoplm.engine.engine import Engine
from shoplm.store import open_store

ITEMS = [
    Item("glue-1", "Wood glue, waterproof", category="Adhesives > Wood Glue", price=6.5),
    Item("saw-1", "Hand saw for wood", category="Tools > Hand Tools > Saws", price=19.9),
]


class ReadInside(dict):
    """The index's id -> row map, running `read` in the middle of `update`: after the index
    grew its arrays, before it knows the new rows (a reader thread can land there)."""

    def __init__(self, rows, read):
        super().__init__(rows)
        self.read = read

    def update(self, *args, **kwargs):
        self.read()
        super().update(*args, **kwargs)


def test_an_ad_read_during_an_upsert_does_not_hide_the_new_ad(tmp_path):
    """Reads take no lock: an ad ranking that runs while the index is appending a new
    sponsored item must not leave a cache in which that item has no row."""
    settings = Settings(search_index_dir=tmp_path / "index", embedding_cache_dir=tmp_path / "cache")
    store = open_store("memory://")
    store.upsert_items(ITEMS)
    engine = Engine.open(settings, store)
    index = engine.catalog.index
    seen = []
    index._row = ReadInside(index._row, lambda: seen.append(engine.rank_ads(item_id="glue-1", k=3)))
    engine.upsert_items([Item("glue-2", "Wood glue, quick drying", category="Adhesives > Wood Glue", price=4.0,
                              sponsored_bid=3.0)])
    assert seen == [[]]  # the read in the middle found no servable ad yet
    assert [ad.item_id for ad in engine.rank_ads(item_id="glue-1", k=3)] == ["glue-2"]
    assert engine.catalog.sponsored().rows.min() >= 0
