"""homedepot on tiny CSVs and on the real data (slow); also `convert()`'s registry and
the writers' round trip, which every converter goes through."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from shoplm.data.convert import CONVERTERS, FILE_FORMATS, convert
from shoplm.errors import ConvertError, SourceFileMissing, UnknownConverter, UnsupportedFileType, WriteError
from shoplm.data.writers import WRITERS, write_records

PRODUCTS = 'product_uid,title\n100001,Simpson Strong-Tie 12-Gauge Angle\n100002,"BEHR Premium, Textured DeckOver"\n'
LABELS = "query,product_uid,relevance\nangle bracket,100001,3\ndeck over,100002,2.33\ndeck over,100001,1\n"


def write_homedepot(src: Path, labels: str = LABELS) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    (src / "products.csv").write_text(PRODUCTS, encoding="utf-8")
    (src / "labels.csv").write_text(labels, encoding="utf-8")
    return src


def read_back(path: Path) -> list[dict]:
    """Rows of a written file through the format's own library, not shoplm's readers."""
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return pq.read_table(path).to_pylist()


def test_items_and_shifted_relevance(tmp_path):
    report = convert("homedepot", write_homedepot(tmp_path / "src"), tmp_path / "out")
    assert report.files == {"items": tmp_path / "out/items.csv", "judgments": tmp_path / "out/judgments.csv"}
    assert report.counts == {"items": 2, "judgments": 3, "queries": 2}
    assert read_back(report.files["items"])[1] == {"item_id": "100002", "title": "BEHR Premium, Textured DeckOver"}
    judgments = read_back(report.files["judgments"])
    assert [(j["query"], j["item_id"], float(j["relevance"])) for j in judgments] == [
        ("angle bracket", "100001", 2.0), ("deck over", "100002", 1.33), ("deck over", "100001", 0.0),
    ]
    assert judgments[1]["relevance"] == "1.33"  # rounded, not 1.3299999999999998


@pytest.mark.parametrize("file_format", FILE_FORMATS)
def test_every_file_format_round_trips(tmp_path, file_format):
    report = convert("homedepot", write_homedepot(tmp_path / "src"), tmp_path / "out", file_format)
    assert report.files["items"].name == f"items.{file_format}"
    judgments = read_back(report.files["judgments"])
    assert [(j["query"], j["item_id"], float(j["relevance"])) for j in judgments][1] == ("deck over", "100002", 1.33)
    assert [set(j) for j in judgments] == [{"query", "item_id", "relevance"}] * 3


def test_a_rating_off_the_scale_names_the_line(tmp_path):
    src = write_homedepot(tmp_path / "src", LABELS + "fence,100002,4\n")
    with pytest.raises(ConvertError, match=r"labels\.csv line 5: .* rating in \[1, 3\]"):
        convert("homedepot", src, tmp_path / "out")


def test_missing_labels_file_is_named(tmp_path):
    src = write_homedepot(tmp_path / "src")
    (src / "labels.csv").unlink()
    with pytest.raises(SourceFileMissing, match=r"labels\.csv"):
        convert("homedepot", src, tmp_path / "out")


def test_unknown_format_lists_the_registered_ones(tmp_path):
    with pytest.raises(UnknownConverter) as error:
        convert("amazon", tmp_path, tmp_path / "out")
    assert all(name in str(error.value) for name in CONVERTERS)
    with pytest.raises(UnsupportedFileType, match="csv, jsonl, parquet"):
        convert("homedepot", tmp_path, tmp_path / "out", "xlsx")
    with pytest.raises(SourceFileMissing, match="nowhere"):
        convert("homedepot", tmp_path / "nowhere", tmp_path / "out")


# --- writers.py ------------------------------------------------------------------

ROWS = [("a1", "Saw, 10\"", None, 3, 1.5), ("a2", "Drill", "", 0, 0.25)]


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_writers_round_trip(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    assert write_records(path, ["id", "title", "brand", "n", "x"], ROWS) == 2
    rows = read_back(path)
    if suffix == ".csv":  # text: missing is an empty field
        assert rows == [{"id": "a1", "title": 'Saw, 10"', "brand": "", "n": "3", "x": "1.5"},
                        {"id": "a2", "title": "Drill", "brand": "", "n": "0", "x": "0.25"}]
    elif suffix == ".jsonl":  # missing keys are left out
        assert rows == [{"id": "a1", "title": 'Saw, 10"', "n": 3, "x": 1.5}, {"id": "a2", "title": "Drill", "n": 0, "x": 0.25}]
    else:  # typed columns, missing is null
        assert rows == [{"id": "a1", "title": 'Saw, 10"', "brand": None, "n": 3, "x": 1.5},
                        {"id": "a2", "title": "Drill", "brand": None, "n": 0, "x": 0.25}]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def test_parquet_keeps_string_ids_as_strings(tmp_path):
    write_records(tmp_path / "a.parquet", ["item_id", "mixed"], [("0012", 1), ("0013", "x")])
    table = pq.read_table(tmp_path / "a.parquet")
    assert table.column("item_id").to_pylist() == ["0012", "0013"]
    assert table.column("mixed").to_pylist() == ["1", "x"]


def test_unknown_extension_lists_the_writers(tmp_path):
    with pytest.raises(UnsupportedFileType, match=r"\.csv, \.jsonl, \.parquet"):
        write_records(tmp_path / "out.xlsx", ["a"], [])


def test_a_failed_write_leaves_the_old_file_alone(tmp_path):
    path = tmp_path / "items.csv"
    write_records(path, ["item_id"], [("old",)])
    with pytest.raises(WriteError, match="record 2 has 2 values"):
        write_records(path, ["item_id"], [("new",), ("x", "y")])
    assert read_back(path) == [{"item_id": "old"}]
    assert [p.name for p in tmp_path.iterdir()] == ["items.csv"]


# --- the real data set -------------------------------------------------------------


@pytest.mark.slow
def test_real_homedepot(tmp_path, data_dir):
    src = data_dir / "homedepot"
    report = convert("homedepot", src, tmp_path)
    assert (report.counts["items"], report.counts["judgments"]) == (54_667, 59_363)
    relevance = [float(j["relevance"]) for j in read_back(report.files["judgments"])]
    assert len(relevance) == 59_363 and min(relevance) == 0.0 and max(relevance) == 2.0
