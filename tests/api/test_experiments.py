"""/v1/admin/experiments through HTTP: results over a time range (since/until, as the analytics
take them; until <= since is a 422 naming `until`), and stop and promote as one admin call each."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from shoplm.api import create_app
from shoplm.config import Settings
from shoplm.data.experiments import Experiment
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


def _two_layer_model(out):
    """A model that ranks differently from the bundled one: its first two transformer layers."""
    from sentence_transformers import SentenceTransformer

    from shoplm.lm.encoder import default_model_dir

    model = SentenceTransformer(str(default_model_dir()), device="cpu")
    bert = model[0].auto_model
    bert.encoder.layer = bert.encoder.layer[:2]
    bert.config.num_hidden_layers = 2
    model.save(str(out))
    return out


QUERIES = ["fan", "sofa for the living room", "cordless tools", "something to watch films", "lamp"]


def _pages(client, session_id, queries=QUERIES, **params):
    return [[h["item_id"] for h in client.get("/v1/search", params={"q": q, "session_id": session_id, **params},
                                              headers=R).json()["items"]] for q in queries]


def test_an_arm_searches_with_its_own_model_exactly_as_a_service_configured_with_it(tmp_path):
    models = tmp_path / "models"
    small = _two_layer_model(models / "two-layer")
    dense = {"hybrid_dense_weight": 1.0}  # both arms: the vectors decide, so the model shows
    common = dict(read_key=READ, admin_key=ADMIN, embedding_cache_dir=tmp_path / "cache", models_dir=models,
                  impression_flush_s=60.0, hybrid_dense_weight=1.0)
    references = {}
    for name, model in (("control", None), ("small", small)):
        settings = Settings(**common, search_index_dir=tmp_path / f"index-{name}",
                            **({"encoder_model": model} if model else {}))
        store = open_store("memory://")
        store.upsert_items(CATALOG)
        with TestClient(create_app(settings, Engine.open(settings, store))) as client:
            references[name] = _pages(client, "nobody-in-particular")
    assert references["control"] != references["small"]  # the two models do rank differently

    settings = Settings(**common, search_index_dir=tmp_path / "index")
    store = open_store("memory://")
    store.upsert_items(CATALOG)
    with TestClient(create_app(settings, Engine.open(settings, store))) as shop:
        bad = shop.post("/v1/admin/experiments", json={"name": "model", "arms": [
            {"name": "control", "share": 0.5, "settings": dense},
            {"name": "small", "share": 0.5, "settings": dense, "search_model": "missing"}]}, headers=A)
        assert error(bad, 422)["details"][0]["loc"] == ["body", "arms", 1, "search_model"]
        assert shop.get("/v1/admin/experiments", headers=A).json() == []  # nothing half-written
        created = shop.post("/v1/admin/experiments", json={"name": "model", "arms": [
            {"name": "control", "share": 0.5, "settings": dense},
            {"name": "small", "share": 0.5, "settings": dense, "search_model": "two-layer"}]}, headers=A)
        assert created.status_code == 200, created.text
        experiment = Experiment.from_body(created.json(), created.json()["id"], 0.0, 0.0)
        visitors = {}
        for v in range(40):
            visitors.setdefault(experiment.assign(f"v{v}").name, f"v{v}")
        for arm in ("control", "small"):
            assert _pages(shop, visitors[arm]) == references[arm], arm
        # the arm's pipeline follows the catalog: a new item, then a filter and a second page
        item = {"item_id": "fan-9", "title": "Bladeless desk fan", "category": "Home > Cooling > Fans", "price": 99.0}
        assert shop.post("/v1/items", json={"items": [item]}, headers=A).status_code == 200
        found = _pages(shop, visitors["small"], ["bladeless fan"], category="Home > Cooling > Fans")[0]
        assert "fan-9" in found and all(i.startswith("fan-") for i in found)
        second = _pages(shop, visitors["small"], ["fan"], limit=2, offset=2)[0]
        assert second == _pages(shop, visitors["small"], ["fan"], limit=10)[0][2:4]
        impression = shop.get("/v1/search", params={"q": "fan", "session_id": visitors["small"]}, headers=R).json()
        assert impression["list_id"]


def test_a_setting_named_by_a_non_ascii_digit_is_a_422_not_a_500(shop):
    arms = [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "settings": {"¹": None}}]
    bad = error(shop.post("/v1/admin/experiments", json={"name": "odd", "arms": arms}, headers=A), 422)
    assert bad["details"][0]["loc"] == ["body", "arms", 1, "settings", "¹"]
    nul = shop.post("/v1/admin/experiments", json={"name": "odd", "arms": [
        {"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "search_model": "x\u0000y"}]}, headers=A)
    assert nul.status_code == 422
