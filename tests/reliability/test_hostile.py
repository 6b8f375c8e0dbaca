"""Hostile input, property-based (Hypothesis): huge strings, NaN and infinities, invalid
UTF-8, control characters, SQL metacharacters, path components such as `../` in every id,
deep JSON. Through the file readers (ingest) and the API, on every store backend: no 5xx,
no crash, no stored record that fails validation, no file written outside the test's
directory, and accepted + rejected always equals read.

SHOPLM_HYPOTHESIS_EXAMPLES sets the examples per test (default 150)."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st

from shoplm.api import create_app
from shoplm.api.routes import _to_items
from shoplm.api.schemas import ItemCreate
from shoplm.config import Settings
from shoplm.engine.engine import Engine
from shoplm.errors import ShopLMError
from shoplm.store.ingest import ingest
from shoplm.data.records import parse_event, parse_item
from shoplm.store import open_store
from tests.api.conftest import A, ADMIN, R, READ
from tests.reliability.conftest import catalog, report

EXAMPLES = int(os.environ.get("SHOPLM_HYPOTHESIS_EXAMPLES", "150"))
HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                             HealthCheck.data_too_large])
TRIED: dict[str, int] = {}

NASTY = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "Zp", "So", "Lo"]), max_size=40),
    st.sampled_from(["../../etc/passwd", "..", "/", "\\..\\..\\x", "a/../../b", "'; DROP TABLE events; --",
                     "\" OR 1=1 --", "%00", "\x00", "x\x00y", "\ud800", "\u202e", "🙂" * 10, "NaN", "Infinity",
                     "-0", "1e309", "", " ", "a" * 300, "b" * 120_000, "{{title}}", "${jndi:ldap://x}"]),
)
NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                   NASTY, st.none(), st.booleans())
ANY_VALUE = st.one_of(NASTY, NUMBER, st.lists(NASTY, max_size=3), st.dictionaries(NASTY, NASTY, max_size=3))
EVENT_TYPES = st.one_of(st.sampled_from(["view", "click", "add_to_cart", "purchase", "search"]), NASTY)


def _event() -> st.SearchStrategy[dict]:
    fields = {"timestamp": st.one_of(NUMBER, st.sampled_from(["2024-05-01T12:00:00Z", "not a date", "9999-99-99"])),
              "user_id": NASTY, "session_id": NASTY, "event_type": EVENT_TYPES, "item_id": NASTY, "query": NASTY,
              "position": NUMBER, "value": NUMBER}
    return st.fixed_dictionaries({}, optional=fields)


def _item() -> st.SearchStrategy[dict]:
    fields = {"title": NASTY, "description": NASTY, "category": NASTY, "brand": NASTY, "price": NUMBER,
              "available": st.one_of(st.booleans(), NASTY), "sponsored_bid": NUMBER,
              "attributes": st.dictionaries(NASTY, ANY_VALUE, max_size=3)}
    return st.fixed_dictionaries({"item_id": NASTY}, optional=fields)


def _files_beside(directory: Path) -> set[str]:
    """What exists next to the test's directory and in the working directory (not recursive)."""
    return {str(p) for p in directory.parent.iterdir()} | {str(p) for p in Path.cwd().iterdir()}


def _assert_store_is_valid(store) -> None:
    for item in store.items():
        raw = {f: getattr(item, f) for f in ("item_id", "title", "description", "category", "brand", "price",
                                              "available", "sponsored_bid")}
        assert parse_item({**item.attributes, **raw}) == item, item  # stored == what validation makes of it
    for row in store.events_frame().iter_rows(named=True):
        row = {k: v for k, v in row.items() if k != "seq" and v is not None}
        assert not isinstance(parse_event(row), list), row


# --- the file readers ---------------------------------------------------------------------

@HYPOTHESIS
@given(rows=st.lists(_item(), min_size=1, max_size=6), fmt=st.sampled_from(["csv", "jsonl"]),
       garbage=st.one_of(st.none(), st.binary(min_size=1, max_size=40)))
