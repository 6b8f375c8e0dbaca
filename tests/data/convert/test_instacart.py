"""instacart on a tiny fixture with known answers, and on the real sample (slow)."""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from shoplm.data.convert import convert
from shoplm.errors import ConvertError, SourceFileMissing
from shoplm.store import open_store
from shoplm.store.ingest import ingest

FIXTURE = Path(__file__).parents[2] / "fixtures" / "instacart"


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def strictly_increasing_per_user(events: list[dict]) -> bool:
    last: dict[str, str] = {}
    for event in events:
        if event["user_id"] in last and event["timestamp"] <= last[event["user_id"]]:
            return False
        last[event["user_id"]] = event["timestamp"]
    return True


def copy_fixture(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "src"))


def test_counts_reconcile_and_the_bad_rows_are_named(tmp_path):
    report = convert("instacart", FIXTURE, tmp_path / "out")
    assert report.counts == {
        "aisles_read": 5, "aisles_accepted": 5, "aisles_rejected": 0,
        "departments_read": 2, "departments_accepted": 2, "departments_rejected": 0,
        "products_read": 11, "products_accepted": 10, "products_rejected": 1,
        "order_lines_read": 15, "order_lines_accepted": 14, "order_lines_rejected": 1,
        "rejected": 2, "items": 10, "events": 14, "users": 2, "sessions": 6, "reorders": 6,
        "capped_gaps": 1, "clamped_orders": 1,
    }
    assert [str(r) for r in report.rejected] == [
        "products.csv:2: aisle_id 77 is not in aisles.csv",
        "order_lines.csv:8: product_id 99999 is not an item of products.csv",
    ]
    assert rows(report.files["rejected"]) == [
        {"file": "products.csv", "line": "2", "reason": "aisle_id 77 is not in aisles.csv"},
        {"file": "order_lines.csv", "line": "8", "reason": "product_id 99999 is not an item of products.csv"},
    ]


def test_items_have_department_and_aisle_names_as_category(tmp_path):
    report = convert("instacart", FIXTURE, tmp_path / "out")
    items = {item["item_id"]: item for item in rows(report.files["items"])}
    assert len(items) == 10 and "196" not in items
    assert items["27845"] == {"item_id": "27845", "title": "Organic Whole Milk, Half Gallon",
                              "category": "dairy eggs > milk", "aisle_id": "84", "department_id": "16"}
    assert items["24852"]["category"] == "produce > fresh fruits"


def test_one_session_per_order_and_rebuilt_times(tmp_path):
    report = convert("instacart", FIXTURE, tmp_path / "out")
    events = rows(report.files["events"])
    assert [(e["timestamp"], e["user_id"], e["session_id"], e["event_type"], e["item_id"]) for e in events] == [
        # order 1: 2017-01-01 (a Sunday) + order_dow 2 days, at 8:00; cart lines 1 s apart
        ("2017-01-03T08:00:00Z", "u1", "o2539329", "purchase", "24852"),
        ("2017-01-03T08:00:01Z", "u1", "o2539329", "purchase", "13176"),
        # 15 days later, at 7:00 (a Wednesday, its order_dow 3)
        ("2017-01-18T07:00:00Z", "u1", "o2398795", "purchase", "24852"),
        ("2017-01-18T07:00:01Z", "u1", "o2398795", "purchase", "37646"),
        ("2017-01-18T07:00:02Z", "u1", "o2398795", "purchase", "5077"),
        # 0 days later at 12:00; the rejected cart line 2 keeps its second
        ("2017-01-18T12:00:00Z", "u1", "o473747", "purchase", "24852"),
        ("2017-01-18T12:00:02Z", "u1", "o473747", "purchase", "5077"),
        # 0 days later at 9:00 would be before the previous order: 60 s after its last line
        ("2017-01-18T12:01:02Z", "u1", "o2254736", "purchase", "37646"),
        ("2017-01-18T12:01:03Z", "u1", "o2254736", "purchase", "13176"),
        ("2017-01-03T11:00:00Z", "u2", "o2168274", "purchase", "47209"),
        ("2017-01-03T11:00:01Z", "u2", "o2168274", "purchase", "26209"),
        # days_since_prior_order 30 means 30 or more: 31 days lands on its order_dow 5 (Friday)
        ("2017-02-03T10:00:00Z", "u2", "o1501582", "purchase", "47209"),
        ("2017-02-03T10:00:01Z", "u2", "o1501582", "purchase", "21137"),
        ("2017-02-03T10:00:02Z", "u2", "o1501582", "purchase", "5876"),
    ]
    assert strictly_increasing_per_user(events)
    sessions = defaultdict(set)
    for event in events:
        sessions[event["session_id"]].add(event["user_id"])
    assert len(sessions) == 6 and all(len(users) == 1 for users in sessions.values())
    result = ingest(open_store("memory://"), items=report.files["items"], events=report.files["events"])
    assert [(f.accepted, f.rejected) for f in result.files] == [(10, 0), (14, 0)]


