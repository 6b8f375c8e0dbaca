"""diginetica on a tiny log and on the SR-GNN sample (slow)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from shoplm.data.convert import convert
from shoplm.errors import ConvertError

LOG = (
    "session_id;user_id;item_id;timeframe;eventdate\n"
    "1;NA;81766;526309;2016-05-09\n"
    "1;NA;31331;1031018;2016-05-09\n"
    "1;NA;32118;243569;2016-05-09\n"  # earlier than the line above: file order is kept
    "2;1042;9654;0;2016-05-10\n"
)


def write_log(src: Path, text: str = LOG) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    (src / "sample_train-item-views.csv").write_text(text, encoding="utf-8")
    return src


def read_events(path: Path) -> list[tuple]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [tuple(row.values()) for row in csv.DictReader(handle)]


def test_views_keep_file_order_with_iso_timestamps(tmp_path):
    report = convert("diginetica", write_log(tmp_path / "src"), tmp_path / "out")
    assert report.files == {"events": tmp_path / "out" / "events.csv"}
    assert report.counts == {"events": 4, "sessions": 2, "users": 1}
    assert read_events(report.files["events"]) == [
        ("2016-05-09T00:08:46.309Z", "", "1", "view", "81766"),
        ("2016-05-09T00:17:11.018Z", "", "1", "view", "31331"),
        ("2016-05-09T00:04:03.569Z", "", "1", "view", "32118"),
        ("2016-05-10T00:00:00.000Z", "1042", "2", "view", "9654"),
    ]


def test_src_may_be_the_log_file_itself(tmp_path):
    log = write_log(tmp_path / "src") / "sample_train-item-views.csv"
    assert convert("diginetica", log, tmp_path / "out").counts["events"] == 4


def test_bad_timeframe_names_the_line(tmp_path):
    src = write_log(tmp_path / "src", LOG + "3;NA;1;soon;2016-05-11\n")
    with pytest.raises(ConvertError, match=r"line 6: .*'soon'"):
        convert("diginetica", src, tmp_path / "out")


def test_wrong_separator_is_reported_as_a_header_problem(tmp_path):
    src = write_log(tmp_path / "src", LOG.replace(";", ","))
    with pytest.raises(ConvertError, match="line 1: expected the header session_id;user_id"):
        convert("diginetica", src, tmp_path / "out")


@pytest.mark.slow
def test_real_sample(tmp_path, data_dir):
    src = data_dir / "diginetica-sample"
    report = convert("diginetica", src, tmp_path)
    assert (report.counts["events"], report.counts["sessions"]) == (12_391, 2_986)
    events = read_events(report.files["events"])
    assert len(events) == 12_391 and len({e[2] for e in events}) == 2_986
    assert events[0] == ("2016-05-09T00:08:46.309Z", "", "1", "view", "81766")


def test_session_crossing_midnight_stays_continuous(tmp_path):
    log = ("session_id;user_id;item_id;timeframe;eventdate\n"
           "629;NA;1838;1166856;2016-03-21\n"  # 19 min after the session began, the next day
           "629;NA;17672;49702;2016-03-20\n")
    report = convert("diginetica", write_log(tmp_path / "src", log), tmp_path / "out")
    stamps = [e[0] for e in read_events(report.files["events"])]
    assert stamps == ["2016-03-20T00:19:26.856Z", "2016-03-20T00:00:49.702Z"]
