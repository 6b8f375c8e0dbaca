"""WooCommerce's product CSV export -> items.

One row per product; a variable product's variations follow as rows of Type `variation`
whose `Parent` names it (`id:44`, or its SKU).

- item_id = SKU, else ID. A variation is an item with `group_id` = its parent's item_id; a
  variable product with variations in the file is not an item itself (it cannot be bought),
  one without any is. Simple, grouped and external products are items.
- title = Name (a variation without one: the parent's Name and its attribute values);
  description = Description as text, else Short description (the other is kept as
  `short_description`).
- category = the first of Categories (`"Clothing > Hoodies, Sale"`: paths split at commas,
  `\\,` is a comma inside a name), all of them kept as `categories` when there are several;
  brand = Brands (WooCommerce 9.6+), else an attribute named Brand.
- price = Sale price when given, else Regular price; the regular price is kept as
  `regular_price` whenever the sale price is used.
- available = `In stock?` 1 or backorder (0 is out of stock), Published 1 (0 is private,
  -1 a draft) and `Visibility in catalog` not hidden; a variation also needs its parent
  published.
- image_url = the first of Images (a comma list), the rest `additional_image_urls`.
- `Attribute N name` / `value(s)` become one attribute (`color: Red`), with that
  attribute's `visible`/`global`/`default` columns as `color_visible`, ...; every other
  column is kept under its snake_case name (`stock`, `tags`, `weight_kg`, `meta_...`).
  A variation takes from its parent every column it leaves empty (descriptions, categories,
  tags, brand, images, weight, meta, ...) but its own id, stock, prices and attribute values.
The export carries no product URL (only `External URL`, kept as an attribute) and no currency.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from shoplm.data.convert.base import (ITEM_COLUMNS, ConvertReport, Tally, attribute_name, finish, html_to_text,
                                      keep_item, parse_number, read_header, read_table, source_files, write_dicts)
from shoplm.errors import ConvertError

WHAT = "a WooCommerce product CSV export (ID, Type, SKU, Name, ..., Regular price, Categories, Images, Parent, ...)"
MAPPED = {"id", "type", "sku", "name", "description", "short description", "sale price", "regular price", "categories",
          "images", "parent", "brands"}
# What a variation never takes from its parent: its identity, stock, prices and attribute values.
OWN = {"id", "type", "sku", "name", "parent", "published", "in stock?", "stock", "backorders allowed?", "low stock amount",
       "sale price", "regular price", "date sale price starts", "date sale price ends", "position", "is featured?"}
_ATTRIBUTE = re.compile(r"^attribute (\d+) (name|value\(s\)|visible|global|default)$")
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")

Row = dict[str, str]  # column name, lower-cased -> value


def convert(src: Path, out: Path, ext: str) -> ConvertReport:
    tally, items, taken = Tally(), [], {}
    for path in source_files(src, (".csv",), WHAT):
        missing = {"id", "type", "sku", "name"} - {n.lower() for n in read_header(path)}
        if missing:
            raise ConvertError(f"{path} line 1: no {', '.join(sorted(missing))} column; expected {WHAT}")
        rows: list[tuple[int, Row]] = []
        for line, row, error in read_table(path):
            tally.read += 1
            if row is None:
                tally.reject(path, line, error or "unreadable row")
            else:
                rows.append((line, {name.lower(): value for name, value in row.items()}))
        _products(path, rows, tally, items, taken)
    files = {"items": out / f"items.{ext}"}
    return finish(out, ext, files, {"items": write_dicts(files["items"], items, ITEM_COLUMNS)}, tally)


def _types(row: Row) -> set[str]:
    return {t.strip().lower() for t in row["type"].split(",") if t.strip()}


def _products(path: Path, rows: list[tuple[int, Row]], tally: Tally, items: list[dict[str, Any]],
              taken: dict[str, str]) -> None:
    by_ref: dict[str, tuple[int, Row]] = {}  # "id:44" and the SKU -> (line, row)
    for line, row in rows:
        if row["id"]:
            by_ref[f"id:{row['id']}"] = (line, row)
        if row["sku"]:
            by_ref.setdefault(row["sku"], (line, row))
    with_variations = {by_ref[r["parent"]][0] for _, r in rows
                       if "variation" in _types(r) and r.get("parent") in by_ref}  # lines of variable products
    for line, row in rows:
        parent = None
        try:
            if "variation" in _types(row):
                if row.get("parent", "") not in by_ref:
                    raise ValueError(f"Parent {row.get('parent', '')!r} names no product in the file "
                                     "(expected id:ID or a SKU)")
                parent = by_ref[row["parent"]][1]
            elif "variable" in _types(row) and line in with_variations:
                tally.accept()  # its variations are the items
                continue
            raw = _item(row, parent)
        except ValueError as problem:
            tally.reject(path, line, str(problem))
            continue
        keep_item(tally, path, line, raw, taken, items)


def _key(row: Row) -> str | None:
    return row["sku"] or row["id"] or None


def _item(row: Row, parent: Row | None) -> dict[str, Any]:
    """The items row of a product or variation; a `ValueError` says why it cannot be one."""
    if parent is not None:
        row = {**row, **{name: value for name, value in parent.items()
                         if value and not row.get(name) and name not in OWN and not _ATTRIBUTE.match(name)}}
    if not _key(row):
        raise ValueError("neither SKU nor ID; expected one of them as the item's id")
    attributes = _attributes(row)
    description, short = html_to_text(row.get("description", "")), html_to_text(row.get("short description", ""))
    categories = [c.strip().replace("\\,", ",") for c in _UNESCAPED_COMMA.split(row.get("categories", "")) if c.strip()]
    images = [i.strip() for i in row.get("images", "").split(",") if i.strip()]
    sale = parse_number(row.get("sale price", ""), "Sale price")
    regular = parse_number(row.get("regular price", ""), "Regular price")
    values = [v for k, v in attributes.items() if not k.endswith(("_visible", "_global", "_default"))]
    name = row["name"] or (f"{parent['name']} - {', '.join(values)}" if parent is not None else "")
    raw: dict[str, Any] = {
        "item_id": _key(row), "title": name or None, "description": description or short or None,
        "category": categories[0] if categories else None,
        "brand": row.get("brands", "").split(",")[0].strip() or attributes.get("brand"),
        "price": sale if sale is not None else regular, "available": _available(row, parent),
        "image_url": images[0] if images else None, "group_id": _key(parent) if parent is not None else None,
        "regular_price": regular if sale is not None else None,
        "categories": row.get("categories") if len(categories) > 1 else None,
        "additional_image_urls": ",".join(images[1:]) or None,
        "short_description": short if description and short else None,
    }
    raw.update({k: v for k, v in attributes.items() if k != "brand" or raw["brand"] != v})
    raw.update({attribute_name(n): v for n, v in row.items() if v and n not in MAPPED and not _ATTRIBUTE.match(n)})
    return raw


def _attributes(row: Row) -> dict[str, str]:
    """`Attribute 1 name` Color + `Attribute 1 value(s)` Red -> {"color": "Red"}, with
    visible/global/default as color_visible, ...; an attribute the variation leaves empty
    ("any size") is left out."""
    numbered: dict[str, dict[str, str]] = {}
    for name, value in row.items():
        match = _ATTRIBUTE.match(name)
        if match and value:
            numbered.setdefault(match.group(1), {})[match.group(2)] = value
    kept = {}
    for parts in numbered.values():
        if "name" not in parts:
            continue
        base = attribute_name(parts["name"])
        if parts.get("value(s)"):
            kept[base] = parts["value(s)"]
        kept.update({f"{base}_{k}": v for k, v in parts.items() if k in ("visible", "global", "default")})
    return kept


def _available(row: Row, parent: Row | None) -> bool:
    stock, published = row.get("in stock?", "").lower(), row.get("published", "")
    if stock not in ("", "1", "0", "backorder", "onbackorder"):
        raise ValueError(f"In stock? {row.get('in stock?')!r}; expected 1, 0 or backorder")
    for who in (row, parent) if parent is not None else (row,):
        if who.get("published", "") not in ("", "1", "0", "-1"):
            raise ValueError(f"Published {who.get('published')!r}; expected 1 (published), 0 (private) or -1 (draft)")
    listed = published in ("", "1") and (parent is None or parent.get("published", "") in ("", "1"))
    return stock != "0" and listed and row.get("visibility in catalog", "").lower() != "hidden"
