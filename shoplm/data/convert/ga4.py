"""Google Analytics 4's BigQuery export -> events (and the items they name).

Reads SRC, one file or a directory of them (name order) of the `events_YYYYMMDD` table as
newline-delimited JSON (`.json`, `.jsonl`, `.ndjson`, optionally `.gz`) or as one JSON array.

- `view_item` -> view, `select_item` -> click, `add_to_cart` -> add_to_cart, `purchase` ->
  purchase: one event per entry of `items[]`, item_id = `items[].item_id`, position =
  `items[].item_list_index` (the export's name; `index` as gtag sends it is read too), and
  for a purchase value = `item_revenue`, else price x quantity.
- `view_search_results` and `search` -> one search event, query = the `search_term` parameter.
- Every other event (page_view, session_start, view_item_list, begin_checkout, ...) has no
  shoplm counterpart: it is read and counted as `skipped`, not rejected.
- timestamp = `event_timestamp` (microseconds, UTC) as ISO-8601 with microseconds.
- user_id = `user_id` (set only for signed-in visitors); session_id = `user_pseudo_id` and
  the `ga_session_id` parameter (`1197596843.1714550000-1714559000`), or `user_pseudo_id` alone
  when the event has no session (measurement-protocol hits).
- Events are written in time order; GA4's `(not set)` is a missing value.
- items: the newest name, brand, category path (`item_category` > ... > `item_category5`),
  price, `item_variant` and currency seen for each item_id; an item without a name is
  titled `product <id>`. Ingest this file only without a catalog feed: it would replace the
  feed's richer items.
A record that cannot be mapped (no items on an item event, an item without item_id, a
timestamp not in microseconds, neither user nor session) is rejected with its line.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shoplm.data.convert.base import (ITEM_COLUMNS, ConvertReport, Tally, event_problem, finish, item_problem,
                                      json_records, source_files, write_dicts)
from shoplm.data.records import EVENT_FIELDS, MAX_TIMESTAMP

SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
WHAT = "a GA4 BigQuery export (events_YYYYMMDD as newline-delimited JSON)"
ITEM_EVENTS = {"view_item": "view", "select_item": "click", "add_to_cart": "add_to_cart", "purchase": "purchase"}
SEARCH_EVENTS = {"view_search_results", "search"}
NOT_SET = "(not set)"
MIN_MICROS = 10**15  # 2001-09-09 in microseconds: a smaller event_timestamp is in ms or s


def convert(src: Path, out: Path, ext: str) -> ConvertReport:
    tally, events, items, skipped = Tally(), [], {}, 0
    for path in source_files(src, SUFFIXES, WHAT):
        for line, record, error in json_records(path):
            tally.read += 1
            try:
                if error:
                    raise ValueError(error)
                mapped, record_items = _events(record)
                problem = next((p for p in map(event_problem, mapped) if p), None) or next(
                    (p for p in (item_problem(_titled(i), {}, "") for i in record_items) if p), None)
                if problem:
                    raise ValueError(problem)
            except ValueError as problem:
                tally.reject(path, line, str(problem))
                continue
            tally.accept()
            skipped += not mapped
            events.extend((event["timestamp"], len(events), event) for event in mapped)
            items.update({i["item_id"]: {**items.get(i["item_id"], {}), **i} for i in record_items})
    events.sort(key=lambda entry: entry[:2])
    rows = [event for _, _, event in events]
    named = {e["item_id"] for e in rows if e["item_id"]}
    files = {"events": out / f"events.{ext}", "items": out / f"items.{ext}"}
    counts = {"skipped": skipped, "events": write_dicts(files["events"], rows, EVENT_FIELDS),
              "items": write_dicts(files["items"], [_titled(i) for i in items.values() if i["item_id"] in named],
                                   ITEM_COLUMNS),
              "users": len({e["user_id"] for e in rows if e["user_id"]}),
              "sessions": len({e["session_id"] for e in rows if e["session_id"]})}
    return finish(out, ext, files, counts, tally)


def _events(record: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(events, items) of one export row; no events for a GA4 event shoplm has no type for."""
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object (one GA4 event)")
    name = record.get("event_name")
    if name not in ITEM_EVENTS and name not in SEARCH_EVENTS:
        if not isinstance(name, str) or not name:
            raise ValueError("no event_name")
        return [], []
    params = _params(record.get("event_params"))
    base = {"timestamp": _timestamp(record.get("event_timestamp")), **_actor(record, params),
            "item_id": None, "query": None, "position": None, "value": None}
    if name in SEARCH_EVENTS:
        query = _text(params.get("search_term"))
        if not query:
            raise ValueError(f"{name} without a search_term parameter")
        return [{**base, "event_type": "search", "query": query}], []
    entries = record.get("items")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{name} without items[]; expected the item(s) it is about")
    events, items = [], []
    for number, entry in enumerate(entries):
        item_id = _text(entry.get("item_id")) if isinstance(entry, dict) else None
        if not item_id:
            raise ValueError(f"items[{number}] has no item_id")
        value = _value(entry) if name == "purchase" else None
        events.append({**base, "event_type": ITEM_EVENTS[name], "item_id": item_id, "position": _position(entry),
                       "value": value})
        items.append(_item(item_id, entry, _text(params.get("currency"))))
    return events, items


