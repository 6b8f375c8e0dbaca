"""Search and recommendation analytics, aggregated where the data lives.

    report = analytics(store, since=t0, until=t1)   # -> dict, the JSON of GET /v1/admin/analytics

What is counted, over impressions and events with a timestamp in [since, until):
- an **impression** is a result list the service answered (`Impression`: surface, query,
  arm, the items shown); a search list with no item is a **zero-result** search;
- a **click**, **add-to-cart** or **purchase** is credited to a list when it carries that
  list's `list_id`. A click without one is credited to the last list that showed its item to
  the same session (else, without a session, the same user) at most `window_s` seconds
  before it, at the item's position there. A cart or purchase without one is credited to the
  list of the latest click with a `list_id` on the same item by the same visitor within the
  window, else, as a click, to the last list that showed the item;
- **revenue** sums the credited purchases' `value`; **CTR** = clicks / impressions,
  **conversion** = purchases / impressions, per surface, per query and per experiment arm.

On SQLite and PostgreSQL (`SqlStore`) everything is aggregated by SQL (GROUP BY over the
indexed tables, correlated sub-selects per event without a list_id: over the clicks, and over
`impression_items`, one row per item shown), so only the aggregates
reach Python; the in-memory store computes the same with polars. Both return the same
`Aggregates`, and `summarise` turns them into the report.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from shoplm.report import Section, write_report

ENGAGED = ("click", "add_to_cart", "purchase")
GROUP = ["surface", "query", "arm"]
_KEYS = {"surface": pl.String, "query": pl.String, "arm": pl.String}
LISTS = {**_KEYS, "impressions": pl.Int64, "zero_results": pl.Int64, "visitors": pl.Int64}
ENGAGED_SCHEMA = {**_KEYS, "clicks": pl.Int64, "carts": pl.Int64, "purchases": pl.Int64, "revenue": pl.Float64}
POSITIONS = {"surface": pl.String, "position": pl.Int64, "clicks": pl.Int64}
LENGTHS = {"surface": pl.String, "n_items": pl.Int64, "impressions": pl.Int64}
ARMS = {"arm": pl.String, "visitors": pl.Int64, "clicked": pl.Int64, "bought": pl.Int64}


class Aggregates(NamedTuple):
    lists: pl.DataFrame  # surface, query, arm, impressions, zero_results, visitors
    engaged: pl.DataFrame  # surface, query, arm, clicks, carts, purchases, revenue
    positions: pl.DataFrame  # surface, position, clicks
    lengths: pl.DataFrame  # surface, n_items, impressions
    arms: pl.DataFrame  # arm, visitors (seen a list of the arm), clicked, bought (credited to one)


def analytics(store: Any, since: float | None = None, until: float | None = None, window_s: float = 1800.0,
              top: int = 50, min_searches: int = 5) -> dict[str, Any]:
    return summarise(store.aggregates(since, until, window_s), top, min_searches) | {"since": since, "until": until}


def summarise(agg: Aggregates, top: int = 50, min_searches: int = 5) -> dict[str, Any]:
    per_list = agg.lists.join(agg.engaged, on=GROUP, how="full", coalesce=True, nulls_equal=True).fill_null(0)
    per_list = per_list.with_columns(pl.col("revenue").cast(pl.Float64))
    searches = per_list.filter(pl.col("surface") == "search", pl.col("query").is_not_null())
    queries = (searches.group_by("query").agg(
        pl.col("impressions").sum().alias("searches"), pl.col("zero_results").sum(), pl.col("clicks").sum(),
        pl.col("purchases").sum().alias("conversions"), pl.col("revenue").sum())
        .with_columns(_rate("clicks", "searches").alias("ctr")))
    queries = queries.select("query", "searches", "clicks", "ctr", "zero_results", "conversions", "revenue")
    by_surface = _rates(per_list.group_by("surface").agg(*_sums()), "surface")
    by_arm = per_list.filter(pl.col("arm").is_not_null()).group_by("arm").agg(*_sums())
    by_arm = by_arm.join(agg.arms, on="arm", how="left").fill_null(0)  # visitors, clicked, bought
    arms = {arm: {**row, "revenue_per_visitor": row["revenue"] / row["visitors"] if row["visitors"] else 0.0}
            for arm, row in _rates(by_arm, "arm").items()}
    return {
        "queries": queries.sort(["searches", "query"], descending=[True, False]).head(top).to_dicts(),
        "zero_result_queries": queries.filter(pl.col("zero_results") > 0)
        .sort(["zero_results", "query"], descending=[True, False]).head(top).to_dicts(),
        "low_ctr_queries": queries.filter(pl.col("searches") >= min_searches)
        .sort(["ctr", "searches", "query"], descending=[False, True, False]).head(top).to_dicts(),
        "surfaces": by_surface,
        "arms": arms,
        "ctr_by_position": _ctr_by_position(agg),
    }


def _sums() -> list[pl.Expr]:
    return [pl.col(c).sum() for c in ("impressions", "zero_results", "clicks", "carts", "purchases", "revenue")]


def _rate(numerator: str, denominator: str) -> pl.Expr:
    return pl.when(pl.col(denominator) > 0).then(pl.col(numerator) / pl.col(denominator)).otherwise(0.0)


def _rates(frame: pl.DataFrame, key: str) -> dict[str, dict[str, Any]]:
    frame = frame.with_columns(_rate("clicks", "impressions").alias("ctr"),
                               _rate("purchases", "impressions").alias("conversion"))
    return {row[key]: {**{k: v for k, v in row.items() if k != key}, "conversions": row["purchases"]}
            for row in frame.sort(key).to_dicts()}


def _ctr_by_position(agg: Aggregates, depth: int = 20) -> dict[str, list[dict[str, Any]]]:
    """Per surface, for positions 0..depth-1: lists long enough to show it, clicks on it, CTR."""
    out: dict[str, list[dict[str, Any]]] = {}
    for surface in sorted(set(agg.lengths["surface"].to_list())):
        lengths = agg.lengths.filter(pl.col("surface") == surface)
        clicks = dict(agg.positions.filter(pl.col("surface") == surface).select("position", "clicks").iter_rows())
        rows = []
        for position in range(depth):
            shown = int(lengths.filter(pl.col("n_items") > position)["impressions"].sum())
            if not shown:
                break
            n = int(clicks.get(position, 0))
            rows.append({"position": position, "impressions": shown, "clicks": n, "ctr": n / shown})
        out[surface] = rows
    return out


# --- the in-memory store: the same aggregates with polars ----------------------------------
def aggregate_frames(events: pl.DataFrame, impressions: pl.DataFrame, window_s: float) -> Aggregates:
    """`Aggregates` from the events and impressions already cut to the time range."""
    lists = impressions.with_columns(pl.col("item_ids").list.len().alias("n_items"),
                                     pl.coalesce("user_id", "session_id").alias("actor"))
    engaged = events.filter(pl.col("event_type").is_in(ENGAGED))
    clicks = (events.filter((pl.col("event_type") == "click") & pl.col("list_id").is_not_null())
              .select("item_id", "session_id", "user_id", pl.col("timestamp").alias("clicked"),
                      pl.col("list_id").alias("via")))
    later = engaged.filter(pl.col("list_id").is_null()).with_row_index("row")
    items_shown = (lists.select("list_id", "item_ids", "session_id", "user_id", pl.col("timestamp").alias("seen"))
                   .with_columns(pl.int_ranges(pl.col("item_ids").list.len()).alias("at"))
                   .explode("item_ids", "at").rename({"item_ids": "item_id", "at": "shown_at"})
                   .filter(pl.col("item_id").is_not_null()))
    first_at = items_shown.group_by("list_id", "item_id").agg(pl.col("shown_at").min())
    via_click = _latest(later.filter(pl.col("event_type") != "click"), clicks, "clicked", ["clicked"], window_s)
    via_list = _latest(later, items_shown.rename({"list_id": "via"}), "seen", ["seen", "via"], window_s)
    via = (later.select("row").join(via_click.rename({"via": "by_click"}), on="row", how="left")
           .join(via_list.rename({"via": "by_list"}), on="row", how="left")
           .select("row", pl.coalesce("by_click", "by_list").alias("via")).filter(pl.col("via").is_not_null()))
    credited = pl.concat([
        engaged.filter(pl.col("list_id").is_not_null()).select("event_type", "value", "position", "item_id", "list_id"),
        later.join(via, on="row").select("event_type", "value", "position", "item_id", pl.col("via").alias("list_id")),
    ])
    credited = (credited.join(first_at, on=["list_id", "item_id"], how="left")
                .with_columns(pl.coalesce(pl.col("position"), pl.col("shown_at").cast(pl.Int64)).alias("position")))
    shown = lists.select("list_id", *GROUP, "actor")
    joined = credited.join(shown, on="list_id")
    acted = joined.filter(pl.col("arm").is_not_null()).group_by("arm").agg(
        pl.col("actor").filter(pl.col("event_type") == "click").n_unique().alias("clicked"),
        pl.col("actor").filter(pl.col("event_type") == "purchase").n_unique().alias("bought"))
    return _typed(
        lists=lists.group_by(GROUP).agg(pl.len().alias("impressions"), (pl.col("n_items") == 0).sum().alias("zero_results"),
                                        pl.col("actor").n_unique().alias("visitors")),
        engaged=joined.group_by(GROUP).agg(
            (pl.col("event_type") == "click").sum().alias("clicks"),
            (pl.col("event_type") == "add_to_cart").sum().alias("carts"),
            (pl.col("event_type") == "purchase").sum().alias("purchases"),
            pl.when(pl.col("event_type") == "purchase").then(pl.col("value")).otherwise(0.0).fill_null(0.0).sum()
            .alias("revenue")),
        positions=joined.filter((pl.col("event_type") == "click") & pl.col("position").is_not_null())
        .group_by("surface", "position").agg(pl.len().alias("clicks")),
        lengths=lists.group_by("surface", "n_items").agg(pl.len().alias("impressions")),
        arms=lists.filter(pl.col("arm").is_not_null()).group_by("arm").agg(pl.col("actor").n_unique().alias("visitors"))
        .join(acted, on="arm", how="left").fill_null(0),
    )


def _latest(events: pl.DataFrame, sources: pl.DataFrame, when: str, order: list[str], window_s: float) -> pl.DataFrame:
    """(row, via): for each event, the `sources` row on its item by the same session (else,
    without a session, the same user) at most `window_s` before it, the latest by `order`
    (a stable sort: ties go to the later row, as the SQL's `seq`). `sources` has item_id,
    session_id, user_id, `when` and the list id `via`."""
    window = pl.col("timestamp") - window_s
    found = []
    for key in ("session_id", "user_id"):  # the session's first, else the user's
        side = events.filter(pl.col(key).is_not_null()) if key == "session_id" else \
            events.filter(pl.col("session_id").is_null() & pl.col("user_id").is_not_null())
        matched = side.join(sources.drop([k for k in ("session_id", "user_id") if k != key]), on=["item_id", key])
        matched = matched.filter((pl.col(when) <= pl.col("timestamp")) & (pl.col(when) >= window))
        found.append(matched.sort(order, maintain_order=True).group_by("row").agg(pl.col("via").last()))
    return pl.concat(found)


def _typed(**frames: pl.DataFrame) -> Aggregates:
    schemas = {"lists": LISTS, "engaged": ENGAGED_SCHEMA, "positions": POSITIONS, "lengths": LENGTHS, "arms": ARMS}
    return Aggregates(**{name: frame.select([pl.col(c).cast(t) for c, t in schemas[name].items()])
                         for name, frame in frames.items()})


def write_analytics_report(report: dict[str, Any], out_dir: Path) -> Path:
    """`out_dir/report.md` with the report's tables, and PNG charts of CTR and conversion by
    surface and of CTR by position."""
    surfaces = report["surfaces"]
    counts = {s: {k: v for k, v in m.items() if k in ("impressions", "clicks", "carts", "conversions", "revenue")}
              for s, m in surfaces.items()}
    rates = {s: {"ctr": m["ctr"], "conversion": m["conversion"]} for s, m in surfaces.items()}
    positions = {s: {f"#{r['position'] + 1}": r["ctr"] for r in rows} for s, rows in report["ctr_by_position"].items()}
    tables = [("Top queries", report["queries"]), ("Zero-result queries", report["zero_result_queries"]),
              ("Queries with the lowest click-through", report["low_ctr_queries"])]
    sections = [Section("Lists shown and what they led to, by surface", counts),
                Section("Click-through and conversion by surface", rates, chart="surfaces.png"),
                Section("Click-through by position", positions, chart="positions.png")]
    if report["arms"]:
        sections.append(Section("Experiment arms", {a: {k: v for k, v in m.items() if k != "zero_results"}
                                                    for a, m in report["arms"].items()}))
    sections += [Section(title, {row["query"]: {k: v for k, v in row.items() if k != "query"} for row in rows})
                 for title, rows in tables if rows]
    span = " to ".join(_when(t) for t in (report.get("since"), report.get("until")))
    return write_report(out_dir, "Search and recommendation analytics", sections, preamble=f"Time range: {span}. "
                        "A click, cart or purchase counts for the list whose list_id it carries; one without a "
                        "list_id counts for the last list that showed the item to the session within the "
                        "attribution window (a cart or purchase: first for the list of its click); see "
                        "shoplm/store/analytics.py.")


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "(open)"
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
