"""ga4 on a day of a BigQuery export: one visit from search to purchase, another visitor, bad rows."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from shoplm.data.convert import convert
from shoplm.store import open_store
from shoplm.store.ingest import ingest

FIXTURES = Path(__file__).parents[2] / "fixtures" / "convert"
EXPORT = FIXTURES / "ga4" / "events_20240502.jsonl"
VISIT = "1197596843.1714550000-1714637700"  # user_pseudo_id-ga_session_id
OTHER = "88231405.1714400000-1714640000"
EVENTS = [  # (timestamp, user_id, session_id, event_type, item_id, query, position, value)
    ("2024-05-02T08:15:21.503211Z", "", VISIT, "search", "", "rain jacket", "", ""),
    ("2024-05-02T08:15:30.000000Z", "", VISIT, "click", "JKT-RAIN-M", "", "2", ""),
    ("2024-05-02T08:15:31.000000Z", "", VISIT, "view", "JKT-RAIN-M", "", "", ""),
    ("2024-05-02T08:17:02.000000Z", "", VISIT, "add_to_cart", "JKT-RAIN-M", "", "", ""),
    ("2024-05-02T08:24:10.000000Z", "cust-0042", VISIT, "purchase", "JKT-RAIN-M", "", "", "129.0"),  # item_revenue
    ("2024-05-02T08:24:10.000000Z", "cust-0042", VISIT, "purchase", "DRL-18V-01", "", "", "159.8"),  # 2 x 79.90
    ("2024-05-02T09:00:05.000000Z", "", OTHER, "view", "DRL-18V-01", "", "0", ""),  # event_timestamp quoted
]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_counts_reconcile_and_every_rejected_row_is_named(tmp_path):
    report = convert("ga4", EXPORT.parent, tmp_path)
    assert report.counts == {"read": 12, "accepted": 8, "rejected": 4, "skipped": 2, "events": 7, "items": 2,
                             "users": 1, "sessions": 2}  # skipped: session_start, page_view
    assert [str(r) for r in report.rejected] == [
        "events_20240502.jsonl:7: view_item without items[]; expected the item(s) it is about",
        "events_20240502.jsonl:8: malformed JSON (Expecting ',' delimiter)",
        "events_20240502.jsonl:11: event_timestamp 1714640460000; expected microseconds since 1970 (like 1714564800123456)",
        "events_20240502.jsonl:12: neither user_id nor user_pseudo_id; expected the visitor the event belongs to",
    ]


def test_events_types_times_sessions_positions_and_queries(tmp_path):
    report = convert("ga4", EXPORT, tmp_path)
    assert [tuple(e.values()) for e in rows(report.files["events"])] == EVENTS


def test_items_carry_the_newest_name_brand_and_category(tmp_path):
    items = rows(convert("ga4", EXPORT, tmp_path).files["items"])
    assert items == [
        {"item_id": "JKT-RAIN-M", "title": "Northfold Rain Shell Jacket, Navy, M", "category": "Clothing > Jackets > Rain Jackets",
         "brand": "Northfold", "price": "129.0", "item_variant": "Navy / M", "currency": "EUR"},
        {"item_id": "DRL-18V-01", "title": "Kestrel 18 V Cordless Drill Driver", "category": "Tools > Power Tools > Drills",
         "brand": "Kestrel Tools", "price": "79.9", "item_variant": "", "currency": "EUR"},  # a later "(not set)" brand keeps it
    ]


def test_a_json_array_export_gives_the_same_events(tmp_path):
    records = []
    for line in EXPORT.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    (tmp_path / "events.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    report = convert("ga4", tmp_path / "events.json", tmp_path / "out")
    assert (report.counts["read"], report.counts["rejected"]) == (11, 3)
    assert all(r.line > 1 for r in report.rejected)  # lines into the array, not record numbers
    assert [tuple(e.values()) for e in rows(report.files["events"])] == EVENTS


@pytest.mark.parametrize("catalog", ["own items", "merchant center feed"])
def test_converted_events_ingest_with_nothing_rejected(tmp_path, catalog):
    report = convert("ga4", EXPORT, tmp_path / "ga4")
    items = report.files["items"] if catalog == "own items" else convert(
        "merchant-center", FIXTURES / "merchant_center" / "feed.rss.xml", tmp_path / "mc").files["items"]
    store = open_store("memory://")
    result = ingest(store, items=items, events=report.files["events"])
    assert [f.rejected for f in result.files] == [0, 0] and result.files[1].accepted == 7
    visit = store.actor_events(session_id=VISIT)
    assert visit[0].timestamp == pytest.approx(1714637721.503211, abs=1e-6)  # microseconds -> seconds
    assert [(e.event_type, e.item_id, e.position) for e in visit][:2] == [("search", None, None), ("click", "JKT-RAIN-M", 2)]
    assert [e.value for e in store.actor_events(user_id="cust-0042")] == [129.0, pytest.approx(159.8)]


def test_a_gzipped_export_directory_reads_the_same(tmp_path):
    src = tmp_path / "export"
    src.mkdir()
    with gzip.open(src / "events_20240502.json.gz", "wt", encoding="utf-8") as handle:
        handle.write(EXPORT.read_text(encoding="utf-8"))
    report = convert("ga4", src, tmp_path / "out")
    assert report.counts["read"] == 12 and report.rejected[0].file == "events_20240502.json.gz"
    assert [tuple(e.values()) for e in rows(report.files["events"])] == EVENTS
