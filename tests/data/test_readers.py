"""CSV, JSON Lines and Parquet readers: row numbers, and unreadable records reported, not lost."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shoplm.errors import InputFileMissing, UnsupportedFileType
from shoplm.data.readers import RawRecord, count_rows, read_records


def test_csv_rows_are_line_numbers(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text('item_id,title\na,"multi\nline"\n\nb,Beta\nc\n')
    records = list(read_records(path))
    assert records[0] == RawRecord(2, {"item_id": "a", "title": "multi\nline"})
    assert records[1] == RawRecord(5, {"item_id": "b", "title": "Beta"})
    assert records[2].row == 6 and records[2].data is None and "expected 2" in records[2].error


def test_csv_invalid_utf8_is_one_bad_row(tmp_path):
    path = tmp_path / "items.csv"
    path.write_bytes(b"item_id,title\na,ok\nb,bad \xff\xfe\nc,fine\n")
    records = list(read_records(path))
    assert [r.row for r in records] == [2, 3, 4]
    assert records[1].data is None and "UTF-8" in records[1].error
    assert records[2].data == {"item_id": "c", "title": "fine"}


def test_jsonl(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"a": 1}\n\n[1, 2]\n{"a": \n{"a": NaN}\n\xff\n{"b": "x"}\n')
    records = list(read_records(path))
    assert [r.row for r in records] == [1, 3, 4, 5, 6, 7]
    assert records[0].data == {"a": 1}
    assert "JSON object" in records[1].error
    assert "malformed JSON" in records[2].error
    assert "malformed JSON" in records[3].error  # NaN is not JSON
    assert "UTF-8" in records[4].error
    assert records[5].data == {"b": "x"}


def test_deeply_nested_json_is_a_bad_record_not_a_crash(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    (record,) = read_records(path)
    assert record.data is None


def test_parquet_rows_are_one_based(tmp_path):
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": ["a", "b"], "price": [1.5, None]}), path)
    assert list(read_records(path)) == [RawRecord(1, {"item_id": "a", "price": 1.5}), RawRecord(2, {"item_id": "b", "price": None})]
    assert count_rows(path) == 2


def test_unknown_extension_lists_supported_ones(tmp_path):
    path = tmp_path / "items.xlsx"
    path.write_text("x")
    with pytest.raises(UnsupportedFileType, match=r"\.csv, \.jsonl, \.ndjson, \.parquet"):
        read_records(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileMissing, match="no such file"):
        read_records(tmp_path / "nope.csv")
