"""Google Merchant Center product feeds -> items.

Reads SRC, one feed or a directory of them (name order): XML in RSS 2.0 (`<item>`) or Atom
1.0 (`<entry>`) with the attributes in the `g:` namespace (http://base.google.com/ns/1.0),
or the tab-separated text feed (a header line of attribute names, one product a line).
The three forms of one catalog give the same items.

- `id` -> item_id (Atom: `g:id`, else the entry's `<id>`), `title`, `description` (HTML
  made text), `brand`, `link` -> url, `image_link` -> image_url, `item_group_id` -> group_id.
- `price` `"15.00 USD"` -> 15.0 with the attribute `currency`; a `sale_price` is the price
  paid, the list price is kept as `regular_price` (a sale price in another currency is refused).
- `availability`: in_stock, preorder and backorder take orders -> available; out_of_stock
  does not. The value itself is kept as an attribute (`preorder` is worth knowing).
- `product_type` (the shop's own "Home > Tools > Drills") -> category, else a
  `google_product_category` given as a path; `google_product_category` is always kept.
- Every other attribute is kept under its name; a repeated one (`additional_image_link`)
  joins its values with commas, as the text feed writes them. A group attribute (`shipping`
  with `country`, `service`, `price`) becomes `shipping_country`, `shipping_service`, ...:
  in XML from its sub-elements, in the text feed from `US::Standard:4.95 USD` by the order
  the header names (`shipping(country:service:price)`) or, for shipping, tax and installment,
  the specification's default order.
A product that cannot be mapped is rejected with its line (XML: the line of its start tag).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator
from xml.parsers import expat

from shoplm.data.convert.base import (ITEM_COLUMNS, ConvertReport, Tally, attribute_name, finish, html_to_text,
                                      keep_item, parse_price, read_table, snake_case, source_files, write_dicts)
from shoplm.errors import ConvertError

G = "http://base.google.com/ns/1.0"
ATOM = "http://www.w3.org/2005/Atom"
SUFFIXES = (".xml", ".tsv", ".txt")
WHAT = "a Merchant Center feed (RSS 2.0 or Atom .xml, or a tab-separated .tsv/.txt)"
AVAILABLE = {"in_stock": True, "preorder": True, "backorder": True, "out_of_stock": False}
# The text feed's positional sub-attributes when the header does not name them.
GROUP_ORDER = {"shipping": ("country", "region", "service", "price"), "tax": ("country", "region", "rate", "tax_ship"),
               "installment": ("months", "amount")}
MAPPED = {"id", "atom_id", "title", "description", "link", "image_link", "price", "sale_price", "brand", "item_group_id"}
_HEADER_GROUP = re.compile(r"^([^()]+)\(([^()]*)\)$")

Fields = dict[str, list[str]]  # attribute name -> its values in feed order


def convert(src: Path, out: Path, ext: str) -> ConvertReport:
    tally, items, taken = Tally(), [], {}
    for path in source_files(src, SUFFIXES, WHAT):
        products = _xml_products(path) if path.suffix.lower() == ".xml" else _tsv_products(path)
        for line, fields, error in products:
            tally.read += 1
            try:
                if error:
                    raise ValueError(error)
                raw = _item(fields)
            except ValueError as problem:
                tally.reject(path, line, str(problem))
                continue
            keep_item(tally, path, line, raw, taken, items)
    files = {"items": out / f"items.{ext}"}
    return finish(out, ext, files, {"items": write_dicts(files["items"], items, ITEM_COLUMNS)}, tally)


def _item(fields: Fields) -> dict[str, Any]:
    """One product's attributes -> an items row; a `ValueError` says why it cannot be one."""
    def first(name: str) -> str:
        return next((v for v in fields.get(name, []) if v), "")

    raw: dict[str, Any] = {"item_id": first("id") or first("atom_id") or None, "title": first("title") or None,
                           "description": html_to_text(first("description")) or None, "brand": first("brand") or None,
                           "url": first("link") or None, "image_url": first("image_link") or None,
                           "group_id": first("item_group_id") or None}
    raw.update(_prices(first("price"), first("sale_price")))
    availability = first("availability").lower().replace(" ", "_")
    if availability:
        if availability not in AVAILABLE:
            raise ValueError(f"availability {first('availability')!r}; expected one of {', '.join(AVAILABLE)}")
        raw["available"] = AVAILABLE[availability]
    types, google = fields.get("product_type", []), first("google_product_category")
    raw["category"] = next((t for t in types if t), None) or (google if google and not google.isdigit() else None)
    for name, values in fields.items():
        values = [v for v in values if v]
        if name in MAPPED or not values or (name == "product_type" and len(values) == 1):
            continue
        raw[attribute_name(name)] = availability if name == "availability" else ",".join(values)
    if first("atom_id") and first("id"):
        raw["atom_id"] = first("atom_id")
    return raw


def _prices(price: str, sale: str) -> dict[str, Any]:
    """price / sale_price -> the price paid, its currency and the list price when on sale."""
    if not price and not sale:
        return {}
    amount, currency = parse_price(price) if price else (None, None)
    if not sale:
        return {"price": amount, "currency": currency}
    paid, sale_currency = parse_price(sale)
    if currency and sale_currency and currency != sale_currency:
        raise ValueError(f"sale_price {sale!r} is in another currency than price {price!r}")
    return {"price": paid, "currency": currency or sale_currency, "regular_price": amount}


