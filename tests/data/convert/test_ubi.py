"""ubi on an events file (a JSON array) and its queries file (JSON Lines)."""

from __future__ import annotations

import csv
from pathlib import Path

from shoplm.data.convert import convert
from shoplm.store import open_store
from shoplm.store.ingest import ingest

FIXTURES = Path(__file__).parents[2] / "fixtures" / "convert"
EVENTS = [  # (timestamp, user_id, session_id, event_type, item_id, query, position, value)
    ("2024-05-02T09:00:00Z", "", "s-77", "search", "", "cordless drill", "", ""),  # the query record, in its events' session
    ("2024-05-02T09:00:05Z", "", "s-77", "click", "DRL-18V-01", "cordless drill", "0", ""),  # ordinal {"index": 0}
    ("2024-05-02T09:01:10Z", "", "s-77", "add_to_cart", "DRL-18V-01", "cordless drill", "", ""),  # an x/y position
    ("2024-05-02T09:05:00Z", "u-9", "s-77", "purchase", "DRL-18V-01", "cordless drill", "", ""),
    ("2024-05-02T11:29:40+02:00", "", "c-91bd", "search", "", "rain jacket", "", ""),  # no session_id: the client_id
    ("2024-05-02T11:30:00+02:00", "", "c-91bd", "click", "JKT-RAIN-L", "rain jacket", "2", ""),  # ordinal 2
    ("2024-05-02T09:40:00Z", "", "s-80", "search", "", "pull saw", "", ""),  # on_search without a query record
]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_counts_reconcile_and_every_rejected_record_is_named(tmp_path):
    report = convert("ubi", FIXTURES / "ubi", tmp_path)
    assert report.counts == {"queries_read": 3, "queries_accepted": 2, "queries_rejected": 1,
                             "events_read": 9, "events_accepted": 7, "events_rejected": 2, "rejected": 3,
                             "skipped": 2, "events": 7, "searches": 3, "users": 1, "sessions": 3}  # impression, product_hover
    assert [str(r) for r in report.rejected] == [
        "ubi_queries.jsonl:3: no user_query; expected the query as the user entered it",
        "ubi_events.json:24: click without event_attributes.object.object_id; expected the item acted on",
        "ubi_events.json:26: field 'timestamp': got 'yesterday afternoon'; expected ISO-8601 (2024-05-01T12:00:00Z) "
        "or Unix seconds between 1970 and 2200",
    ]


def test_clicks_carry_their_query_and_events_are_in_time_order(tmp_path):
    report = convert("ubi", FIXTURES / "ubi", tmp_path)
    assert [tuple(e.values()) for e in rows(report.files["events"])] == EVENTS


def test_events_without_the_queries_file(tmp_path):
    report = convert("ubi", FIXTURES / "ubi" / "ubi_events.json", tmp_path)
    assert (report.counts["events_read"], report.counts["events"], report.counts["searches"]) == (9, 5, 1)
    assert [(e["event_type"], e["item_id"], e["query"]) for e in rows(report.files["events"])] == [
        ("click", "DRL-18V-01", ""), ("add_to_cart", "DRL-18V-01", ""), ("purchase", "DRL-18V-01", ""),
        ("click", "JKT-RAIN-L", ""), ("search", "", "pull saw")]  # 11:30+02:00 is 09:30Z, before the 09:40Z search


def test_converted_events_ingest_against_the_catalog_with_nothing_rejected(tmp_path):
    catalog = convert("merchant-center", FIXTURES / "merchant_center" / "feed.tsv", tmp_path / "mc").files["items"]
    report = convert("ubi", FIXTURES / "ubi", tmp_path / "ubi", "jsonl")
    store = open_store("memory://")
    result = ingest(store, items=catalog, events=report.files["events"])
    assert [(f.accepted, f.rejected) for f in result.files] == [(4, 0), (7, 0)]
    click = [e for e in store.actor_events(session_id="c-91bd") if e.event_type == "click"][0]
    assert (click.timestamp, click.query, click.position) == (1714642200.0, "rain jacket", 2)
