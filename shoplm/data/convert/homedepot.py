"""Home Depot Product Search Relevance -> items and judgments.

Reads `products.csv` (`product_uid,title`) and `labels.csv` (`query,product_uid,
relevance`) from SRC. Writes `items.<ext>` (item_id, title) and `judgments.<ext>`
(query, item_id, relevance). The source rating is the mean of 1 (irrelevant) .. 3
(exact match) over raters; shoplm's relevance is a gain with 0 = irrelevant, so
relevance = rating - 1, in [0, 2]. It stays a float (means such as 2.33 are common),
rounded to 4 decimals so 2.33 - 1 is written as 1.33, not 1.3299999999999998.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterator

from shoplm.data.convert.base import ConvertReport, require_file
from shoplm.errors import ConvertError
from shoplm.data.writers import write_records

ITEM_COLUMNS = ["item_id", "title"]
JUDGMENT_COLUMNS = ["query", "item_id", "relevance"]
MIN_RATING, MAX_RATING = 1.0, 3.0  # the raters' scale


def convert(src: Path, out: Path, ext: str) -> ConvertReport:
    products = require_file(src / "products.csv", "the product titles (product_uid,title)")
    labels = require_file(src / "labels.csv", "the judged pairs (query,product_uid,relevance)")
    files = {"items": out / f"items.{ext}", "judgments": out / f"judgments.{ext}"}
    judgments = list(_judgment_rows(labels))
    counts = {
        "items": write_records(files["items"], ITEM_COLUMNS, _item_rows(products)),
        "judgments": write_records(files["judgments"], JUDGMENT_COLUMNS, judgments),
        "queries": len({query for query, _, _ in judgments}),
    }
    return ConvertReport(files, counts)


def _rows(path: Path, columns: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, values) of each record, after checking the header is `columns`."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if header != columns:
            raise ConvertError(f"{path} line 1: expected the header {','.join(columns)}, got {','.join(header)}")
        start = reader.line_num + 1
        for values in reader:
            line, start = start, reader.line_num + 1
            if not values:
                continue
            if len(values) != len(columns):
                raise ConvertError(f"{path} line {line}: expected {len(columns)} values ({','.join(columns)}), got {len(values)}")
            yield line, values


def _item_rows(path: Path) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for line, (product_uid, title) in _rows(path, ["product_uid", "title"]):
        product_uid, title = product_uid.strip(), title.strip()
        if not product_uid or not title or product_uid in seen:
            raise ConvertError(f"{path} line {line}: expected a new product_uid and a non-empty title, "
                               f"got {product_uid!r}, {title!r}")
        seen.add(product_uid)
        yield product_uid, title


def _judgment_rows(path: Path) -> Iterator[tuple[str, str, float]]:
    for line, (query, product_uid, rating) in _rows(path, ["query", "product_uid", "relevance"]):
        try:
            value = float(rating)
        except ValueError:
            value = math.nan
        if not query.strip() or not product_uid.strip() or not MIN_RATING <= value <= MAX_RATING:
            raise ConvertError(f"{path} line {line}: expected a query, a product_uid and a rating in "
                               f"[{MIN_RATING:g}, {MAX_RATING:g}], got {query!r}, {product_uid!r}, {rating!r}")
        yield query.strip(), product_uid.strip(), round(value - MIN_RATING, 4)
