"""Access: per-key rate limits (429 + Retry-After), keys never in logs or error messages,
CORS closed unless configured, every admin route refused to the read key."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from shoplm.api import create_app
from shoplm.api.deps import require_admin
from shoplm.config import Settings
from shoplm.engine.engine import Engine
from shoplm.store import open_store
from tests.api.conftest import A, ADMIN, R, READ
from tests.service import ServiceProcess


def _client(**settings) -> TestClient:
    config = Settings(read_key=READ, admin_key=ADMIN, **settings)
    return TestClient(create_app(config, Engine(config, open_store("memory://"))))


def test_rate_limit_is_per_key_and_answers_429_with_retry_after():
    with _client(rate_limit_per_second=0.5, rate_limit_burst=3) as client:
        assert [client.get("/v1/users/u/profile", headers=R).status_code for _ in range(3)] == [200] * 3
        refused = client.get("/v1/users/u/profile", headers=R)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "2"  # one token every 2 s
        assert refused.json()["error"]["status"] == 429 and "too many requests" in refused.json()["error"]["message"]
        assert client.get("/v1/users/u/profile", headers=A).status_code == 200  # the admin key has its own bucket
        assert client.get("/readyz").status_code == 200  # health is never limited
        assert client.get("/metrics").status_code == 200
        assert 'status="429"' in client.get("/metrics").text


def test_requests_without_a_valid_key_share_one_bucket_per_address():
    with _client(rate_limit_per_second=0.5, rate_limit_burst=2) as client:
        statuses = [client.get("/v1/users/u/profile", headers={"X-API-Key": f"guess-{i}"}).status_code
                    for i in range(4)]
        assert statuses == [401, 401, 429, 429]  # new guesses earn no new buckets
        assert client.get("/v1/users/u/profile", headers=R).status_code == 200


def test_rate_limit_zero_means_no_limit():
    with _client(rate_limit_per_second=0, rate_limit_burst=1) as client:
        assert {client.get("/v1/users/u/profile", headers=R).status_code for _ in range(20)} == {200}


def test_cors_is_closed_by_default():
    with _client() as client:
        preflight = client.options("/v1/search", headers={"Origin": "https://evil.example",
                                                           "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in preflight.headers
        answer = client.get("/v1/users/u/profile", headers={**R, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in answer.headers


def test_cors_allows_only_the_configured_origins():
    with _client(cors_origins=["https://shop.example"]) as client:
        ok = client.options("/v1/search", headers={"Origin": "https://shop.example",
                                                   "Access-Control-Request-Method": "GET",
                                                   "Access-Control-Request-Headers": "X-API-Key"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://shop.example"
        other = client.get("/v1/users/u/profile", headers={**R, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def _admin_routes() -> list[APIRoute]:
    from shoplm.api.routes import router

    return [r for r in router.routes if isinstance(r, APIRoute)
            and any(d.call is require_admin for d in r.dependant.dependencies)]


def test_every_admin_route_refuses_the_read_key():
    with _client() as client:
        routes = _admin_routes()
        assert {r.path for r in routes} >= {"/v1/items", "/v1/items/{item_id:path}", "/v1/users/{user_id:path}",
                                            "/v1/admin/reload"}
        for route in routes:
            for method in route.methods:
                path = route.path.replace("{item_id:path}", "x").replace("{user_id:path}", "u")
                response = client.request(method, path, headers=R, json={})
                assert response.status_code == 403, (method, path, response.text)


def test_keys_never_appear_in_logs_or_error_messages(tmp_path):
    """A real server with access logs on: right keys, wrong keys, keys on the wrong routes,
    bad bodies, and a key in a place it does not belong (the query string is not read)."""
    from tests.reliability.conftest import catalog

    store_url = f"sqlite:///{tmp_path / 'shop.db'}"
    store = open_store(store_url)
    store.upsert_items(catalog(10))
    store.close()
    wrong = "wrong-key-0123456789abcdef"
    env = {"SHOPLM_READ_KEY": READ, "SHOPLM_ADMIN_KEY": ADMIN, "SHOPLM_LOG_LEVEL": "debug"}
    bodies = []
    with ServiceProcess(store_url, tmp_path, env=env) as service, httpx.Client(base_url=service.url, timeout=30) as http:
        for headers in (R, A, {"X-API-Key": wrong}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": f"Bearer {READ}"}, {}):
            for method, path, body in (("GET", "/v1/search?q=drill", None), ("GET", "/v1/users/u/profile", None),
                                       ("POST", "/v1/events", {"events": [{"event_type": "nope"}]}),
                                       ("POST", "/v1/items", {"items": [{"item_id": "x"}]}),
                                       ("DELETE", "/v1/users/u", None),
                                       ("POST", "/v1/admin/reload", {"recommend_model": "../x"})):
                bodies.append(http.request(method, path, headers=headers, json=body).text)
        log = service.log.read_text()
    assert "GET /v1/search?q=drill" in log  # access logging is on: the check below is not vacuous
    for key in (READ, ADMIN, wrong):
        assert key not in log
        assert not [b for b in bodies if key in b]
    assert not re.search(r"x-api-key['\":= ]+\w", log, re.IGNORECASE)


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
def test_read_key_cannot_reach_admin_routes_through_either_header(header):
    value = READ if header == "X-API-Key" else f"Bearer {READ}"
    with _client() as client:
        assert client.delete("/v1/users/u", headers={header: value}).status_code == 403
