"""Interpretable user profiles, built from a user's (or session's) events and the catalog.

Weights are event-type weights (`Settings.event_weights`: a purchase says more than a
view), so "top categories" means where the user spent their strongest signals, not just
where they clicked most. Categories are the items' full paths (`Tools > Sanding > Rolls`):
the path says the hierarchy, and a shared root such as "Industrial & Scientific" would
otherwise top every profile while saying nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from shoplm.data.records import EVENT_TYPES, Event, Item


@dataclass
class Profile:
    user_id: str | None
    session_id: str | None
    is_new: bool
    event_counts: dict[str, int]
    first_seen: float | None = None
    last_seen: float | None = None
    top_categories: list[tuple[str, float]] = field(default_factory=list)  # (path, share of weight)
    top_brands: list[tuple[str, float]] = field(default_factory=list)
    price_band: dict[str, float] | None = None  # p25 / median / p75 of the prices of items interacted with
    recent_items: list[str] = field(default_factory=list)  # newest first
    recent_queries: list[str] = field(default_factory=list)  # newest first
    nearest_categories: list[tuple[str, float]] = field(default_factory=list)  # filled by the engine

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_profile(
    events: Sequence[Event],
    items: Mapping[str, Item],
    weights: Mapping[str, float],
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    top: int = 5,
) -> Profile:
    """`events` oldest first (as `Store.actor_events` returns them)."""
    counts = dict.fromkeys(EVENT_TYPES, 0)
    counts.update(Counter(e.event_type for e in events))
    if not events:
        return Profile(user_id, session_id, is_new=True, event_counts=counts)
    categories: Counter[str] = Counter()
    brands: Counter[str] = Counter()
    prices: list[float] = []
    for event in events:
        item = items.get(event.item_id) if event.item_id else None
        if item is None:
            continue
        weight = weights.get(event.event_type, 1.0)
        if item.category:
            categories[item.category] += weight
        if item.brand:
            brands[item.brand] += weight
        if item.price is not None:
            prices.append(item.price)
    return Profile(
        user_id, session_id, is_new=False, event_counts=counts,
        first_seen=events[0].timestamp, last_seen=events[-1].timestamp,
        top_categories=_shares(categories, top),
        top_brands=_shares(brands, top),
        price_band=_price_band(prices),
        recent_items=list(dict.fromkeys(e.item_id for e in reversed(events) if e.item_id))[:10],
        recent_queries=list(dict.fromkeys(e.query for e in reversed(events) if e.query))[:5],
    )


def _shares(weights: Counter[str], top: int) -> list[tuple[str, float]]:
    total = sum(weights.values())
    if total <= 0:
        return []
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(name, round(w / total, 4)) for name, w in ranked[:top]]


def _price_band(prices: list[float]) -> dict[str, float] | None:
    if not prices:
        return None
    p25, median, p75 = np.percentile(np.asarray(prices), [25, 50, 75])
    return {"p25": round(float(p25), 2), "median": round(float(median), 2), "p75": round(float(p75), 2)}


def nearest_categories(history_vectors: np.ndarray, weights: np.ndarray, names: Sequence[str],
                       name_vectors: np.ndarray | None, top: int = 3) -> list[tuple[str, float]]:
    """The category names whose text embedding is closest to the actor's vector: the
    event-weighted sum of the history's item vectors (float32[h, dim], weights float[h])."""
    if not len(history_vectors) or not names:
        return []
    profile = np.asarray(weights) @ history_vectors  # (dim,)
    profile = profile / max(np.linalg.norm(profile), 1e-12)
    sims = name_vectors @ profile  # (categories,)
    best = np.argsort(-sims)[:top]
    return [(names[i], round(float(sims[i]), 4)) for i in best]
