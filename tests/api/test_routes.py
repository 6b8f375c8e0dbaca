"""Every route: success, and the 401/403/404/413/422 cases, on every store backend."""

from __future__ import annotations

import os

import pytest

from tests.api.conftest import A, ADMIN, R, READ

EVENT = {"timestamp": "2024-05-01T12:00:00Z", "user_id": "u1", "session_id": "s1", "event_type": "view",
         "item_id": "drill-1"}


def error(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["status"] == status and body["error"]["message"]
    return body["error"]


def test_health_and_readiness_need_no_key(client):
    assert client.get("/healthz").json() == {"status": "ok", "worker": os.getpid()}
    assert client.get("/readyz").json() == {"status": "ready"}
    assert "shoplm_requests_total" in client.get("/metrics").text


@pytest.mark.parametrize("method, path", [
    ("get", "/v1/items/drill-1"), ("get", "/v1/users/u1/profile"), ("get", "/v1/sessions/s1/profile"),
    ("post", "/v1/events"), ("get", "/v1/search?q=drill"), ("get", "/v1/recommend"),
    ("get", "/v1/items/drill-1/similar"), ("post", "/v1/ads/rank"),
    ("post", "/v1/items"), ("put", "/v1/items/x"), ("delete", "/v1/items/x"), ("delete", "/v1/users/u1"),
    ("post", "/v1/admin/reload"),
])
def test_no_key_or_a_wrong_key_is_401(client, method, path):
    error(getattr(client, method)(path), 401)
    error(getattr(client, method)(path, headers={"X-API-Key": "nope"}), 401)


@pytest.mark.parametrize("method, path", [("post", "/v1/items"), ("put", "/v1/items/x"), ("delete", "/v1/items/x"),
                                          ("delete", "/v1/users/u1"), ("post", "/v1/admin/reload")])
def test_read_key_on_admin_route_is_403(client, method, path):
    message = error(getattr(client, method)(path, headers=R), 403)["message"]
    assert READ not in message


def test_bearer_header_works(client, catalog):
    assert client.get("/v1/items/drill-1", headers={"Authorization": f"Bearer {READ}"}).status_code == 200
    assert client.get("/v1/items/drill-1", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200


def test_item_crud(client, catalog):
    item = client.get("/v1/items/glue-1", headers=R).json()
    assert item["attributes"] == {"volume_ml": 250} and item["available"] is True
    put = client.put("/v1/items/glue-1", json={"title": "Wood glue XL", "price": 9.0, "available": False}, headers=A)
    assert put.status_code == 200 and put.json()["title"] == "Wood glue XL"
    assert client.get("/v1/items/glue-1", headers=R).json()["available"] is False
    assert client.delete("/v1/items/glue-1", headers=A).status_code == 204
    error(client.get("/v1/items/glue-1", headers=R), 404)
    error(client.delete("/v1/items/glue-1", headers=A), 404)


def test_item_validation_is_422_with_field_path(client):
    bad = client.post("/v1/items", json={"items": [{"item_id": "a", "title": "ok"}, {"item_id": "b", "title": " "}]},
                      headers=A)
    details = error(bad, 422)["details"]
    assert details[0]["loc"] == ["body", "items", 1, "title"]
    typed = error(client.post("/v1/items", json={"items": [{"item_id": "a", "title": "t", "price": "cheap"}]},
                              headers=A), 422)
    assert typed["details"][0]["loc"] == ["body", "items", 0, "price"]
    error(client.post("/v1/items", json={"items": [{"item_id": "a", "title": "t"}, {"item_id": "a", "title": "u"}]},
                      headers=A), 422)
    assert client.get("/v1/items/a", headers=R).status_code == 404  # nothing of a bad batch is written


def test_events_are_acknowledged_after_commit_and_idempotent(client, catalog):
    first = client.post("/v1/events", json={"events": [EVENT, {**EVENT, "event_type": "purchase"}]}, headers=R)
    assert first.json() == {"accepted": 2, "stored": 2, "duplicates": 0}
    again = client.post("/v1/events", json={"events": [EVENT]}, headers=R)
    assert again.json() == {"accepted": 1, "stored": 0, "duplicates": 1}
    profile = client.get("/v1/users/u1/profile", headers=R).json()
    assert profile["event_counts"]["view"] == 1 and profile["event_counts"]["purchase"] == 1


def test_event_without_timestamp_gets_the_server_time(client, catalog):
    assert client.post("/v1/events", json={"events": [{"session_id": "s", "event_type": "search", "query": "saw"}]},
                       headers=R).json()["stored"] == 1
    assert client.get("/v1/sessions/s/profile", headers=R).json()["recent_queries"] == ["saw"]


@pytest.mark.parametrize("event, loc", [
    ({**EVENT, "event_type": "wishlist"}, ["body", "events", 0, "event_type"]),
    ({**EVENT, "timestamp": "soon"}, ["body", "events", 0, "timestamp"]),
    ({**EVENT, "item_id": "ghost"}, ["body", "events", 0, "item_id"]),
    ({"timestamp": 1, "session_id": "s", "event_type": "search"}, ["body", "events", 0, "query"]),
    ({**EVENT, "user_id": None, "session_id": None}, ["body", "events", 0, "user_id"]),
    ({**EVENT, "surprise": 1}, ["body", "events", 0, "surprise"]),
])
def test_bad_event_is_422_with_field_path_and_nothing_is_stored(client, catalog, event, loc):
    details = error(client.post("/v1/events", json={"events": [EVENT, event]}, headers=R), 422)["details"]
    assert details[0]["loc"][:2] == ["body", "events"] and details[0]["loc"][3] == loc[3]
    assert client.get("/v1/users/u1/profile", headers=R).json()["is_new"] is True


def test_too_many_events_is_422(client, catalog):
    error(client.post("/v1/events", json={"events": [EVENT] * 51}, headers=R), 422)


def test_body_over_the_limit_is_413(client):
    error(client.post("/v1/events", content=b"{" + b" " * 30_000 + b"}", headers={**R, "content-type": "application/json"}), 413)


def test_streamed_body_over_the_limit_is_413(client):
    def chunks():
        for _ in range(30):
            yield b" " * 1_000

    error(client.post("/v1/events", content=chunks(), headers={**R, "content-type": "application/json"}), 413)


def test_malformed_json_is_422(client):
    error(client.post("/v1/events", content=b"{not json", headers={**R, "content-type": "application/json"}), 422)


def test_unknown_user_profile_is_new(client):
    profile = client.get("/v1/users/nobody/profile", headers=R).json()
    assert profile["is_new"] is True and profile["event_counts"]["view"] == 0


def test_delete_user_leaves_no_trace(client, catalog):
    client.post("/v1/events", json={"events": [EVENT, {**EVENT, "user_id": None, "event_type": "click"},
                                               {**EVENT, "user_id": "u2", "session_id": "s2"}]}, headers=R)
    assert client.delete("/v1/users/u1", headers=A).json() == {"user_id": "u1", "deleted_events": 2}
    assert client.get("/v1/users/u1/profile", headers=R).json()["is_new"] is True
    assert client.get("/v1/sessions/s1/profile", headers=R).json()["is_new"] is True
    assert client.get("/v1/users/u2/profile", headers=R).json()["is_new"] is False


def test_unknown_route_is_json_404(client):
    assert "no route" in error(client.get("/v1/nothing-here", headers=R), 404)["message"]


def test_admin_routes_refuse_when_no_admin_key_is_configured(store_url):
    from fastapi.testclient import TestClient

    from shoplm.api import create_app
    from shoplm.config import Settings
    from shoplm.engine.engine import Engine
    from shoplm.store import open_store

    settings = Settings()
    with TestClient(create_app(settings, Engine(settings, open_store(store_url)))) as open_client:
        error(open_client.post("/v1/items", json={"items": []}, headers={"X-API-Key": "anything"}), 403)
        assert open_client.get("/v1/users/u/profile").status_code == 200  # reads are open without a read key


def test_reload_of_a_missing_model_is_404_and_bad_body_422(client):
    error(client.post("/v1/admin/reload", json={"recommend_model": "no-such-model"}, headers=A), 404)
    error(client.post("/v1/admin/reload", json={}, headers=A), 422)


@pytest.mark.parametrize("outside", ["/etc", "../../etc", "..", "a/../../b", "/tmp/../etc/passwd"])
def test_reload_never_reads_outside_the_models_dir(client, outside):
    response = error(client.post("/v1/admin/reload", json={"recommend_model": outside}, headers=A), 422)
    assert "outside the models directory" in response["message"]


def test_ads_body_is_validated(client):
    error(client.post("/v1/ads/rank", json={"k": 0}, headers=R), 422)
    error(client.post("/v1/ads/rank", json={"query": "x", "bid": 9}, headers=R), 422)
