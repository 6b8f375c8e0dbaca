"""Writers for CSV, JSON Lines and Parquet, chosen by the file's extension.

The mirror of `readers.py`: every file a converter writes can be read back by
`read_records`. A missing value is `None` (or `""`): CSV writes it as an empty field,
JSON Lines omits the key, Parquet stores a null. Every writer works on a temporary file
in the target's directory and renames it over the target at the end, so a crash or a
bad record never leaves a half-written `events.csv` that ingestion would then trust.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from shoplm.errors import UnsupportedFileType, WriteError


def _checked(columns: list[str], rows: Iterable[Sequence]) -> Iterator[Sequence]:
    """Yield each row after checking it has one value per column: zip() would drop or
    pad values silently and shift every later column."""
    width = len(columns)
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise WriteError(
                f"record {number} has {len(row)} values but the columns are {', '.join(columns)} "
                f"({width}); pass one value per column, None for a missing one"
            )
        yield row


def _write_csv(path: Path, columns: list[str], rows: Iterable[Sequence]) -> int:
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(columns)
        for row in _checked(columns, rows):
            writer.writerow(["" if value is None else value for value in row])
            count += 1
    return count


def _write_jsonl(path: Path, columns: list[str], rows: Iterable[Sequence]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in _checked(columns, rows):
            record = {name: value for name, value in zip(columns, row) if value is not None and value != ""}
            # allow_nan=False: NaN is not JSON and the readers reject it.
            handle.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
            count += 1
    return count


def _write_parquet(path: Path, columns: list[str], rows: Iterable[Sequence]) -> int:
    """Materialises the rows (fine for the converters' 10^4-10^5 rows) and lets pyarrow
    type each column from its values: strings stay strings (an id like "0012" is never
    read as a number), ints and floats keep their type, an all-missing column is string."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    values: list[list[Any]] = [[] for _ in columns]
    for row in _checked(columns, rows):
        for column, value in zip(values, row):
            column.append(None if value == "" else value)
    arrays = [_arrow_column(pa, column) for column in values]
    pq.write_table(pa.table(arrays, names=columns), path)
    return len(values[0]) if values else 0


def _arrow_column(pa: Any, values: list[Any]) -> Any:
    if all(value is None for value in values):
        return pa.array(values, type=pa.string())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed types in one column (3 and "3"): strings are the one lossless common type.
        return pa.array([None if value is None else str(value) for value in values], type=pa.string())


WRITERS: dict[str, Callable[[Path, list[str], Iterable[Sequence]], int]] = {
    ".csv": _write_csv,
    ".jsonl": _write_jsonl,
    ".parquet": _write_parquet,
}


def write_records(path: Path, columns: list[str], rows: Iterable[Sequence]) -> int:
    """Write `rows` (one value per column, in `columns` order) to `path` and return how
    many were written. The format follows the extension; see `WRITERS`."""
    path = Path(path)
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise UnsupportedFileType(
            f"{path}: cannot write files ending in '{path.suffix or '(none)'}'; "
            f"expected one of {', '.join(WRITERS)}. Change the output file name."
        )
    # Not tempfile.mkstemp: its 0600 mode would stick to the renamed file.
    temp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        count = writer(temp, columns, rows)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return count
