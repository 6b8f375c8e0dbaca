"""The shop's lists, computed from the store's events over the catalog's rows.

- **trending**: popularity growth, a short-decay rate against a long-decay one. With S the
  event-weighted count decayed with half-life h_s (`trending_short_half_life_days`, 1) and
  L the same with h_l (`trending_long_half_life_days`, 14), an item steady at any rate
  scores about 1 and one whose recent traffic outgrows its past scores more:

      trending = (S + m) / (L * h_s / h_l + m)      (m = `trending_smoothing`, 1 event)

  (a decayed count of a steady rate r per day is r * h / ln 2, so L * h_s / h_l is what S
  would be at the long-run rate). Only items with S >= `trending_min_events` qualify, so
  one view of a forgotten item does not top the list.
- **new**: the item's `created_at` (a catalog field), else the first time the shop's events
  name it; newest first; items with neither are not on the list.
- **best_sellers**: purchases, decayed with `best_sellers_half_life_days` (30).
- **complements**: items bought together (shoplm/recommend/complements.py) over the rows.

"now" is the newest event's time, as for popularity, so a replayed or imported log gives
the lists it had. `Engine` keeps one `ShopLists` and rebuilds it in the background every
`lists_refresh_s` seconds or after a catalog change (shoplm/engine/background.py): an event
reaches the lists within that delay, not instantly as it reaches popularity.
"""

from __future__ import annotations

from typing import Callable, Iterable, Literal

import numpy as np
import polars as pl

from shoplm.config import Settings
from shoplm.data.aggregates import SECONDS_PER_DAY
from shoplm.data.records import Item
from shoplm.recommend.complements import Complements, basket_frame, baskets_from_frame

ListName = Literal["trending", "new", "best_sellers"]
LISTS: tuple[str, ...] = ("trending", "new", "best_sellers")


def _decayed(frame: pl.DataFrame, weight: pl.Expr, half_life_days: float, now: float) -> pl.DataFrame:
    age = (pl.lit(now) - pl.col("timestamp")).clip(lower_bound=0) / SECONDS_PER_DAY
    return frame.group_by("item_id").agg((weight * pl.lit(0.5).pow(age / half_life_days)).sum().alias("value"))


class ShopLists:
    """float64[rows] keys of each list (NaN: not on it) and the complements."""

    def __init__(self, trending: np.ndarray, new: np.ndarray, best_sellers: np.ndarray, complements: Complements):
        self.keys = {"trending": trending, "new": new, "best_sellers": best_sellers}
        self.complements = complements

    @classmethod
    def build(cls, events: pl.DataFrame, items: Iterable[Item], rows: Callable[[list[str]], np.ndarray],
              n_rows: int, settings: Settings) -> "ShopLists":
        """From the store's events frame; `rows(ids)` maps item ids to rows (-1: not indexed)."""
        frame = events.filter(pl.col("item_id").is_not_null())

        def by_row(values: pl.DataFrame, column: str = "value") -> np.ndarray:
            out = np.full(n_rows, np.nan)
            if values.height:
                at = rows(values["item_id"].to_list())
                ok = at >= 0
                out[at[ok]] = values[column].to_numpy()[ok]
            return out

        trending = np.full(n_rows, np.nan)
        best = np.full(n_rows, np.nan)
        first_seen = np.full(n_rows, np.nan)
        if frame.height:
            now = float(frame["timestamp"].max())
            weight = pl.col("event_type").replace_strict(dict(settings.event_weights), default=0.0,
                                                         return_dtype=pl.Float64)
            short = by_row(_decayed(frame, weight, settings.trending_short_half_life_days, now))
            long = by_row(_decayed(frame, weight, settings.trending_long_half_life_days, now))
            m = settings.trending_smoothing
            ratio = settings.trending_short_half_life_days / settings.trending_long_half_life_days
            growth = (short + m) / (np.nan_to_num(long) * ratio + m)
            trending = np.where(np.nan_to_num(short) >= settings.trending_min_events, growth, np.nan)
            purchases = frame.filter(pl.col("event_type") == "purchase")
            best = by_row(_decayed(purchases, pl.lit(1.0), settings.best_sellers_half_life_days, now))
            first_seen = by_row(frame.group_by("item_id").agg(pl.col("timestamp").min().alias("value")))
        dated = [(item.item_id, item.created_at) for item in items if item.created_at is not None]
        new = first_seen
        if dated:
            at = rows([i for i, _ in dated])
            ok = at >= 0
            new = first_seen.copy()
            new[at[ok]] = np.asarray([t for _, t in dated], dtype=np.float64)[ok]
        ids = frame["item_id"].unique().to_list() if frame.height else []
        index = dict(zip(ids, (int(r) for r in rows(ids)))) if ids else {}
        baskets = baskets_from_frame(basket_frame(frame), {i: r for i, r in index.items() if r >= 0})
        complements = Complements.fit(baskets, n_rows, settings.complements_alpha, settings.complements_basket_decay)
        return cls(trending, new, best, complements)

    def key(self, name: str, n_rows: int) -> np.ndarray:
        """float64[n_rows]: the list's key per row (higher first), NaN off the list; rows
        indexed since the build are off every list until the next build."""
        values = self.keys[name]
        if len(values) >= n_rows:
            return values[:n_rows]
        return np.concatenate([values, np.full(n_rows - len(values), np.nan)])
