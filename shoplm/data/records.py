"""The shoplm data model: items, events and judgments, and their validation.

Inputs are checked once, here, at the boundary; everything downstream trusts an `Item`,
`Event` or `Judgment`. A parse function returns either the record or the list of
`FieldProblem`s that made it bad, so a caller can report every bad record with its file,
row, field, value and what was expected (docs/data-format.md is the reference).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping, NamedTuple

EVENT_TYPES: tuple[str, ...] = ("search", "view", "click", "add_to_cart", "purchase")
ITEM_FIELDS: tuple[str, ...] = (
    "item_id", "title", "description", "category", "brand", "price", "available", "sponsored_bid",
)
EVENT_FIELDS: tuple[str, ...] = (
    "timestamp", "user_id", "session_id", "event_type", "item_id", "query", "position", "value", "list_id",
)
JUDGMENT_FIELDS: tuple[str, ...] = ("query", "item_id", "relevance")
# Optional catalog fields a results page shows or groups by. They live in `Item.attributes`
# (the stores keep attributes as one JSON object, so no schema changes) but are checked as
# fields: a bad URL or date is refused like a bad price, not kept as text.
DISPLAY_FIELDS: tuple[str, ...] = ("image_url", "url", "created_at", "group_id")
MAX_URL_CHARS = 2_048
CATEGORY_SEPARATOR = " > "

MAX_ID_CHARS = 256  # ids are keys in indexes, URLs and logs; longer ones are almost surely bad input
MAX_TEXT_CHARS = 100_000
# Unix seconds for 1970-01-01 .. 2200-01-01: anything outside is a unit mistake (ms, us).
MAX_TIMESTAMP = 7_258_118_400.0
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


class FieldProblem(NamedTuple):
    field: str
    value: Any
    expected: str

    def __str__(self) -> str:
        shown = repr(self.value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return f"field '{self.field}': got {shown}; expected {self.expected}"


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    title: str
    description: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    available: bool = True
    sponsored_bid: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def image_url(self) -> str | None:
        return self.attributes.get("image_url")

    @property
    def url(self) -> str | None:
        return self.attributes.get("url")

    @property
    def created_at(self) -> float | None:
        """Unix seconds (UTC) the shop first offered the item, when the catalog says."""
        return self.attributes.get("created_at")

    @property
    def group_id(self) -> str | None:
        """Variants (sizes, colours) of one product share a group_id; search shows one per group."""
        return self.attributes.get("group_id")

    @property
    def category_path(self) -> list[str]:
        """`"Tools > Sanding > Rolls"` -> `["Tools", "Sanding", "Rolls"]`."""
        if not self.category:
            return []
        return [p.strip() for p in self.category.split(">") if p.strip()]


@dataclass(frozen=True, slots=True)
class Event:
    timestamp: float  # Unix seconds, UTC
    event_type: str
    user_id: str | None = None
    session_id: str | None = None
    item_id: str | None = None
    query: str | None = None
    position: int | None = None
    value: float | None = None
    list_id: str | None = None  # the result list that led here (search, recommendations, ...): attribution

    @property
    def key(self) -> str:
        """Identity for idempotent ingestion: (user, session, type, item, query, timestamp).

        Hashed to a fixed width so the store can hold a unique index on it; NULL-safe,
        unlike a composite unique constraint over nullable columns.
        """
        ts_us = round(self.timestamp * 1_000_000)
        parts = (self.user_id, self.session_id, self.event_type, self.item_id, self.query)
        if any(p is not None and _JSON_ESCAPED.search(p) for p in parts):
            raw = json.dumps((*parts, ts_us), ensure_ascii=False, separators=(",", ":"))
        else:  # what json.dumps writes, spelled out: a fifth of the time of parsing an ingested event
            raw = "[" + ",".join("null" if p is None else f'"{p}"' for p in parts) + f",{ts_us}]"
        return hashlib.blake2b(raw.encode("utf-8"), digest_size=16).hexdigest()


# Characters json.dumps(ensure_ascii=False) escapes in a string (json.encoder.ESCAPE): a key
# part without them is written as itself between quotes.
_JSON_ESCAPED = re.compile(r'[\x00-\x1f\\"]')


@dataclass(frozen=True, slots=True)
class Judgment:
    query: str
    item_id: str
    relevance: float


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "") or (
        isinstance(value, float) and math.isnan(value)
    )


# Control characters (other than tab/newline/CR) and lone surrogates from undecodable bytes.
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


_LINE_BREAK = re.compile("[\n\r]")
_URL = re.compile(r"^(https?://[^/?#]+|/(?!/))", re.IGNORECASE)  # "//host" would leave the shop's site
_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")  # "." or ".." as a whole path segment


def _bad_chars(text: str) -> bool:
    return _BAD_CHARS.search(text) is not None


class _Checker:
    """Collects the problems of one record while converting its fields."""

    def __init__(self, raw: Mapping[str, Any]):
        self.raw = raw
        self.problems: list[FieldProblem] = []

    def fail(self, name: str, expected: str) -> None:
        self.problems.append(FieldProblem(name, self.raw.get(name), expected))

    def text(self, name: str, *, required: bool, limit: int = MAX_TEXT_CHARS) -> str | None:
        value = self.raw.get(name)
        if type(value) is str:  # the common case first: ingest runs this for every field of every row
            text = value.strip()
            if text and len(text) <= limit and _BAD_CHARS.search(text) is None:
                return text
        if _blank(value):
            if required:
                self.fail(name, "a non-empty string")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.fail(name, "a string")
            return None
        text = str(value).strip()
        if len(text) > limit:
            self.fail(name, f"at most {limit} characters")
        elif _bad_chars(text):
            self.fail(name, "valid UTF-8 text without control characters")
        else:
            return text
        return None

    def ident(self, name: str, *, required: bool) -> str | None:
        value = self.text(name, required=required, limit=MAX_ID_CHARS)
        if value is not None and "." in value and _DOT_SEGMENT.search(value):
            # URLs cannot carry a "." or ".." path segment (clients and proxies remove them),
            # so such an id could be stored but never fetched, and it reads like path traversal.
            self.fail(name, "an id without '.' or '..' path segments")
            return None
        if value is not None and _LINE_BREAK.search(value):
            # Texts may hold line breaks, ids may not: a URL path with one matches no route
            # (Starlette's path pattern stops at a newline), so the item could not be fetched.
            self.fail(name, "an id without line breaks")
            return None
        return value

    def number(self, name: str, *, minimum: float | None = None) -> float | None:
        value = self.raw.get(name)
        if _blank(value):
            return None
        expected = "a finite number" + (f" >= {minimum:g}" if minimum is not None else "")
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            self.fail(name, expected)
            return None
        if not math.isfinite(number) or (minimum is not None and number < minimum):
            self.fail(name, expected)
            return None
        return number

    def integer(self, name: str, *, minimum: int) -> int | None:
        number = self.number(name, minimum=minimum)
        if number is None:
            return None
        if number != int(number):
            self.fail(name, f"a whole number >= {minimum}")
            return None
        return int(number)

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self.raw.get(name)
        if _blank(value):
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        self.fail(name, "a boolean (true/false, 1/0, yes/no)")
        return default

    def url(self, name: str) -> str | None:
        """An absolute http(s) URL or a path on the shop's own site ("/p/drill-1")."""
        value = self.text(name, required=False, limit=MAX_URL_CHARS)
        if value is not None and not (_URL.match(value) and not any(ch.isspace() for ch in value)):
            self.fail(name, f"an http(s):// URL or a /path, without spaces, at most {MAX_URL_CHARS} characters")
            return None
        return value

    def timestamp(self, name: str, *, required: bool = True) -> float | None:
        value = self.raw.get(name)
        expected = "ISO-8601 (2024-05-01T12:00:00Z) or Unix seconds between 1970 and 2200"
        if _blank(value):
            if required:
                self.fail(name, expected)
            return None
        seconds = _parse_timestamp(value)
        if seconds is None or not (0.0 <= seconds < MAX_TIMESTAMP):
            self.fail(name, expected)
            return None
        return seconds


