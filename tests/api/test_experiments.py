"""/v1/admin/experiments through HTTP: results over a time range (since/until, as the analytics
take them; until <= since is a 422 naming `until`), and stop and promote as one admin call each."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from shoplm.api import create_app
from shoplm.config import Settings
from shoplm.engine.engine import Engine
from shoplm.store import open_store
from tests.api.conftest import ADMIN, READ, A, R
from tests.api.test_routes import error
from tests.engine.test_rules import CATALOG

ARMS = [{"name": "control", "share": 0.5}, {"name": "bm25", "share": 0.5, "settings": {"hybrid_dense_weight": 0.2}}]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("experiments")
    settings = Settings(read_key=READ, admin_key=ADMIN, search_index_dir=tmp / "index", embedding_cache_dir=tmp / "cache",
                        impression_flush_s=60.0)
    store = open_store("memory://")
    store.upsert_items(CATALOG)
    with TestClient(create_app(settings, Engine.open(settings, store))) as client:
        yield client


def test_results_over_a_time_range_and_stop_and_promote(shop):
    created = shop.post("/v1/admin/experiments", json={"name": "fusion", "arms": ARMS}, headers=A)
    assert created.status_code == 200, created.text
    experiment = created.json()
    path = f"/v1/admin/experiments/{experiment['id']}"
    try:
        start = time.time()
        for v in range(12):
            hits = shop.get("/v1/search", params={"q": "fan", "session_id": f"v{v}"}, headers=R).json()
            if v % 2:
                click = {"session_id": f"v{v}", "event_type": "click", "item_id": hits["items"][0]["item_id"],
                         "position": 0, "list_id": hits["list_id"]}
                assert shop.post("/v1/events", json={"events": [click]}, headers=R).status_code == 200
        whole = shop.get(f"{path}/results", headers=A).json()
        assert sum(arm["visitors"] for arm in whole["arms"].values()) == 12
        assert sum(arm["clicked"] for arm in whole["arms"].values()) == 6
        ranged = shop.get(f"{path}/results", params={"since": int(start) - 1, "until": int(time.time()) + 60},
                          headers=A).json()
        assert ranged["arms"] == whole["arms"] and ranged["since"] == int(start) - 1
        later = shop.get(f"{path}/results", params={"since": int(time.time()) + 60}, headers=A).json()
        assert [arm["visitors"] for arm in later["arms"].values()] == [0, 0] and later["until"] is None
        earlier = shop.get(f"{path}/results", params={"until": int(start) - 1}, headers=A).json()
        assert [arm["visitors"] for arm in earlier["arms"].values()] == [0, 0]

        bad = error(shop.get(f"{path}/results", params={"since": 100, "until": 50}, headers=A), 422)
        assert bad["details"][0]["loc"] == ["query", "until"] and "until" in bad["message"]
        assert error(shop.get(f"{path}/results", params={"since": -1}, headers=A), 422)["details"][0]["loc"] == \
            ["query", "since"]
        error(shop.get(f"{path}/results", headers=R), 403)
        error(shop.get("/v1/admin/experiments/999999/results", params={"since": 0}, headers=A), 404)

        error(shop.post(f"{path}/promote", json={"arm": "nope"}, headers=A), 422)
        error(shop.post(f"{path}/promote", json={"arm": "bm25"}, headers=R), 403)
        promoted = shop.post(f"{path}/promote", json={"arm": "bm25"}, headers=A).json()
        assert (promoted["status"], promoted["winner"]) == ("promoted", "bm25")
        stopped = shop.post(f"{path}/stop", headers=A).json()
        assert stopped["status"] == "stopped"
        assert shop.get(path, headers=A).json()["status"] == "stopped"
    finally:
        assert shop.delete(path, headers=A).status_code == 204