def _params(params: Any) -> dict[str, Any]:
    """`[{"key": "ga_session_id", "value": {"int_value": 1714559000}}, ...]` -> {"ga_session_id": 1714559000}."""
    if params is None:
        return {}
    if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
        raise ValueError("event_params is not a list of {key, value} objects")
    out = {}
    for param in params:
        value = param.get("value") if isinstance(param.get("value"), dict) else {}
        out[param.get("key")] = next((value[k] for k in ("string_value", "int_value", "float_value", "double_value")
                                      if value.get(k) is not None), None)
    return out


def _timestamp(value: Any) -> str:
    """event_timestamp (microseconds since 1970, UTC; the JSON export may quote it) -> ISO-8601."""
    expected = f"event_timestamp {value!r}; expected microseconds since 1970 (like 1714564800123456)"
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise ValueError(expected)
    micros = int(value)
    if not MIN_MICROS <= micros < MAX_TIMESTAMP * 1_000_000:
        raise ValueError(expected)
    moment = datetime.fromtimestamp(micros // 1_000_000, tz=timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{micros % 1_000_000:06d}Z"


def _actor(record: dict[str, Any], params: dict[str, Any]) -> dict[str, str | None]:
    user, pseudo = _text(record.get("user_id")), _text(record.get("user_pseudo_id"))
    session = params.get("ga_session_id")
    if not user and not pseudo:
        raise ValueError("neither user_id nor user_pseudo_id; expected the visitor the event belongs to")
    session_id = f"{pseudo}-{session}" if pseudo and _text(session) else pseudo
    return {"user_id": user, "session_id": session_id}


def _position(entry: dict[str, Any]) -> int | None:
    value = entry.get("item_list_index", entry.get("index"))
    if value is None or _text(value) is None:
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        raise ValueError(f"item_list_index {value!r}; expected a whole number >= 0")
    return int(text)


def _value(entry: dict[str, Any]) -> float | None:
    """What a purchased item brought in: item_revenue, else price x quantity."""
    revenue, price, quantity = entry.get("item_revenue"), entry.get("price"), entry.get("quantity") or 1
    for what, number in (("item_revenue", revenue), ("price", price), ("quantity", quantity)):
        if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))):
            raise ValueError(f"items[].{what} {number!r}; expected a number")
    if revenue is not None:
        return float(revenue)
    return float(price) * quantity if price is not None else None


def _item(item_id: str, entry: dict[str, Any], currency: str | None) -> dict[str, Any]:
    categories = [_text(entry.get(f"item_category{n}")) for n in ("", "2", "3", "4", "5")]
    price = entry.get("price")
    return {key: value for key, value in {
        "item_id": item_id, "title": _text(entry.get("item_name")),
        "brand": _text(entry.get("item_brand")), "category": " > ".join(c for c in categories if c) or None,
        "price": price if isinstance(price, (int, float)) and not isinstance(price, bool) else None,
        "item_variant": _text(entry.get("item_variant")), "currency": currency,
    }.items() if value is not None}


def _titled(item: dict[str, Any]) -> dict[str, Any]:
    """An item whose events never gave its `item_name` is titled `product <id>` (as rees46's are)."""
    return item if "title" in item else {**item, "title": f"product {item['item_id']}"}


def _text(value: Any) -> str | None:
    """A GA4 string (or id number) as text; None for missing, empty and "(not set)"."""
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text if text and text != NOT_SET else None
