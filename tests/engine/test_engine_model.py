"""The engine with a trained user model: it serves the model's scores, falls back to text
for items added after training, and swaps models atomically; and personalised search is
measured with the Ai et al. protocol on the generated shop."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shoplm.cli import app
from shoplm.engine.engine import Engine
from shoplm.store.ingest import ingest
from shoplm.data.records import Event, Item
from shoplm.store import open_store

runner = CliRunner()


@pytest.fixture
def trained(shop, small_settings, tmp_path):
    items, events = shop
    model = tmp_path / "model"
    result = runner.invoke(app, ["train", "recommend", "--items", str(items), "--events", str(events), "--out", str(model)])
    assert result.exit_code == 0, result.output
    return items, events, model


def test_engine_serves_the_trained_model_and_new_items(trained, small_settings, tmp_path):
    items, events, model = trained
    settings = small_settings.model_copy(update={"recommend_model": model, "search_index_dir": tmp_path / "index"})
    store = open_store("memory://")
    ingest(store, items=items, events=events)
    engine = Engine.open(settings, store)
    assert engine.model.scorer is not None and (engine.model.rows >= 0).all()
    blend = json.loads((model / "blend.json").read_text())  # written by train recommend
    assert engine.model.blend.popularity == blend["popularity"]
    recs = engine.recommend(session_id="new-visitor", item_id="L0S1", k=5)
    assert len(recs) == 5 and "L0S1" not in [r.item_id for r in recs]
    engine.upsert_items([Item("NEW1", "Bosch drill bit 20 mm", category="Tools > Drilling > Drill Bits", brand="Bosch")])
    store.add_events([Event(2e9, "view", session_id="v", item_id="L0S2")])
    ranked = [r.item_id for r in engine.recommend(session_id="v", k=25)]
    assert "NEW1" in ranked  # never trained on, recommendable through its text at once
    engine.reload_model(model)
    assert engine.model.scorer.directory == model


def test_personalized_search_beats_query_only_on_the_shop(trained, small_settings, tmp_path):
    items, events, model = trained
    out = tmp_path / "pers.json"
    result = runner.invoke(app, ["eval", "personalized-search", "--items", str(items), "--events", str(events),
                                 "--json", str(out), "--model", str(model), "--write-blend"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["n_cases"] > 0 and set(report["models"]) == {"query_only", "personalized"}
    assert report["models"]["personalized"]["ndcg@10"] >= report["models"]["query_only"]["ndcg@10"]
    blend = json.loads((model / "blend.json").read_text())
    assert blend["search_personal"]["0"] == 0.0 and blend["search_personal"]["1"] == report["beta"]


def test_blend_tuning_picks_popularity_when_it_helps_and_not_when_it_hurts():
    import numpy as np

    from shoplm.recommend.blend import tune_recommend_blend
    from shoplm.recommend.sequences import Cases, Histories

    rng = np.random.default_rng(0)
    n, m = 40, 120
    targets = rng.integers(0, 10, m)  # targets are always among the 10 most popular items
    popularity = np.r_[np.full(10, 100.0), np.ones(n - 10)]
    cases = Cases([f"a{i}" for i in range(m)], Histories([np.array([1, 2])] * m, [np.ones(2, np.float32)] * m), targets)
    noisy = lambda h: rng.normal(size=(len(h), n)).astype(np.float32)  # a model that knows nothing
    helped = tune_recommend_blend(noisy, cases, popularity, min_cases=50)
    assert helped.popularity["2-3"] > 0 and helped.tuned_on.startswith("validation targets")

    def oracle(h):  # knows the target exactly; popularity can only blur it
        out = np.zeros((len(h), n), dtype=np.float32)
        out[np.arange(len(h)), targets[: len(h)]] = 10.0
        return out

    assert tune_recommend_blend(oracle, cases, popularity, min_cases=50, batch=m).popularity["2-3"] == 0.0


def test_reload_under_load_fails_no_request(trained, small_settings, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from shoplm.api import create_app

    items, events, model = trained
    settings = small_settings.model_copy(update={"recommend_model": model, "search_index_dir": tmp_path / "index",
                                                 "admin_key": SecretStr("admin"), "models_dir": model.parent})
    store = open_store(f"sqlite:///{tmp_path / 'shop.db'}")
    ingest(store, items=items, events=events)
    with TestClient(create_app(settings, Engine.open(settings, store))) as client:
        def ask(i: int) -> int:
            return client.get("/v1/recommend", params={"user_id": f"u{1 + i % 40}", "k": 5}).status_code

        def reload(_: int) -> int:
            return client.post("/v1/admin/reload", json={"recommend_model": model.name},
                               headers={"X-API-Key": "admin"}).status_code

        calls = [reload if i % 20 == 10 else ask for i in range(126)]  # a reload among every 20 requests
        with ThreadPoolExecutor(max_workers=4) as pool:
            statuses = list(pool.map(lambda i: calls[i](i), range(len(calls))))
    assert statuses == [200] * 126


def test_an_experiment_arm_serves_its_own_recommendation_model(trained, small_settings, tmp_path):
    from shoplm.data.experiments import Experiment

    items, events, model = trained
    settings = small_settings.model_copy(update={"search_index_dir": tmp_path / "index", "models_dir": tmp_path})
    store = open_store("memory://")
    ingest(store, items=items, events=events)
    engine = Engine.open(settings, store)  # no configured model: the control serves zero-shot text
    experiment = engine.put_experiment(Experiment.parse({"name": "model", "arms": [
        {"name": "control", "share": 0.5}, {"name": "trained", "share": 0.5, "recommend_model": "model"}]}))
    visitors = [f"v{i}" for i in range(40)]
    arms = {v: experiment.assign(v).name for v in visitors}
    trained_visitor = next(v for v in visitors if arms[v] == "trained")
    assert engine.arm(None, trained_visitor)[0] == "model:trained"
    state = engine.arm_model(engine.arm(None, trained_visitor)[1])
    assert state.scorer is not None and engine.model.scorer is None
    with_model = engine.recommend(session_id=trained_visitor, item_id="L0S1", k=5, model=state)
    control = engine.recommend(session_id=trained_visitor, item_id="L0S1", k=5)
    assert [r.item_id for r in with_model] != [r.item_id for r in control]
    with pytest.raises(Exception, match="recommend_model"):
        engine.put_experiment(Experiment.parse({"name": "m2", "arms": [
            {"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "recommend_model": "missing"}]}))


def test_a_run_the_wall_clock_cap_cuts_short_says_so(shop, small_settings, tmp_path, monkeypatch):
    items, events = shop
    model = tmp_path / "model"
    full = runner.invoke(app, ["train", "recommend", "--items", str(items), "--events", str(events), "--out", str(model)])
    assert full.exit_code == 0 and "CUT SHORT" not in full.output
    params = json.loads((model / "params.json").read_text())
    assert (params["epochs"], params["planned_epochs"], params["cut_short"]) == (2, 2, False)
    assert params["stopped"] in ("epochs", "patience")
    monkeypatch.setenv("SHOPLM_RECOMMEND_MAX_MINUTES", "0.000001")  # the cap passes during the first epoch
    capped = runner.invoke(app, ["train", "recommend", "--items", str(items), "--events", str(events),
                                 "--out", str(tmp_path / "capped")])
    assert capped.exit_code == 0, capped.output
    assert "CUT SHORT" in capped.output and "1 of at most 2 epochs (50%)" in " ".join(capped.output.split())
    params = json.loads((tmp_path / "capped" / "params.json").read_text())
    assert (params["epochs"], params["stopped"], params["cut_short"]) == (1, "cap", True)