def _tsv_products(path: Path) -> Iterator[tuple[int, Fields, str | None]]:
    for line, row, error in read_table(path, delimiter="\t"):
        if row is None:
            yield line, {}, error
            continue
        fields: Fields = {}
        for header, value in row.items():
            group = _HEADER_GROUP.match(header)
            if group:
                subs = [snake_case(sub) for sub in group.group(2).split(":")]
                _split_group(fields, snake_case(group.group(1)), subs, value)
            elif snake_case(header) in GROUP_ORDER and ":" in value:
                _split_group(fields, snake_case(header), list(GROUP_ORDER[snake_case(header)]), value)
            else:
                fields.setdefault(snake_case(header), []).append(value)
        yield line, fields, None


def _split_group(fields: Fields, group: str, subs: list[str], value: str) -> None:
    """`"US::Standard:4.95 USD,CA::Express:9.95 USD"` under shipping(country:region:service:price)
    -> shipping_country [US, CA], shipping_service [Standard, Express], shipping_price [...]."""
    for instance in (v for v in value.split(",") if v.strip()):
        for sub, part in zip(subs, instance.split(":")):
            if part.strip():
                fields.setdefault(f"{group}_{sub}", []).append(part.strip())


class _Feed:
    """expat callbacks that collect each <item>/<entry> as Fields, with the line it starts on."""

    def __init__(self, parser: Any):
        self.parser = parser
        self.done: list[tuple[int, Fields, str | None]] = []
        self.path: list[tuple[str, str]] = []  # (namespace, local name) of the open elements
        self.item_depth = 0  # depth of the open product element, 0 outside one
        self.line, self.fields = 0, {}
        self.child: str | None = None  # name of the attribute being read
        self.group: str | None = None  # the attribute being read is a sub-attribute of this group
        self.text: list[str] = []
        self.root: tuple[str, str] | None = None

    def start(self, name: str, attrs: dict[str, str]) -> None:
        uri, _, local = name.rpartition(" ")
        self.root = self.root or (uri, local)
        self.path.append((uri, local))
        depth = len(self.path)
        if not self.item_depth:
            if (uri, local) in (("", "item"), (ATOM, "entry")):
                self.item_depth, self.line, self.fields = depth, self.parser.CurrentLineNumber, {}
            return
        if depth == self.item_depth + 1:
            self.child, self.group, self.text = _attribute(uri, local), None, []
            if (uri, local) == (ATOM, "link") and attrs.get("rel", "alternate") == "alternate" and attrs.get("href"):
                self.text = [attrs["href"]]
        elif depth == self.item_depth + 2 and self.child != "description":
            self.group, self.child, self.text = self.child, f"{self.child}_{snake_case(local)}", []

    def end(self, name: str) -> None:
        depth = len(self.path)
        self.path.pop()
        if not self.item_depth or depth > self.item_depth + 2:
            return
        if depth == self.item_depth:
            self.done.append((self.line, self.fields, None))
            self.item_depth = 0
        elif depth == self.item_depth + 2 and self.group is not None:
            self._keep()
            self.child, self.text = self.group, []
        elif depth == self.item_depth + 1:
            if self.group is None:
                self._keep()
            self.child = self.group = None

    def data(self, text: str) -> None:
        if self.child is not None:
            self.text.append(text)

    def _keep(self) -> None:
        value = "".join(self.text).strip()
        if value and self.child:
            self.fields.setdefault(self.child, []).append(value)


def _attribute(uri: str, local: str) -> str:
    """The Merchant Center attribute an element of a product carries."""
    if uri == ATOM:
        return {"summary": "description", "content": "description", "id": "atom_id"}.get(local, snake_case(local))
    return snake_case(local)


def _refuse_entities(path: Path) -> None:
    raise ConvertError(f"{path}: the feed declares XML entities; a product feed needs none, and expanding them "
                       "can exhaust memory: remove the DOCTYPE")


def _xml_products(path: Path) -> Iterator[tuple[int, Fields, str | None]]:
    """(line, fields, None) of each product, streamed: a feed of 10^5 products never sits in memory as a tree."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.EntityDeclHandler = lambda *declaration: _refuse_entities(path)
    feed = _Feed(parser)
    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = feed.start, feed.end, feed.data
    parser.buffer_text = True
    with open(path, "rb") as handle:
        try:
            while chunk := handle.read(1 << 16):
                parser.Parse(chunk, False)
                yield from feed.done
                feed.done.clear()
            parser.Parse(b"", True)
        except expat.ExpatError as error:
            reason = expat.errors.messages[error.code]
            raise ConvertError(f"{path} line {error.lineno}: not well-formed XML ({reason}); "
                               f"fix the feed or export it again") from None
    yield from feed.done
    if feed.root not in (("", "rss"), (ATOM, "feed")):
        raise ConvertError(f"{path}: the root element is not <rss> or an Atom <feed>; expected {WHAT}")