def _parse_timestamp(value: Any) -> float | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, bool):
        return None
    elif isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
            return seconds if math.isfinite(seconds) else None
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    if moment.tzinfo is None:  # documented: naive times are UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_item(raw: Mapping[str, Any]) -> Item | list[FieldProblem]:
    """One catalog row -> `Item`, or every problem found in it."""
    c = _Checker(raw)
    item_id = c.ident("item_id", required=True)
    title = c.text("title", required=True)
    values = dict(
        description=c.text("description", required=False),
        category=_normalise_category(c.text("category", required=False)),
        brand=c.text("brand", required=False),
        price=c.number("price", minimum=0),
        available=c.boolean("available", default=True),
        sponsored_bid=c.number("sponsored_bid", minimum=0),
    )
    display = dict(image_url=c.url("image_url"), url=c.url("url"),
                   created_at=c.timestamp("created_at", required=False), group_id=c.ident("group_id", required=False))
    attributes = {name: value for name, value in display.items() if value is not None}
    for name, value in raw.items():
        if name in ITEM_FIELDS or name in DISPLAY_FIELDS or _blank(value):
            continue
        if not isinstance(name, str) or not name.strip() or _bad_chars(name):
            c.problems.append(FieldProblem(str(name), value, "a column name of printable text"))
            continue
        value, valid = _attribute_value(value)
        if not valid:
            c.problems.append(FieldProblem(name, value, ATTRIBUTE_EXPECTED))
            continue
        attributes[name] = value
    if c.problems:
        return c.problems
    return Item(item_id=item_id, title=title, attributes=attributes, **values)  # type: ignore[arg-type]