def test_ingest_of_hostile_item_files(rows, fmt, garbage):
    TRIED["readers"] = TRIED.get("readers", 0) + 1
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        before = _files_beside(work)
        path = work / f"items.{fmt}"
        if fmt == "jsonl":  # json.dumps writes NaN/Infinity literals, as careless exporters do
            data = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode("utf-8", "surrogatepass")
        else:
            columns = sorted({k for r in rows for k in r if k != "attributes"})
            with open(path, "w", newline="", encoding="utf-8", errors="surrogatepass") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows([{k: v for k, v in r.items() if k != "attributes"} for r in rows])
            data = path.read_bytes()
        if garbage is not None:  # invalid UTF-8 or stray bytes in the middle of the file
            middle = len(data) // 2
            data = data[:middle] + garbage + data[middle:]
        path.write_bytes(data)
        store = open_store(f"sqlite:///{work / 'shop.db'}")
        try:
            result = ingest(store, items=path)
        except ShopLMError as exc:  # a whole-file problem (e.g. not UTF-8): refused with a message, nothing stored
            assert str(exc) and store.items() == []
            store.close()
            return
        (file_report,) = result.files
        assert file_report.reconciles, file_report
        assert len(store.items()) == file_report.stored
        _assert_store_is_valid(store)
        store.close()
        assert _files_beside(work) == before


# --- the API ------------------------------------------------------------------------------

@pytest.fixture
def api(store_url, tmp_path):
    settings_ = Settings(read_key=READ, admin_key=ADMIN, search_index_dir=tmp_path / "index", rate_limit_per_second=0,
                         embedding_cache_dir=tmp_path.parent / "shared-cache", models_dir=tmp_path / "models")
    store = open_store(store_url)
    store.upsert_items(catalog(12))
    with TestClient(create_app(settings_, Engine.open(settings_, store)), raise_server_exceptions=False) as client:
        yield client, store
    store.close()


def _body(obj) -> dict:
    """A JSON request whose strings may hold lone surrogates: sent as the (invalid UTF-8) bytes
    a broken client would send."""
    return {"content": json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass"),
            "headers": {"content-type": "application/json"}}


def _q(text: str) -> str:
    """Percent-encoded, invalid UTF-8 kept as bytes; cut to 2,000 characters (longer URLs are
    refused by the HTTP client before they are sent, and by servers with 414)."""
    return quote(text[:2000].encode("utf-8", "surrogatepass"), safe="")


def _ok_status(response) -> int:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    assert response.json()["error"]["message"] if response.status_code >= 400 else True
    return response.status_code


def test_a_lone_surrogate_in_a_rejected_field_name_is_quoted_back_not_a_500(api):
    """Found by the property test below (2026-11-29): an attribute named by a lone surrogate made
    the 422's body unencodable as UTF-8, and the client got a 500."""
    client, store = api
    request = _body({"items": [{"item_id": "x", "title": "", "attributes": {"\ud800": "Infinity"}}]})
    response = client.post("/v1/items", content=request["content"], headers={**A, **request["headers"]})
    assert response.status_code == 422, response.text[:300]
    details = response.json()["error"]["details"]
    assert ["body", "items", 0, "\ud800"] in [d["loc"] for d in details], details
    assert store.items(["x"]) == []


@HYPOTHESIS
@given(events=st.lists(_event(), max_size=5))
def test_hostile_event_batches(api, events):
    client, store = api
    TRIED["api_events"] = TRIED.get("api_events", 0) + 1
    request = _body({"events": events})
    status = _ok_status(client.post("/v1/events", content=request["content"], headers={**R, **request["headers"]}))
    for event in events:
        for key, value in (("users", event.get("user_id")), ("sessions", event.get("session_id"))):
            if isinstance(value, str) and value:
                _ok_status(client.get(f"/v1/{key}/{_q(value)}/profile", headers=R))
        _ok_status(client.get(f"/v1/recommend?user_id={_q(str(event.get('user_id')))}", headers=R))
    if status == 200:
        assert all(store.actor_events(user_id=e["user_id"]) or store.actor_events(session_id=e.get("session_id"))
                   for e in events if isinstance(e.get("user_id"), str) and e["user_id"])
    _assert_store_is_valid(store)


