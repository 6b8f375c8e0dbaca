"""Field-level validation of the data model."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoplm.data.records import Event, FieldProblem, Item, parse_event, parse_item, parse_judgment


def fields(result):
    assert isinstance(result, list), result
    return [p.field for p in result]


def test_item_minimal_and_defaults():
    item = parse_item({"item_id": 17, "title": " Saw "})
    assert item == Item("17", "Saw")
    assert item.available is True and item.attributes == {}


def test_item_full_row_from_csv_strings():
    item = parse_item({"item_id": "a", "title": "T", "description": "", "category": "Tools>Sanding >  Rolls",
                       "brand": "3M", "price": "9.50", "available": "FALSE", "sponsored_bid": "0", "colour": "red"})
    assert item.category == "Tools > Sanding > Rolls" and item.category_path == ["Tools", "Sanding", "Rolls"]
    assert (item.price, item.available, item.sponsored_bid, item.description) == (9.5, False, 0.0, None)
    assert item.attributes == {"colour": "red"}


@pytest.mark.parametrize("row, bad", [
    ({"title": "x"}, ["item_id"]),
    ({"item_id": "a"}, ["title"]),
    ({"item_id": "a", "title": "   "}, ["title"]),
    ({"item_id": "a", "title": "x", "price": "-0.01"}, ["price"]),
    ({"item_id": "a", "title": "x", "price": "NaN"}, ["price"]),
    ({"item_id": "a", "title": "x", "price": "inf"}, ["price"]),
    ({"item_id": "a", "title": "x", "price": "cheap"}, ["price"]),
    ({"item_id": "a", "title": "x", "sponsored_bid": -1}, ["sponsored_bid"]),
    ({"item_id": "a", "title": "x", "available": "maybe"}, ["available"]),
    ({"item_id": "a" * 257, "title": "x"}, ["item_id"]),
    ({"item_id": "a\x00b", "title": "x"}, ["item_id"]),
    ({"item_id": 1.5, "title": "x"}, ["item_id"]),
    ({"item_id": "a", "title": ["x"]}, ["title"]),
    ({"item_id": "", "title": "", "price": -1}, ["item_id", "title", "price"]),
])
def test_bad_items_name_every_bad_field(row, bad):
    assert fields(parse_item(row)) == bad


def test_problem_text_shows_value_and_expectation():
    problem = parse_item({"item_id": "a", "title": "x", "price": "-3"})[0]
    assert problem == FieldProblem("price", "-3", "a finite number >= 0")
    assert str(problem) == "field 'price': got '-3'; expected a finite number >= 0"


@pytest.mark.parametrize("stamp, seconds", [
    ("2024-05-01T12:00:00Z", 1714564800.0),
    ("2024-05-01T12:00:00", 1714564800.0),  # naive = UTC
    ("2024-05-01T14:00:00+02:00", 1714564800.0),
    ("2024-05-01", 1714521600.0),
    ("1714564800", 1714564800.0),
    (1714564800.5, 1714564800.5),
])
def test_timestamps(stamp, seconds):
    event = parse_event({"timestamp": stamp, "user_id": "u", "event_type": "view", "item_id": "a"})
    assert event.timestamp == seconds


@pytest.mark.parametrize("row, bad", [
    ({"user_id": "u", "event_type": "view", "item_id": "a"}, ["timestamp"]),
    ({"timestamp": "soon", "user_id": "u", "event_type": "view", "item_id": "a"}, ["timestamp"]),
    ({"timestamp": 1714564800000, "user_id": "u", "event_type": "view", "item_id": "a"}, ["timestamp"]),  # ms
    ({"timestamp": -5, "user_id": "u", "event_type": "view", "item_id": "a"}, ["timestamp"]),
    ({"timestamp": 1, "event_type": "view", "item_id": "a"}, ["user_id"]),
    ({"timestamp": 1, "user_id": "u", "event_type": "buy", "item_id": "a"}, ["event_type"]),
    ({"timestamp": 1, "user_id": "u", "event_type": "view"}, ["item_id"]),
    ({"timestamp": 1, "user_id": "u", "event_type": "search"}, ["query"]),
    ({"timestamp": 1, "user_id": "u", "event_type": "click", "item_id": "a", "position": "-1"}, ["position"]),
    ({"timestamp": 1, "user_id": "u", "event_type": "click", "item_id": "a", "position": 1.5}, ["position"]),
    ({"timestamp": 1, "user_id": "u", "event_type": "click", "item_id": "a", "value": "nan"}, ["value"]),
])
def test_bad_events(row, bad):
    assert fields(parse_event(row)) == bad


def test_search_event_needs_no_item_and_keeps_query():
    event = parse_event({"timestamp": 1, "session_id": "s", "event_type": "search", "query": " red saw "})
    assert event == Event(1.0, "search", session_id="s", query="red saw")


def test_event_key_is_the_identity_tuple():
    a = Event(1.0, "view", user_id="u", item_id="x")
    assert a.key == Event(1.0, "view", user_id="u", item_id="x", position=3, value=2.0).key
    assert a.key != Event(1.0, "view", session_id="u", item_id="x").key
    assert len(a.key) == 32


def test_judgments():
    assert parse_judgment({"query": "saw", "item_id": 5, "relevance": "1.5"}).relevance == 1.5
    assert fields(parse_judgment({"query": "saw", "item_id": "5"})) == ["relevance"]
    assert fields(parse_judgment({"query": "", "item_id": "5", "relevance": -1})) == ["query", "relevance"]
    assert not math.isnan(parse_judgment({"query": "q", "item_id": "5", "relevance": 0}).relevance)


@pytest.mark.parametrize("bad", ["nul\x00inside", "\ud800", float("inf"), ["ok", "x\x00"], {"k\x00": 1},
                                 {"nested": [float("-inf")]}])
def test_attribute_values_that_no_store_can_hold_are_rejected(bad):
    problems = parse_item({"item_id": "i", "title": "t", "colour": bad})
    assert isinstance(problems, list) and problems[0].field == "colour"


def test_attribute_values_of_json_kinds_are_kept():
    item = parse_item({"item_id": "i", "title": "t", "sizes": ["S", "M"], "dims": {"w": 1.5}, "eco": True, "n": 3})
    assert item.attributes == {"sizes": ["S", "M"], "dims": {"w": 1.5}, "eco": True, "n": 3}


@pytest.mark.parametrize("ident", ["..", ".", "../x", "a/../b", "a/./b", "x/.."])
def test_ids_with_dot_path_segments_are_rejected(ident):
    problems = parse_item({"item_id": ident, "title": "t"})
    assert isinstance(problems, list) and problems[0].field == "item_id"


@pytest.mark.parametrize("ident", ["0\n0", "a\r\nb", "x\ry"])
def test_ids_with_line_breaks_are_rejected_as_no_url_could_fetch_them(ident):
    """Found by tests/reliability/test_hostile.py: item "0\n0" was stored, GET /v1/items/0%0A0 was a 404."""
    problems = parse_item({"item_id": ident, "title": "t"})
    assert isinstance(problems, list) and problems[0].field == "item_id" and "line breaks" in problems[0].expected


def test_ids_with_slashes_and_dots_inside_names_are_kept():
    assert parse_item({"item_id": "AB/12.5", "title": "t"}).item_id == "AB/12.5"


PARTS = st.one_of(st.none(), st.text(alphabet=st.sampled_from(list('aZ"\\\n\t\x00\x1f\x7f é中\u2028/\'😀')), max_size=6),
                  st.text(max_size=8))


@settings(max_examples=2000, deadline=None)
@given(PARTS, PARTS, PARTS, PARTS, st.floats(0, 4e9, allow_nan=False))
def test_event_key_keeps_the_hash_of_stored_events(user, session, item, query, timestamp):
    """The key's fast path writes what json.dumps wrote, byte for byte: a store's existing
    keys must keep matching, or re-ingesting a file would store its events twice."""
    event = Event(timestamp, "view", user_id=user, session_id=session, item_id=item, query=query)
    parts = (user, session, "view", item, query, round(timestamp * 1_000_000))
    raw = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    assert event.key == hashlib.blake2b(raw.encode("utf-8"), digest_size=16).hexdigest()


@pytest.mark.parametrize("field, value", [("image_url", "ftp://x/y.jpg"), ("image_url", "//evil.example/x.jpg"),
                                          ("url", "/p/has space"), ("created_at", "yesterday"), ("group_id", "../g")])
def test_display_fields_are_checked_like_fields(field, value):
    problems = parse_item({"item_id": "a", "title": "A", field: value})
    assert isinstance(problems, list) and [p.field for p in problems] == [field]


def test_display_fields_are_read_and_kept_with_the_attributes():
    item = parse_item({"item_id": "a", "title": "A", "image_url": "https://cdn.example/a.jpg", "url": "/p/a",
                       "created_at": "2024-05-01T00:00:00Z", "group_id": "g1", "colour": "red"})
    assert (item.image_url, item.url, item.group_id) == ("https://cdn.example/a.jpg", "/p/a", "g1")
    assert item.created_at == 1_714_521_600.0
    assert item.attributes == {"image_url": "https://cdn.example/a.jpg", "url": "/p/a", "created_at": 1_714_521_600.0,
                               "group_id": "g1", "colour": "red"}
