"""REES46 "eCommerce behavior data from multi category store" -> items and events.

Reads the monthly logs (`event_time,event_type,product_id,category_id,category_code,brand,
price,user_id,user_session`, one row per event in time order) from SRC: one such `.csv`, or a
directory of them, read in name order (`2019-Nov.csv` after `2019-Oct.csv` would not sort
by time: name the files by `YYYY-MM` or pass one file).

- Events: `view` -> view, `cart` -> add_to_cart, `purchase` -> purchase (its `value` is the
  price paid); `user_session` is the session. `remove_from_cart` (in the cosmetics-shop logs)
  has no shoplm event type: such rows are counted as `skipped`, never dropped silently, so
  events + skipped = rows; a file cut off mid-row (the published samples are) has its last,
  partial row counted as `truncated`.
- Items: the log has no titles. An item's text is its brand and its category words
  (`computers.notebook` -> category `computers > notebook`, title `lenovo notebook`); an item
  with neither is titled `product <id>`. `category_id` is kept as an attribute. The price is
  the latest one seen: a price change is an update of the item, not an error
  (`price_changes` counts the items whose price changed).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from shoplm.data.convert.base import ConvertReport, require_file
from shoplm.data.writers import write_records
from shoplm.errors import ConvertError, SourceFileMissing

SOURCE_COLUMNS = ["event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price",
                  "user_id", "user_session"]
EVENT_TYPES = {"view": "view", "cart": "add_to_cart", "purchase": "purchase"}
SKIPPED_TYPES = {"remove_from_cart"}
ITEM_COLUMNS = ["item_id", "title", "category", "brand", "price", "category_id"]
EVENT_COLUMNS = ["timestamp", "user_id", "session_id", "event_type", "item_id", "value"]


def convert(src: Path, out: Path, ext: str) -> ConvertReport:
    logs = _logs(src)
    files = {"items": out / f"items.{ext}", "events": out / f"events.{ext}"}
    items: dict[str, list] = {}  # product_id -> [title, category, brand, price, category_id]
    counts = {"rows": 0, "skipped": 0, "truncated": 0, "price_changes": 0}
    changed: set[str] = set()
    users: set[str] = set()
    sessions: set[str] = set()

    def events() -> Iterator[tuple]:
        for path, line, row in _rows(logs, counts):
            counts["rows"] += 1
            kind = row["event_type"]
            if kind in SKIPPED_TYPES:
                counts["skipped"] += 1
                continue
            if kind not in EVENT_TYPES:
                raise ConvertError(f"{path} line {line}: event_type {kind!r}; expected one of "
                                   f"{', '.join([*EVENT_TYPES, *SKIPPED_TYPES])}")
            item_id, price = row["product_id"], _price(row["price"], path, line)
            item = _item(row, price)
            known = items.get(item_id)
            if known is not None and price is not None and known[3] != price:
                changed.add(item_id)
            items[item_id] = item if known is None else [*known[:3], price if price is not None else known[3], known[4]]
            if row["user_id"]:
                users.add(row["user_id"])
            if row["user_session"]:
                sessions.add(row["user_session"])
            value = price if EVENT_TYPES[kind] == "purchase" else None
            yield (_timestamp(row["event_time"], path, line), row["user_id"] or None, row["user_session"] or None,
                   EVENT_TYPES[kind], item_id, value)

    counts["events"] = write_records(files["events"], EVENT_COLUMNS, events())
    counts["items"] = write_records(files["items"], ITEM_COLUMNS, ([i, *v] for i, v in items.items()))
    counts.update(price_changes=len(changed), users=len(users), sessions=len(sessions))
    return ConvertReport(files, counts)


def _logs(src: Path) -> list[Path]:
    if src.is_dir():
        logs = sorted(src.glob("*.csv"))
        if not logs:
            raise SourceFileMissing(f"{src}: no .csv file; expected REES46 monthly logs ({','.join(SOURCE_COLUMNS)})")
        return logs
    return [require_file(src, f"a REES46 log ({','.join(SOURCE_COLUMNS)})")]


def _rows(logs: list[Path], counts: dict[str, int]) -> Iterator[tuple[Path, int, dict[str, str]]]:
    """(file, line, row) of every complete row. A short last line without a line end is a
    file cut off mid-row (the published samples are): counted as `truncated`, not an error."""
    for path in logs:
        cut = _ends_mid_line(path)
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            if header != SOURCE_COLUMNS:
                raise ConvertError(f"{path} line 1: expected the header {','.join(SOURCE_COLUMNS)}, got {','.join(header)}")
            short = None  # (line, values) of a short row, an error unless it is the file's cut-off end
            for values in reader:
                if short is not None:
                    raise _bad_row(path, *short)
                if not values:
                    continue
                if len(values) != len(SOURCE_COLUMNS) or not values[2]:
                    short = (reader.line_num, values)
                    continue
                yield path, reader.line_num, dict(zip(SOURCE_COLUMNS, (v.strip() for v in values)))
            if short is not None:
                if not (cut and len(short[1]) < len(SOURCE_COLUMNS)):
                    raise _bad_row(path, *short)
                counts["truncated"] += 1


def _bad_row(path: Path, line: int, values: list[str]) -> ConvertError:
    return ConvertError(f"{path} line {line}: expected {len(SOURCE_COLUMNS)} values with a product_id, got {values!r}")


def _ends_mid_line(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        if handle.tell() == 0:
            return False
        handle.seek(-1, 2)
        return handle.read(1) != b"\n"


def _item(row: dict[str, str], price: float | None) -> list:
    """[title, category, brand, price, category_id] of the row's product."""
    words = [part.replace("_", " ") for part in row["category_code"].split(".") if part]
    category = " > ".join(words) or None
    title = " ".join(part for part in (row["brand"], words[-1] if words else "") if part) or f"product {row['product_id']}"
    return [title, category, row["brand"] or None, price, row["category_id"] or None]


def _price(text: str, path: Path, line: int) -> float | None:
    if not text:
        return None
    try:
        price = float(text)
    except ValueError:
        price = -1.0
    if not price >= 0:
        raise ConvertError(f"{path} line {line}: price {text!r}; expected a number >= 0")
    return price


def _timestamp(text: str, path: Path, line: int) -> str:
    """"2019-10-01 00:00:05 UTC" -> "2019-10-01T00:00:05Z"."""
    day, _, rest = text.partition(" ")
    clock, _, zone = rest.partition(" ")
    if zone != "UTC" or len(day) != 10 or len(clock) != 8:
        raise ConvertError(f"{path} line {line}: event_time {text!r}; expected 'YYYY-MM-DD HH:MM:SS UTC'")
    return f"{day}T{clock}Z"
