"""DIGINETICA (CIKM Cup 2016) item views -> session view events.

Reads `train-item-views.csv` style logs (`session_id;user_id;item_id;timeframe;eventdate`)
from SRC, the file itself or a directory holding `sample_train-item-views.csv`. Writes
`events.<ext>` only: the log has ids but no item text, so ingest it with
`--allow-unknown-items`. `user_id` NA (anonymous) becomes an empty user_id.

`timeframe` is milliseconds since the session began and `eventdate` the day of the view,
with no time of day. The timestamp is the UTC midnight of the session's FIRST day plus the
timeframe, written as ISO-8601 with milliseconds (`2016-05-09T00:08:46.309Z`): a session
that crosses midnight (629 and 2205 in the sample) then stays continuous, where the
view's own day plus the timeframe would jump a day ahead. It keeps the order of views
within a session but is not the true wall-clock time. Rows keep their file order, which is not
time order: sort by timestamp to replay a session.
"""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from shoplm.data.convert.base import ConvertReport, require_file
from shoplm.errors import ConvertError
from shoplm.data.writers import write_records

FILE_NAME = "sample_train-item-views.csv"
SOURCE_COLUMNS = ["session_id", "user_id", "item_id", "timeframe", "eventdate"]
EVENT_COLUMNS = ["timestamp", "user_id", "session_id", "event_type", "item_id"]
ANONYMOUS = "NA"


def convert(src: Path, out: Path, ext: str) -> ConvertReport:
    log = require_file(src / FILE_NAME if src.is_dir() else src, f"the item-view log ({';'.join(SOURCE_COLUMNS)})")
    files = {"events": out / f"events.{ext}"}
    sessions: set[str] = set()
    users: set[str] = set()

    def rows() -> Iterator[tuple]:
        for row in _event_rows(log):
            sessions.add(row[2])
            if row[1] is not None:
                users.add(row[1])
            yield row

    counts = {"events": write_records(files["events"], EVENT_COLUMNS, rows())}
    counts.update(sessions=len(sessions), users=len(users))
    return ConvertReport(files, counts)


def _session_first_days(path: Path) -> dict[str, str]:
    """session_id -> its earliest eventdate (ISO dates sort as strings)."""
    first: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=";")
        next(reader, None)
        for values in reader:
            if len(values) == len(SOURCE_COLUMNS):
                session_id, day = values[0], values[4]
                if session_id not in first or day < first[session_id]:
                    first[session_id] = day
    return first


def _event_rows(path: Path) -> Iterator[tuple]:
    first_day = _session_first_days(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=";")
        header = [name.strip() for name in next(reader, [])]
        if header != SOURCE_COLUMNS:
            raise ConvertError(f"{path} line 1: expected the header {';'.join(SOURCE_COLUMNS)}, got {';'.join(header)}")
        for values in reader:
            line = reader.line_num
            if not values:
                continue
            if len(values) != len(SOURCE_COLUMNS) or not values[0] or not values[2]:
                raise ConvertError(f"{path} line {line}: expected {len(SOURCE_COLUMNS)} ';'-separated values "
                                   f"with a session_id and an item_id, got {values!r}")
            session_id, user_id, item_id, timeframe, eventdate = values
            timestamp = _timestamp(first_day.get(session_id, eventdate), timeframe, path, line)
            yield (timestamp, None if user_id in (ANONYMOUS, "") else user_id, session_id, "view", item_id)


def _timestamp(eventdate: str, timeframe: str, path: Path, line: int) -> str:
    """"2016-05-09", "526309" -> "2016-05-09T00:08:46.309Z"."""
    try:
        day = date.fromisoformat(eventdate)
        offset = timedelta(milliseconds=int(timeframe))
        if offset < timedelta(0):
            raise ValueError("negative timeframe")
    except ValueError:
        raise ConvertError(f"{path} line {line}: expected eventdate YYYY-MM-DD and timeframe in integer "
                           f"milliseconds, got {eventdate!r}, {timeframe!r}") from None
    moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + offset
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
