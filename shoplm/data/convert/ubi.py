"""OpenSearch User Behavior Insights (UBI 1.x) -> events.

Reads SRC: an events file, or a directory holding the events file(s) and, optionally,
the queries file(s) (a name containing "quer", as `ubi_queries.jsonl`). Each file is JSON
Lines or one JSON array; a record dumped from OpenSearch with its `_source` wrapper is
unwrapped.

- Events: `click` and `click_through` -> click, `add_to_cart`, `purchase`, `view` as
  themselves; item_id = `event_attributes.object.object_id`; position =
  `event_attributes.position.ordinal` (the schema's `{"index": 3}` or a bare number);
  query = the `user_query` of the event's `query_id` in the queries file, so a click
  carries the search it came from. `impression`, `watch` and actions of the shop's own
  (`product_hover`, `brand_filter`, ...) have no shoplm type: read and counted as `skipped`.
- Searches: each query record (query_id, user_query, timestamp) is a search event. An
  `on_search` event (the OpenSearch demo's, query text in `message`) is one only when the
  queries file does not have its query_id; otherwise it is skipped, the query already counted.
- user_id = `user_id`; session_id = `session_id`, else `client_id` (the browser: the closest
  thing to a visit the event names). A search takes the user and session of the first event
  of its query, else its own client_id.
- timestamp: as written (ISO-8601; one without an offset is UTC). Events are written in
  time order, a search before what followed it at the same instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoplm.data.convert.base import ConvertReport, Tally, finish, json_records, write_dicts
from shoplm.data.records import EVENT_FIELDS, parse_event
from shoplm.errors import SourceFileMissing

SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
WHAT = "UBI events (and queries) as JSON Lines or a JSON array"
ACTIONS = {"click": "click", "click_through": "click", "add_to_cart": "add_to_cart", "purchase": "purchase",
           "view": "view"}
SEARCH_ACTIONS = {"on_search", "search"}


def convert(src: Path, out: Path, ext: str) -> ConvertReport:
    event_files, query_files = _sources(src)
    queries_tally, events_tally = Tally("queries"), Tally("events")
    queries: dict[str, tuple[Path, int, dict[str, Any]]] = {}  # query_id -> (file, line, query record)
    for path in query_files:
        for line, record, error in json_records(path):
            queries_tally.read += 1
            try:
                query = _record(record, error)
                query_id = _text(query.get("query_id"))
                if not query_id:
                    raise ValueError("no query_id")
                if query_id in queries:
                    raise ValueError(f"query_id {query_id!r} is already used by line {queries[query_id][1]}")
            except ValueError as problem:
                queries_tally.reject(path, line, str(problem))
                continue
            queries[query_id] = (path, line, query)
    events: list[tuple[float, int, int, dict[str, Any]]] = []  # (seconds, 0 search / 1 other, order, row)
    actors: dict[str, tuple[str | None, str | None]] = {}  # query_id -> (user, session) of its first event
    skipped = 0
    for path in event_files:
        for line, record, error in json_records(path):
            events_tally.read += 1
            try:
                event = _record(record, error)
                row = _event(event, queries)
                seconds = _checked(row) if row else 0.0
            except ValueError as problem:
                events_tally.reject(path, line, str(problem))
                continue
            events_tally.accept()
            if row is None:
                skipped += 1
                continue
            events.append((seconds, row["event_type"] != "search", len(events), row))
            if _text(event.get("query_id")):
                actors.setdefault(_text(event["query_id"]), (row["user_id"], row["session_id"]))
    for query_id, (path, line, query) in queries.items():
        try:
            row = _search(query, actors.get(query_id))
            events.append((_checked(row), False, len(events), row))
        except ValueError as problem:
            queries_tally.reject(path, line, str(problem))
            continue
        queries_tally.accept()
    events.sort(key=lambda entry: entry[:3])
    rows = [row for *_, row in events]
    files = {"events": out / f"events.{ext}"}
    counts = {"skipped": skipped, "events": write_dicts(files["events"], rows, EVENT_FIELDS),
              "searches": sum(r["event_type"] == "search" for r in rows),
              "users": len({r["user_id"] for r in rows if r["user_id"]}),
              "sessions": len({r["session_id"] for r in rows if r["session_id"]})}
    return finish(out, ext, files, counts, queries_tally, events_tally)


def _sources(src: Path) -> tuple[list[Path], list[Path]]:
    """(event files, query files): a file is the events; a directory's files whose name has "quer" are queries."""
    if not src.is_dir():
        return [src], []
    found = sorted(p for p in src.iterdir() if p.is_file() and p.name.lower().endswith(SUFFIXES))
    events = [p for p in found if "quer" not in p.name.lower()]
    if not events:
        raise SourceFileMissing(f"{src}: no events file ({', '.join(SUFFIXES)}); expected {WHAT}")
    return events, [p for p in found if "quer" in p.name.lower()]