def _normalise_category(category: str | None) -> str | None:
    """`"Tools>Sanding >Rolls"` -> `"Tools > Sanding > Rolls"`, so prefixes compare as strings."""
    if category is None:
        return None
    parts = [p.strip() for p in category.split(">") if p.strip()]
    return CATEGORY_SEPARATOR.join(parts) or None


ATTRIBUTE_EXPECTED = "a finite number, a boolean, or text without control characters (or a JSON list/object of those)"


def _attribute_value(value: Any) -> tuple[Any, bool]:
    """(value to store, valid). Strings, finite numbers, booleans, and lists/objects of them
    are kept; anything else that is not JSON (a date from Parquet) becomes its text."""
    if isinstance(value, (dict, list, tuple)):
        try:
            text = json.dumps(value, allow_nan=False)
            return value, len(text) <= MAX_TEXT_CHARS and all(_attribute_value(v)[1] for v in _leaves(value))
        except (TypeError, ValueError, RecursionError):  # not JSON, non-finite, or nested beyond reason
            return value, False
    if isinstance(value, float):
        return value, math.isfinite(value)
    if not isinstance(value, (str, int, bool)):
        value = str(value)
    if isinstance(value, str):
        return value, not _bad_chars(value) and len(value) <= MAX_TEXT_CHARS
    return value, True


def _leaves(value: Any) -> Iterator[Any]:
    """Every key and scalar inside nested lists and dicts."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _leaves(inner)
    elif isinstance(value, (list, tuple)):
        for inner in value:
            yield from _leaves(inner)
    else:
        yield value


def parse_event(raw: Mapping[str, Any]) -> Event | list[FieldProblem]:
    """One behaviour-log row -> `Event`, or every problem found in it."""
    c = _Checker(raw)
    timestamp = c.timestamp("timestamp")
    user_id = c.ident("user_id", required=False)
    session_id = c.ident("session_id", required=False)
    if user_id is None and session_id is None and not any(p.field in ("user_id", "session_id") for p in c.problems):
        c.fail("user_id", "a user_id and/or a session_id")
    event_type = raw.get("event_type")
    event_type = event_type.strip() if isinstance(event_type, str) else event_type
    if event_type not in EVENT_TYPES:
        c.fail("event_type", "one of " + ", ".join(EVENT_TYPES))
    is_search = event_type == "search"
    item_id = c.ident("item_id", required=not is_search and event_type in EVENT_TYPES)
    query = c.text("query", required=is_search)
    position = c.integer("position", minimum=0)
    value = c.number("value")
    list_id = c.ident("list_id", required=False)
    if c.problems:
        return c.problems
    return Event(
        timestamp=timestamp, event_type=event_type, user_id=user_id, session_id=session_id,  # type: ignore[arg-type]
        item_id=item_id, query=query, position=position, value=value, list_id=list_id,
    )


def parse_judgment(raw: Mapping[str, Any]) -> Judgment | list[FieldProblem]:
    """One search-judgment row -> `Judgment`, or every problem found in it."""
    c = _Checker(raw)
    query = c.text("query", required=True)
    item_id = c.ident("item_id", required=True)
    relevance = c.number("relevance", minimum=0)
    if relevance is None and not any(p.field == "relevance" for p in c.problems):
        c.fail("relevance", "a finite number >= 0 (0 = irrelevant)")
    if c.problems:
        return c.problems
    return Judgment(query=query, item_id=item_id, relevance=relevance)  # type: ignore[arg-type]
