"""Readers for CSV, JSON Lines and Parquet, chosen by the file's extension.

Each reader yields `RawRecord(row, data, error)`: `row` is the 1-based line number for
text files (the header is line 1, so the first CSV record is row 2) and the 1-based row
index for Parquet. A record the reader itself cannot make sense of (malformed JSON, wrong
column count, undecodable bytes) comes back with `data=None` and an `error`, so that the
caller counts and reports it instead of losing it. Blank lines are not records.

`read_items`, `read_events` and `read_judgments` (through `read_valid`) are the strict form
for commands that need every record: any bad one stops them, counted and shown.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

from shoplm.data.records import Event, Item, Judgment, parse_event, parse_item, parse_judgment
from shoplm.errors import InputFileMissing, UnsupportedFileType, ValidationFailed

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long descriptions are legitimate


T = TypeVar("T")
_UNDECODED = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8


class RawRecord(NamedTuple):
    row: int
    data: dict[str, Any] | None
    error: str | None = None


def _read_csv(path: Path) -> Iterator[RawRecord]:
    # surrogateescape keeps undecodable bytes visible as lone surrogates, which we report
    # per row instead of aborting the whole file on the first bad byte.
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        header = [name.strip() for name in header]
        width = len(header)
        start = reader.line_num + 1
        for values in reader:
            row, start = start, reader.line_num + 1
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            if len(values) != width:
                yield RawRecord(row, None, f"expected {width} comma-separated columns ({', '.join(header)}), got {len(values)}")
            elif _UNDECODED.search("".join(values)):
                yield RawRecord(row, None, "the line is not valid UTF-8")
            else:
                yield RawRecord(row, dict(zip(header, values)))


def _read_jsonl(path: Path) -> Iterator[RawRecord]:
    with open(path, "rb") as handle:
        for row, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
            except UnicodeDecodeError:
                yield RawRecord(row, None, "the line is not valid UTF-8")
                continue
            except (ValueError, RecursionError) as exc:
                yield RawRecord(row, None, f"malformed JSON ({exc})")
                continue
            if not isinstance(data, dict):
                yield RawRecord(row, None, f"a JSON object per line, got {type(data).__name__}")
            else:
                yield RawRecord(row, data)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _read_parquet(path: Path) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
        for data in batch.to_pylist():
            row += 1
            yield RawRecord(row, data)


READERS: dict[str, Callable[[Path], Iterator[RawRecord]]] = {
    ".csv": _read_csv,
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".parquet": _read_parquet,
}


def _reader_for(path: Path) -> Callable[[Path], Iterator[RawRecord]]:
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise UnsupportedFileType(
            f"{path}: cannot read files ending in '{path.suffix or '(none)'}'; "
            f"expected one of {', '.join(READERS)}. Rename or convert the file."
        )
    return reader


def check_readable(path: Path) -> None:
    """Raise a clear error now if `path` is missing or has no reader (before anything is written)."""
    path = Path(path)
    _reader_for(path)
    if not path.is_file():
        raise InputFileMissing(f"{path}: no such file; check the path (relative paths start from {Path.cwd()})")


def read_records(path: Path) -> Iterator[RawRecord]:
    """Every record of `path`, in file order."""
    check_readable(path)
    return _reader_for(Path(path))(Path(path))


def count_rows(path: Path) -> int:
    """A cheap upper bound of the records in `path`, for progress bars."""
    path = Path(path)
    check_readable(path)
    if _reader_for(path) is _read_parquet:
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    lines = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


def read_valid(path: Path, parse: Callable[[dict], T | list], what: str) -> list[T]:
    """Every record of `path` parsed, for a command that cannot go on without all of them
    (training, evaluation, batch jobs): any bad record stops it with a `ValidationFailed`
    that counts them and shows the first five with file, row and field. (`shoplm ingest`
    instead stores the good records and reports the bad.)"""
    out, bad = [], []
    for raw in read_records(path):
        parsed = parse(raw.data) if raw.data is not None else [raw.error]
        if isinstance(parsed, list):
            bad.append(f"{path}:{raw.row}: " + "; ".join(str(p) for p in parsed))
        else:
            out.append(parsed)
    if bad:
        shown = "\n".join(bad[:5])
        raise ValidationFailed(f"{len(bad)} bad {what} record(s) in {path}, e.g.\n{shown}\n"
                               f"fix them, or run `shoplm ingest --{what} {path}` to see every problem")
    return out


def read_items(path: Path) -> list[Item]:
    return read_valid(Path(path), parse_item, "items")


def read_judgments(path: Path) -> list[Judgment]:
    return read_valid(Path(path), parse_judgment, "judgments")


def read_events(path: Path) -> list[Event]:
    return read_valid(Path(path), parse_event, "events")
