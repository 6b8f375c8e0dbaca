"""Shopify's product CSV export -> items, one per variant.

The export has one row per variant: a product's first row carries its Title and product
fields, its other variants repeat the Handle with an empty Title, and rows with only an
`Image Src` add images. Rows of one Handle need not be adjacent.

- Each variant is an item, `group_id` = the Handle, `url` = `/products/HANDLE`; item_id =
  `Variant SKU`, else the Handle and the option values (`trail-runner-red-42`), else the
  Handle (a product with no options, Shopify's "Default Title").
- title = the product's Title, plus ` - Red / 42` for a variant with options (how Shopify
  names a variant in orders); each option is also an attribute (`color: Red`, `size: 42`).
- description = `Body (HTML)` as text; brand = Vendor; category = `Product Category`,
  else Type; price = `Variant Price`.
- available = the variant can be bought and the product is listed: inventory not tracked
  (an empty `Variant Inventory Tracker`), or `Variant Inventory Policy` continue, or
  `Variant Inventory Qty` > 0; and Status active (not draft or archived) and Published not FALSE.
- image_url = `Variant Image`, else the product's first image (by `Image Position`); the
  product's other images are kept as `additional_image_urls`.
- Every other column is kept under its snake_case name (`variant_compare_at_price`, `tags`,
  `seo_title`, `variant_inventory_qty`): product columns from the product's row,
  variant columns (`Variant ...`, `Option ...`, `Cost per item`, market prices) from the
  variant's own row.
The export has no currency: prices are in the shop's currency. A few columns renamed in
Shopify's newer template are read under either name (`URL handle`, `SKU`, `Inventory quantity`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

from shoplm.data.convert.base import (ITEM_COLUMNS, ConvertReport, Tally, attribute_name, finish, html_to_text,
                                      item_problem, parse_number, read_header, read_table, source_files, write_dicts)
from shoplm.errors import ConvertError

WHAT = "a Shopify product CSV export (Handle, Title, Body (HTML), Vendor, ..., Variant SKU, Variant Price, ...)"
# key -> the column names it is read from, the classic export's first.
COLUMNS = {
    "handle": ("Handle", "URL handle"), "title": ("Title",), "body": ("Body (HTML)",), "vendor": ("Vendor",),
    "category": ("Product Category",), "type": ("Type",), "status": ("Status",), "published": ("Published",),
    "sku": ("Variant SKU", "SKU"), "price": ("Variant Price",), "qty": ("Variant Inventory Qty", "Inventory quantity"),
    "policy": ("Variant Inventory Policy",), "tracker": ("Variant Inventory Tracker",), "image": ("Image Src",),
    "image_position": ("Image Position",), "image_alt": ("Image Alt Text",), "variant_image": ("Variant Image",),
    **{f"option{i}_{part}": (f"Option{i} {part.title()}",) for i in (1, 2, 3) for part in ("name", "value")},
}
# Columns that become item fields (or options, or images) rather than attributes of their own.
CONSUMED = {"handle", "title", "body", "vendor", "category", "sku", "price", "image", "image_position", "variant_image",
            *(f"option{i}_{part}" for i in (1, 2, 3) for part in ("name", "value"))}
VARIANT_PREFIXES = ("variant ", "option", "price /", "compare at price /", "compare-at price /")
VARIANT_COLUMNS = {"cost per item", "sku", "inventory quantity"}
IMAGE_KEYS = {"image", "image_position", "image_alt"}
VARIANT_KEYS = ("sku", "price", "option1_value", "option2_value", "option3_value")


class Row(NamedTuple):
    line: int
    columns: dict[str, str]  # as exported
    get: dict[str, str]  # key of COLUMNS -> value, "" when empty or not exported


def convert(src: Path, out: Path, ext: str) -> ConvertReport:
    tally, items, taken = Tally(), [], {}
    for path in source_files(src, (".csv",), WHAT):
        names = _resolve(path, read_header(path))
        products: dict[str, list[Row]] = {}
        for line, columns, error in read_table(path):
            tally.read += 1
            if columns is None or not columns[names["handle"]]:
                tally.reject(path, line, error or "no Handle; every row of a product repeats its Handle")
                continue
            row = Row(line, columns, {key: columns.get(names.get(key, ""), "") for key in COLUMNS})
            products.setdefault(row.get["handle"], []).append(row)
        export = _Export(path, names, tally, items, taken)
        for handle, rows in products.items():
            export.product(handle, rows)
    files = {"items": out / f"items.{ext}"}
    return finish(out, ext, files, {"items": write_dicts(files["items"], items, ITEM_COLUMNS)}, tally)


def _resolve(path: Path, header: list[str]) -> dict[str, str]:
    """key -> the column it is read from in this file (names compared case-insensitively)."""
    present = {name.lower(): name for name in header}
    found = {}
    for key, candidates in COLUMNS.items():
        name = next((present[c.lower()] for c in candidates if c.lower() in present), None)
        if name is not None:
            found[key] = name
    missing = [COLUMNS[key][0] for key in ("handle", "title") if key not in found]
    if missing:
        raise ConvertError(f"{path} line 1: no {' or '.join(missing)} column; expected {WHAT}")
    return found


class _Export:
    """One export file: its column names and where its items and rejections go."""

    def __init__(self, path: Path, names: dict[str, str], tally: Tally, items: list[dict[str, Any]],
                 taken: dict[str, str]):
        self.path, self.names, self.tally, self.items, self.taken = path, names, tally, items, taken
        self.consumed = {names[k] for k in CONSUMED | IMAGE_KEYS if k in names}

    def product(self, handle: str, rows: list[Row]) -> None:
        """Every row of one Handle: its variants become items, image rows add images."""
        product = next((row for row in rows if row.get["title"]), None)
        if product is None:
            for row in rows:
                self.tally.reject(self.path, row.line, f"Handle {handle!r} has no row with a Title (the product's first row)")
            return
        images = sorted((row for row in rows if row.get["image"]), key=_image_position)
        urls = list(dict.fromkeys(row.get["image"] for row in images))
        shared = self.kept(product, variant=False)
        for row in rows:
            if row is not product and not any(row.get[k] for k in VARIANT_KEYS):
                if row.get["image"]:
                    self.tally.accept()  # an image row: its image is on every variant
                else:
                    self.tally.reject(self.path, row.line, "neither a variant (no option, SKU or price) nor an image")
                continue
            try:
                raw = self.variant(handle, product, row)
            except ValueError as problem:
                self.tally.reject(self.path, row.line, str(problem))
                continue
            image = row.get["variant_image"] or (urls[0] if urls else None)
            alt = images[0].get["image_alt"] if images and image == urls[0] else ""
            raw.update(image_url=image, additional_image_urls=",".join(u for u in urls if u != image) or None,
                       image_alt_text=alt or None)
            raw.update(shared)
            raw.update(self.kept(row, variant=True))
            problem = item_problem(raw, self.taken, f"{self.path.name}:{row.line}")
            if problem:
                self.tally.reject(self.path, row.line, problem)
                continue
            self.tally.accept()
            self.items.append(raw)

    def variant(self, handle: str, product: Row, row: Row) -> dict[str, Any]:
        """The item fields of one variant row; a `ValueError` says why it cannot be an item."""
        options = [(product.get[f"option{i}_name"], row.get[f"option{i}_value"]) for i in (1, 2, 3)]
        options = [(n, v) for n, v in options if v and not (n == "Title" and v == "Default Title")]
        title = product.get["title"] + (" - " + " / ".join(v for _, v in options) if options else "")
        raw: dict[str, Any] = {
            "item_id": row.get["sku"] or "-".join([handle, *(_slug(v) for _, v in options)]), "title": title,
            "description": html_to_text(product.get["body"]) or None,
            "category": product.get["category"] or product.get["type"] or None, "brand": product.get["vendor"] or None,
            "price": parse_number(row.get["price"], "Variant Price"), "available": self.available(product, row),
            "url": f"/products/{handle}", "group_id": handle,
        }
        raw.update({attribute_name(n or f"option{i}"): v for i, (n, v) in enumerate(options, start=1)})
        return raw

    def available(self, product: Row, row: Row) -> bool:
        policy, status, published = (row.get["policy"].lower(), product.get["status"].lower(),
                                     product.get["published"].lower())
        if policy not in ("", "deny", "continue"):
            raise ValueError(f"Variant Inventory Policy {row.get['policy']!r}; expected deny or continue")
        if status not in ("", "active", "draft", "archived"):
            raise ValueError(f"Status {product.get['status']!r}; expected active, draft or archived")
        if published not in ("", "true", "false"):
            raise ValueError(f"Published {product.get['published']!r}; expected TRUE or FALSE")
        qty = parse_number(row.get["qty"], "Variant Inventory Qty")
        untracked = "tracker" in self.names and not row.get["tracker"]
        in_stock = policy == "continue" or untracked or qty is None or qty > 0
        return in_stock and status in ("", "active") and published != "false"

    def kept(self, row: Row, *, variant: bool) -> dict[str, str]:
        """The row's non-empty columns kept as attributes: the variant's own columns
        (`variant=True`) or the product's."""
        kept = {}
        for name, value in row.columns.items():
            is_variant = name.lower().startswith(VARIANT_PREFIXES) or name.lower() in VARIANT_COLUMNS
            if value and name not in self.consumed and is_variant == variant:
                kept[attribute_name(name)] = value
        return kept


def _image_position(row: Row) -> int:
    return int(row.get["image_position"]) if row.get["image_position"].isdigit() else 1 << 30


def _slug(text: str) -> str:
    """`"Red / Navy"` -> `"red-navy"`."""
    return re.sub(r"[^\w]+", "-", text.lower()).strip("-") or "x"
