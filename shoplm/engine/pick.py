"""From scores over rows to the list a shopper sees: the top k under a mask, at most
`limit` per leaf category, each with the reason it is shown."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from shoplm.data.records import Item
from shoplm.engine.catalog import LiveCatalog
from shoplm.lm.vectors import rows_at


class Rec(NamedTuple):
    """One item of an answer: its id, its score and why it is shown."""

    item_id: str
    score: float
    reason: str


def pick(scores: np.ndarray, mask: np.ndarray, k: int, limit: int | None,
         catalog: LiveCatalog) -> list[tuple[int, Item]]:
    """(row, item) of the k best rows under `mask` (bool[rows]), ties in row order."""
    candidates = np.flatnonzero(mask)
    if not len(candidates):
        return []
    head = 8 * k  # partition first: sorting every candidate cost more than the rest of a request
    if len(candidates) > head:
        negated = -scores[candidates]
        # every candidate scoring at least the head-th best, ties included, in row order: so
        # the stable sort below orders them exactly as the full one would
        top = candidates[negated <= np.partition(negated, head)[head]]
        picked = pick_from(top[np.argsort(-scores[top], kind="stable")], k, limit, catalog)
        if len(picked) == k:
            return picked
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    return pick_from(order, k, limit, catalog)


def pick_from(order: np.ndarray, k: int, limit: int | None, catalog: LiveCatalog) -> list[tuple[int, Item]]:
    """The first k rows of `order` whose item is in the catalog, at most `limit` per leaf category."""
    per_category: dict[str, int] = {}
    picked: list[tuple[int, Item]] = []
    for row in order:
        item = catalog.item_at(row)
        if item is None:
            continue
        leaf = item.category or ""
        if limit is not None and per_category.get(leaf, 0) >= limit:
            continue
        per_category[leaf] = per_category.get(leaf, 0) + 1
        picked.append((row, item))
        if len(picked) == k:
            break
    return picked


def reasons(rows: list[int], history: Sequence[tuple[str, float]], catalog: LiveCatalog) -> list[str]:
    """Why each row is shown: the closest of the last 10 history items, or its popularity."""
    if not history:
        out = []
        for row in rows:
            item = catalog.item_at(row)
            top = item.category_path[0] if item is not None and item.category_path else None
            out.append(f"popular in {top}" if top else "popular right now")
        return out
    seen = catalog.indexed_rows(i for i, _ in history[-10:])
    if not seen or not rows:
        return ["based on your activity"] * len(rows)
    vectors = catalog.vectors
    closest = np.argmax(rows_at(vectors, rows) @ rows_at(vectors, seen).T, axis=1)  # (picked,): one product for all
    return [f"because you viewed {catalog.items[catalog.id_at(seen[c])].title}" for c in closest]