@pytest.mark.parametrize(("line", "reason"), [
    ("1,9,1,2,8,,24852,1,x", "reordered 'x'; expected a whole number"),
    ("1,9,1,2,8,,24852,,0", "add_to_cart_order is empty"),
    ("1,9,1,7,8,,24852,1,0", "order_dow '7'; expected a whole number from 0 to 6"),
    ("1,9,2,2,8,,24852,1,0", "days_since_prior_order is empty on order number 2; expected the days since user 9's "
                             "previous order (only order 1 has none)"),
    ("1,9,1,2,8,,24852,1.5,0", "add_to_cart_order '1.5'; expected a whole number"),
    ("1,9,2,2,8,7.5,24852,1,0", "days_since_prior_order '7.5'; expected a whole number"),
    ("1,9,1,2,8,,24852", "expected 9 values (one per header column), got 7"),
    ("2539329,1,1,2,9,,5876,3,0", "order 2539329 is (user_id, order_number, order_dow, order_hour_of_day, "
                                  "days_since_prior_order) (1, 1, 2, 8, empty) on line 2, here (1, 1, 2, 9, empty)"),
    ("2539329,1,1,2,8,,5876,2,0", "add_to_cart_order 2 of order 2539329 is already line 3"),
    ("7,1,2,4,8,2,5876,1,0", "user 1 already has an order number 2: order 2398795 on line 4"),
])
def test_bad_order_lines_are_rejected_with_line_and_why(tmp_path, line, reason):
    src = copy_fixture(tmp_path)
    with open(src / "order_lines.csv", "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    report = convert("instacart", src, tmp_path / "out")
    assert report.counts["order_lines_read"] == 16
    assert report.counts["order_lines_accepted"] + report.counts["order_lines_rejected"] == 16
    assert str(report.rejected[-1]) == f"order_lines.csv:17: {reason}"
    assert report.counts["events"] == 14


def test_bad_lookup_and_product_rows_are_rejected(tmp_path):
    src = copy_fixture(tmp_path)
    with open(src / "aisles.csv", "a", encoding="utf-8") as handle:
        handle.write('24,"fruit again"\nfive,"bad id"\n')
    with open(src / "products.csv", "a", encoding="utf-8") as handle:
        handle.write("24852,Banana again,24,4\n8,,24,4\n9,Ghost,24,3\n")
    report = convert("instacart", src, tmp_path / "out")
    assert [str(r) for r in report.rejected] == [
        "aisles.csv:7: aisle_id 24 is already used by line 3",
        "aisles.csv:8: aisle_id 'five'; expected a whole number",
        "products.csv:2: aisle_id 77 is not in aisles.csv",
        "products.csv:13: item_id '24852' is already taken by products.csv:4",
        "products.csv:14: field 'title': got ''; expected a non-empty string",
        "products.csv:15: department_id 3 is not in departments.csv",
        "order_lines.csv:8: product_id 99999 is not an item of products.csv",
    ]
    assert (report.counts["items"], report.counts["events"]) == (10, 14)


def test_a_missing_file_or_column_stops_the_conversion(tmp_path):
    src = copy_fixture(tmp_path)
    (src / "aisles.csv").unlink()
    with pytest.raises(SourceFileMissing, match="aisles.csv"):
        convert("instacart", src, tmp_path / "out")
    shutil.copy(FIXTURE / "aisles.csv", src / "aisles.csv")
    (src / "order_lines.csv").write_text("order_id,user_id,product_id\n1,1,24852\n", encoding="utf-8")
    with pytest.raises(ConvertError, match="order_lines.csv line 1: no column order_number"):
        convert("instacart", src, tmp_path / "out")
    assert not (tmp_path / "out" / "events.csv").exists()


@pytest.mark.slow
def test_real_instacart(tmp_path, data_dir):
    src = data_dir / "instacart"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    report = convert("instacart", src, tmp_path)
    counts = report.counts
    assert (counts["items"], counts["events"], counts["sessions"], counts["users"], counts["rejected"]) == (
        49_688, 150_000, 15_183, 593, 0)
    events = rows(report.files["events"])
    assert {e["event_type"] for e in events} == {"purchase"}
    assert strictly_increasing_per_user(events)
    assert len({e["session_id"] for e in events}) == 15_183
    # every order starts on its order_dow (0 = Sunday) at its order_hour_of_day
    orders = {f"o{row['order_id']}": (int(row["order_dow"]), int(row["order_hour_of_day"]))
              for row in rows(src / "order_lines.csv")}
    starts: dict[str, str] = {}
    for event in events:
        starts.setdefault(event["session_id"], event["timestamp"])
    for session, stamp in starts.items():
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert (moment.isoweekday() % 7, moment.hour) == orders[session]
    items = {item["item_id"]: item for item in rows(report.files["items"])}
    assert items["1"]["title"] == "Chocolate Sandwich Cookies" and items["1"]["category"] == "snacks > cookies cakes"
