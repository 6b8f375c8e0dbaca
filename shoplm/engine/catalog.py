"""`LiveCatalog`: the engine's row space.

Every answer is computed over "rows": one entry per row of the search pipeline's vector
index, new items included the moment they are indexed. The catalog keeps the items in
memory (the hot read path never goes to the database for an item), maps item ids to rows
through the index's public `row`/`rows` lookup, and holds what lives per row: the servable
mask, time-decayed popularity, and the sponsored items with their bids.

Not thread-safe on its own: the engine calls it under its lock for writes.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import numpy as np

from shoplm.data.records import Item
from shoplm.search.index import VectorIndex


class Sponsored(NamedTuple):
    """The catalog's sponsored items, ordered by item_id (the ad ranking's tie-break)."""

    ids: np.ndarray  # object[m]
    rows: np.ndarray  # int64[m]: row in the vector index, -1 if not indexed
    bids: np.ndarray  # float64[m] > 0


class LiveCatalog:
    def __init__(self, items: Iterable[Item], index: VectorIndex | None = None):
        self.items: dict[str, Item] = {item.item_id: item for item in items}
        self.index = index
        self.version = 0  # bumped by every catalog write; keys derived caches
        self.popularity = np.zeros(0)  # float64[rows], time-decayed, in the index's row order
        self._sponsored: tuple[int, Sponsored] | None = None

    # --- rows ----------------------------------------------------------------------------
    @property
    def vectors(self) -> np.ndarray:
        """float32[rows, dim], L2-normalised item text vectors."""
        return self.index.vectors

    @property
    def n_rows(self) -> int:
        return len(self.index.ids)

    def row(self, item_id: str) -> int | None:
        return self.index.row(item_id)

    def rows(self, ids: Iterable[str]) -> np.ndarray:
        """int64[n]: the row of each id, -1 where it is not indexed."""
        return self.index.rows(ids)

    def indexed_rows(self, ids: Iterable[str]) -> list[int]:
        """The rows of those ids that are indexed, in their order."""
        return [int(r) for r in self.index.rows(ids) if r >= 0]

    def id_at(self, row: int) -> str:
        return self.index.ids[row]

    def item_at(self, row: int) -> Item | None:
        return self.items.get(self.index.ids[row])

    def alive(self) -> np.ndarray:
        """bool[rows]: rows of items still in the catalog."""
        return self.index.alive

    def servable(self) -> np.ndarray:
        """bool[rows]: live and available — a removed or unavailable item is never returned."""
        return self.index.alive & self.index.available

    # --- items ---------------------------------------------------------------------------
    def get(self, item_id: str) -> Item | None:
        return self.items.get(item_id)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.items

    def take(self, items: Sequence[Item]) -> None:
        self.items.update((item.item_id, item) for item in items)
        self.changed()

    def drop(self, item_ids: Sequence[str]) -> None:
        for item_id in item_ids:
            self.items.pop(item_id, None)
        self.changed()

    def changed(self) -> None:
        """Void the derived caches. Called when the items change and again once the index
        holds the change: reads take no lock, so a cache built in between is rebuilt."""
        self.version += 1

    def sponsored(self) -> Sponsored:
        """The sponsored items as arrays, rebuilt only after the catalog changed."""
        key = self.version
        cached = self._sponsored
        if cached is None or cached[0] != key:
            ads = sorted((item.item_id, item.sponsored_bid) for item in self.items.values() if item.sponsored_bid)
            ids = np.asarray([a for a, _ in ads], dtype=object)
            rows = self.rows(ids) if self.index is not None else np.full(len(ids), -1, dtype=np.int64)
            cached = self._sponsored = (key, Sponsored(ids, rows, np.asarray([b for _, b in ads], dtype=np.float64)))
        return cached[1]

    # --- popularity ----------------------------------------------------------------------
    def grow(self) -> None:
        """Extend the per-row arrays after items were added to the vector index (rows only grow)."""
        self.popularity = np.concatenate([self.popularity, np.zeros(self.n_rows - len(self.popularity))])

    def set_popularity(self, values: Iterable[tuple[str, float]]) -> None:
        """Popularity of every row from (item_id, value) pairs; rows not named get 0."""
        self.popularity = np.zeros(self.n_rows)
        for item_id, value in values:
            row = self.row(item_id)
            if row is not None:
                self.popularity[row] = value

    def add_popularity(self, gains: dict[str, float]) -> None:
        for item_id, gain in gains.items():
            row = self.row(item_id)
            if row is not None:
                self.popularity[row] += gain
