"""rees46 on a tiny log with known answers."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from shoplm.data.convert import convert
from shoplm.errors import ConvertError
from shoplm.store import open_store
from shoplm.store.ingest import ingest

HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
LOG = HEADER + (
    "2019-10-01 00:00:00 UTC,view,1307067,2053013558920217191,computers.notebook,lenovo,251.74,550050854,s1\n"
    "2019-10-01 00:00:05 UTC,cart,1307067,2053013558920217191,computers.notebook,lenovo,251.74,550050854,s1\n"
    "2019-10-01 00:01:00 UTC,purchase,1307067,2053013558920217191,computers.notebook,lenovo,249.00,550050854,s1\n"
    "2019-10-01 00:02:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,s2\n"
    "2019-10-01 00:03:00 UTC,remove_from_cart,44600062,2103807459595387724,,shiseido,35.79,541312140,s2\n"
    "2019-10-01 00:04:00 UTC,view,17200506,2053013559792632471,furniture.living_room.sofa,,543.10,519107250,\n"
    "2019-10-01 00:05:00 UTC,view,999,2053013559792632471,,,,519107250,s3\n"
)


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_events_items_and_counts(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "2019-Oct.csv").write_text(LOG + "2019-10-01 00:06:00 UTC,view,12", encoding="utf-8")  # cut off mid-row
    report = convert("rees46", src, tmp_path / "out")
    assert report.counts == {"rows": 7, "skipped": 1, "truncated": 1, "price_changes": 1, "events": 6, "items": 4,
                             "users": 3, "sessions": 3}
    events = rows(report.files["events"])
    assert [(e["timestamp"], e["event_type"], e["item_id"], e["session_id"], e["value"]) for e in events] == [
        ("2019-10-01T00:00:00Z", "view", "1307067", "s1", ""),
        ("2019-10-01T00:00:05Z", "add_to_cart", "1307067", "s1", ""),
        ("2019-10-01T00:01:00Z", "purchase", "1307067", "s1", "249.0"),  # the price paid
        ("2019-10-01T00:02:00Z", "view", "44600062", "s2", ""),
        ("2019-10-01T00:04:00Z", "view", "17200506", "", ""),
        ("2019-10-01T00:05:00Z", "view", "999", "s3", ""),
    ]
    items = {i["item_id"]: i for i in rows(report.files["items"])}
    assert items["1307067"] == {"item_id": "1307067", "title": "lenovo notebook", "category": "computers > notebook",
                                "brand": "lenovo", "price": "249.0", "category_id": "2053013558920217191"}
    assert (items["44600062"]["title"], items["44600062"]["category"]) == ("shiseido", "")
    assert items["17200506"]["title"] == "sofa" and items["17200506"]["category"] == "furniture > living room > sofa"
    assert items["999"]["title"] == "product 999" and items["999"]["price"] == ""
    result = ingest(open_store("memory://"), items=report.files["items"], events=report.files["events"])
    assert [(f.accepted, f.rejected) for f in result.files] == [(4, 0), (6, 0)]


@pytest.mark.parametrize(("text", "message"), [
    ("event_time,event_type,product_id\n", "expected the header"),
    (HEADER + "2019-10-01 00:00:00 UTC,wishlist,1,2,,,1.0,3,s\n", "event_type 'wishlist'"),
    (HEADER + "2019-10-01 00:00:00 UTC,view,1,2,,,cheap,3,s\n", "price 'cheap'"),
    (HEADER + "2019-10-01T00:00:00Z,view,1,2,,,1.0,3,s\n", "event_time"),
    (HEADER + "2019-10-01 00:00:00 UTC,view,1,2\n2019-10-01 00:00:00 UTC,view,1,2,,,1.0,3,s\n", "line 2"),
])
def test_bad_logs_name_the_file_and_line(tmp_path, text, message):
    log = tmp_path / "log.csv"
    log.write_text(text, encoding="utf-8")
    with pytest.raises(ConvertError, match=message):
        convert("rees46", log, tmp_path / "out")
    assert not (tmp_path / "out" / "events.csv").exists()