@HYPOTHESIS
@given(items=st.lists(_item(), min_size=1, max_size=3), query=NASTY)
def test_hostile_items_and_queries(api, items, query):
    client, store = api
    TRIED["api_items"] = TRIED.get("api_items", 0) + 1
    before = _files_beside(Path(client.app.state.settings.search_index_dir).parent)
    request = _body({"items": items})
    status = _ok_status(client.post("/v1/items", content=request["content"], headers={**A, **request["headers"]}))
    if status == 200:
        for payload in items:
            (expected,) = _to_items([ItemCreate.model_validate(payload).model_dump()])  # what the API stored
            assert store.items([expected.item_id]) == [expected]
            if "%" in expected.item_id:
                continue  # Starlette's TestClient decodes percent-escapes twice (uvicorn once): no URL check
            got = client.get(f"/v1/items/{_q(expected.item_id)}", headers=R)
            assert got.status_code == 200, got.text
            assert (got.json()["item_id"], got.json()["title"]) == (expected.item_id, expected.title)
            _ok_status(client.get(f"/v1/items/{_q(expected.item_id)}/similar", headers=R))
    for item in items:
        _ok_status(client.get(f"/v1/items/{_q(item['item_id'])}", headers=R))
    _ok_status(client.get(f"/v1/search?q={_q(query[:1000] or 'x')}&user_id={_q(query[:256])}", headers=R))
    request = _body({"query": query, "k": 3})
    _ok_status(client.post("/v1/ads/rank", content=request["content"], headers={**R, **request["headers"]}))
    request = _body({"recommend_model": query or "x"})
    _ok_status(client.post("/v1/admin/reload", content=request["content"], headers={**A, **request["headers"]}))
    _assert_store_is_valid(store)
    assert _files_beside(Path(client.app.state.settings.search_index_dir).parent) == before


@pytest.mark.parametrize("depth", [100, 10_000, 200_000])
def test_deeply_nested_json_is_refused_cleanly(api, depth):
    client, _ = api
    body = '{"events": ' + "[" * depth + "]" * depth + "}"
    response = client.post("/v1/events", content=body, headers={**R, "content-type": "application/json"})
    assert response.status_code in (400, 413, 422), response.text


def test_a_nan_literal_is_a_missing_value_never_a_stored_nan(api):
    """NaN is how pandas and Parquet exporters write "no value"; shoplm reads it as missing
    (documented in docs/data-format.md), so nothing non-finite reaches the store."""
    client, store = api
    raw = b'{"events": [{"event_type": "view", "value": NaN, "user_id": "u", "item_id": "item-1", "timestamp": 1}]}'
    response = client.post("/v1/events", content=raw, headers={**R, "content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert store.actor_events(user_id="u")[0].value is None


@pytest.mark.parametrize("raw", [b'{"events": [{"event_type": "view", "item_id": "\xff\xfe", "user_id": "u"}]}',
                                 b'{"events": [{"event_type": "view", "value": 1e999, "user_id": "u", "item_id": "item-1"}]}',
                                 b'\x00\x01\x02', b'{"events": "' + b"a" * 900_000 + b'"}'])
def test_malformed_bodies_get_4xx(api, raw):
    client, store = api
    response = client.post("/v1/events", content=raw, headers={**R, "content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    _assert_store_is_valid(store)


def test_report_examples_tried():
    """Runs last in this module: writes how many examples Hypothesis tried per test."""
    report("hypothesis", {"max_examples_per_test": EXAMPLES, "examples_run": dict(TRIED)})
    assert TRIED, "the property tests did not run before this one"
