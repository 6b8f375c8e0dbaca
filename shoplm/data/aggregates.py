"""Aggregates over the behaviour log that search, recommendation and the service share.

All take the events DataFrame of `Store.events_frame()` (so every store backend gets the
same numbers from the same code) and return Polars DataFrames:

- `item_counts`: per item, the number of events of each type and in total;
- `item_popularity`: per item, sum over its events of weight(type) * 0.5 ** (age / half_life),
  age measured from the newest event in the log (so replaying old logs gives the same result);
- `user_summaries`: per actor (user_id, else session_id), counts by type, first/last seen and
  the last N item_ids, oldest first;
- `dataset_stats`: the numbers `shoplm data stats` prints.
"""

from __future__ import annotations

from typing import Any, Mapping

import polars as pl

from shoplm.data.records import EVENT_TYPES



def length_buckets(top: int) -> tuple[tuple[str, int, int | None], ...]:
    """History-length buckets doubling in width up to `top`+: (name, low, high or None),
    e.g. length_buckets(8) = ("1", 1, 1), ("2-3", 2, 3), ("4-7", 4, 7), ("8+", 8, None).
    Doubling widths keep the short histories, where cold start lives, apart."""
    out, low = [], 1
    while low < top:
        high = 2 * low - 1
        out.append((str(low) if low == high else f"{low}-{high}", low, high))
        low *= 2
    return (*out, (f"{top}+", top, None))


# The one definition of history buckets: the engine's blend and the evaluation slices use
# LENGTH_BUCKETS (plus "0", no history); `shoplm data stats` the finer STATS_BUCKETS.
LENGTH_BUCKETS = length_buckets(8)
STATS_BUCKETS = length_buckets(64)


def history_bucket(length: int) -> str:
    """The `LENGTH_BUCKETS` name of a history of `length` events; "0" for none."""
    if length <= 0:
        return "0"
    return next(name for name, low, high in LENGTH_BUCKETS if high is None or length <= high)
SECONDS_PER_DAY = 86_400.0


def with_actor(events: pl.DataFrame) -> pl.DataFrame:
    """Adds `actor`: the user_id, or `session:<id>` for anonymous sessions."""
    return events.with_columns(
        actor=pl.coalesce(pl.col("user_id"), pl.lit("session:") + pl.col("session_id"))
    )


def _counts_by_type(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    counts = frame.group_by(key).agg(
        *(pl.col("event_type").eq(t).sum().cast(pl.Int64).alias(t) for t in EVENT_TYPES),
        pl.len().cast(pl.Int64).alias("total"),
    )
    return counts.sort(key)


def item_counts(events: pl.DataFrame) -> pl.DataFrame:
    """item_id, search..purchase, total — items with no events are absent."""
    return _counts_by_type(events.filter(pl.col("item_id").is_not_null()), "item_id")


def item_popularity(events: pl.DataFrame, weights: Mapping[str, float], half_life_days: float,
                    now: float | None = None) -> pl.DataFrame:
    """item_id, popularity — time-decayed, type-weighted event count, highest first."""
    frame = events.filter(pl.col("item_id").is_not_null())
    if frame.is_empty():
        return pl.DataFrame(schema={"item_id": pl.String, "popularity": pl.Float64})
    now = frame["timestamp"].max() if now is None else now
    weight = pl.col("event_type").replace_strict(dict(weights), default=0.0, return_dtype=pl.Float64)
    age_days = (pl.lit(now) - pl.col("timestamp")).clip(lower_bound=0) / SECONDS_PER_DAY
    decay = pl.lit(0.5).pow(age_days / half_life_days)
    scored = frame.group_by("item_id").agg((weight * decay).sum().alias("popularity"))
    return scored.sort(["popularity", "item_id"], descending=[True, False])


def user_summaries(events: pl.DataFrame, last_n: int) -> pl.DataFrame:
    """actor, user_id, search..purchase, total, first_seen, last_seen, last_items (oldest first)."""
    frame = with_actor(events).sort(["timestamp", "seq"])
    counts = _counts_by_type(frame, "actor")
    rest = frame.group_by("actor").agg(
        pl.col("user_id").first(),
        pl.col("timestamp").min().alias("first_seen"),
        pl.col("timestamp").max().alias("last_seen"),
        pl.col("item_id").drop_nulls().tail(last_n).alias("last_items"),
    )
    return counts.join(rest, on="actor").sort("actor")


def history_lengths(events: pl.DataFrame) -> pl.Series:
    """Number of item events (everything but searches) per actor."""
    frame = with_actor(events).filter(pl.col("item_id").is_not_null())
    return frame.group_by("actor").len()["len"]


def dataset_stats(events: pl.DataFrame, item_ids: set[str], counts: Mapping[str, int]) -> dict[str, Any]:
    """Counts by type, users, sessions, items, history-length distribution, items with no events."""
    lengths = history_lengths(events)
    with_events = set(events["item_id"].drop_nulls().unique().to_list())
    buckets = {}
    for label, low, high in STATS_BUCKETS:
        mask = (lengths >= low) & (lengths <= high) if high is not None else lengths >= low
        buckets[label] = int(mask.sum())
    by_type = dict.fromkeys(EVENT_TYPES, 0)
    for row in events.group_by("event_type").len().iter_rows():
        by_type[row[0]] = int(row[1])
    return {
        "items": counts["items"],
        "events": counts["events"],
        "judgments": counts["judgments"],
        "events_by_type": by_type,
        "users": events["user_id"].n_unique() - int(events["user_id"].null_count() > 0),
        "sessions": events["session_id"].n_unique() - int(events["session_id"].null_count() > 0),
        "history_length": {
            "actors": len(lengths),
            "min": int(lengths.min()) if len(lengths) else 0,
            "median": float(lengths.median()) if len(lengths) else 0.0,
            "mean": round(float(lengths.mean()), 3) if len(lengths) else 0.0,
            "max": int(lengths.max()) if len(lengths) else 0,
            "buckets": buckets,
        },
        "items_without_events": len(item_ids - with_events),
        "share_items_without_events": round(len(item_ids - with_events) / len(item_ids), 4) if item_ids else 0.0,
        "events_for_unknown_items": int(events.filter(pl.col("item_id").is_not_null() & ~pl.col("item_id").is_in(list(item_ids))).height),
    }