def _record(record: Any, error: str | None) -> dict[str, Any]:
    if error:
        raise ValueError(error)
    if isinstance(record, dict) and isinstance(record.get("_source"), dict):
        record = record["_source"]
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object (one UBI record)")
    return record


def _event(event: dict[str, Any], queries: dict[str, tuple[Path, int, dict[str, Any]]]) -> dict[str, Any] | None:
    """The events row of one UBI event, or None when shoplm has no type for its action."""
    action = _text(event.get("action_name"))
    if not action:
        raise ValueError("no action_name")
    attributes = event.get("event_attributes") or {}
    if not isinstance(attributes, dict):
        raise ValueError("event_attributes is not an object")
    query_id = _text(event.get("query_id"))
    known = queries.get(query_id) if query_id else None
    row = {"timestamp": event.get("timestamp"), **_actor(event, attributes), "item_id": None,
           "query": _text(known[2].get("user_query")) if known else None, "position": None, "value": None}
    if action in SEARCH_ACTIONS:
        if known:
            return None  # the query record is the search
        if not _text(event.get("message")):
            raise ValueError(f"{action} without a message (the query) and without a query record for its query_id")
        return {**row, "event_type": "search", "query": _text(event["message"])}
    if action not in ACTIONS:
        return None
    target = attributes.get("object") or {}
    item_id = _text(target.get("object_id")) if isinstance(target, dict) else None
    if not item_id:
        raise ValueError(f"{action} without event_attributes.object.object_id; expected the item acted on")
    return {**row, "event_type": ACTIONS[action], "item_id": item_id, "position": _position(attributes.get("position"))}


def _actor(record: dict[str, Any], attributes: dict[str, Any]) -> dict[str, str | None]:
    user = _text(record.get("user_id")) or _text(attributes.get("user_id"))
    session = _text(record.get("session_id")) or _text(attributes.get("session_id")) or _text(record.get("client_id"))
    return {"user_id": user, "session_id": session}


def _position(position: Any) -> int | None:
    """`{"ordinal": {"index": 3}}` (UBI 1.x) or `{"ordinal": 3}` -> 3; no ordinal (an x/y position) -> None."""
    if position is None:
        return None
    ordinal = position.get("ordinal") if isinstance(position, dict) else position
    if isinstance(ordinal, dict):
        ordinal = ordinal.get("index")
    if ordinal is None:
        return None
    if isinstance(ordinal, bool) or not isinstance(ordinal, int) or ordinal < 0:
        raise ValueError(f"event_attributes.position.ordinal {ordinal!r}; expected a whole number >= 0")
    return ordinal


def _search(query: dict[str, Any], actor: tuple[str | None, str | None] | None) -> dict[str, Any]:
    """The search event of one query record."""
    text = _text(query.get("user_query"))
    if not text:
        raise ValueError("no user_query; expected the query as the user entered it")
    user, session = actor if actor else (None, _text(query.get("client_id")))
    return {"timestamp": query.get("timestamp"), "user_id": user, "session_id": session, "event_type": "search",
            "item_id": None, "query": text, "position": None, "value": None}


def _checked(row: dict[str, Any]) -> float:
    """The event's time in Unix seconds, or a `ValueError` with everything ingest would refuse in it."""
    parsed = parse_event(row)
    if isinstance(parsed, list):
        raise ValueError("; ".join(str(problem) for problem in parsed))
    return parsed.timestamp


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text or None
