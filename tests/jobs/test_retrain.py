"""`shoplm jobs retrain` on a generated shop: a first run trains, promotes and reloads a live
service; the decision follows the hold-out figures and the margin (kept when worse, promoted
when not); every run leaves a report; bad options are refused before any training."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from shoplm.api import create_app
from shoplm.data.readers import read_events, read_items
from shoplm.engine.engine import Engine
from shoplm.errors import ConfigError
from shoplm.jobs import retrain as job
from shoplm.store import open_store
from tests.recommend.conftest import one_torch_thread, shop, small_settings  # noqa: F401  (fixtures)

ADMIN = "admin-key-for-tests"


@pytest.fixture
def stocked(shop, small_settings, tmp_path):
    items, events = shop
    store = open_store(f"sqlite:///{tmp_path / 'shop.db'}")
    store.upsert_items(read_items(items))
    store.add_events(read_events(events))
    from shoplm.config import Settings  # small_settings' environment, and these

    settings = Settings(models_dir=tmp_path / "models", admin_key=ADMIN, read_key="read",
                        search_index_dir=tmp_path / "index")
    settings.models_dir.mkdir()
    yield settings, store
    store.close()


def test_a_first_run_promotes_reloads_the_service_and_leaves_a_report(stocked):
    settings, store = stocked
    with TestClient(create_app(settings, Engine.open(settings, store))) as client:
        result = job.retrain(settings, store, name="first", reload_urls=["http://testserver"], client=client)
        assert result.promoted and result.serving is None and result.reason == "no serving model to compare with"
        assert result.reloaded[0]["ok"], result.reloaded
        assert client.app.state.engine.model.scorer.directory == settings.models_dir / "first"
    assert (settings.models_dir / "current").resolve() == (settings.models_dir / "first").resolve()
    document = json.loads((settings.models_dir / "first" / "retrain" / "report.json").read_text())
    counts = document["snapshot"]
    assert counts["events_read"] == counts["events_used"] + counts["events_after_start"] + counts["events_unknown_item"]
    assert counts["events_used"] == store.counts()["events"] and document["hold_out"]["cases"] > 0
    assert 0 < document["models"]["candidate"]["ndcg@10"] <= 1
    assert "Promoted" in result.report.read_text()


@pytest.mark.parametrize("candidate, serving, margin, promoted", [
    (0.090, 0.100, 0.01, False),  # 10% worse: kept
    (0.0995, 0.100, 0.01, True),  # 0.5% worse, within the margin
    (0.100, 0.100, 0.0, True),  # equal is not worse
    (0.120, 0.100, 0.0, True),
])
def test_the_decision_follows_the_hold_out_and_the_margin(stocked, monkeypatch, candidate, serving, margin, promoted):
    settings, store = stocked
    first = job.retrain(settings, store, name="serving")
    assert first.promoted
    figures = {"candidate": candidate, "serving": serving}

    def evaluated(models, *args, **kwargs):  # the figures the case needs; the real ranking is tested above
        overall = {m.name: {"ndcg@10": figures[m.name], "recall@10": figures[m.name], "mrr": 0.0} for m in models}
        return overall, {}, {"slice_counts": {}, "seconds": {}}

    monkeypatch.setattr(job, "evaluate_recommenders", evaluated)
    calls = []

    class Recorder:
        def post(self, url, json, headers):
            calls.append((url, json, headers))
            return type("Answer", (), {"status_code": 200, "headers": {}, "text": "ok"})()

    result = job.retrain(settings, store, serving="serving", name="next", margin=margin,
                         reload_urls=["http://a:8000", "http://b:8000/"], client=Recorder())
    assert result.promoted is promoted
    current = (settings.models_dir / "current").resolve().name
    if promoted:
        assert [c[0] for c in calls] == ["http://a:8000/v1/admin/reload", "http://b:8000/v1/admin/reload"]
        assert calls[0][1] == {"recommend_model": "next"} and calls[0][2] == {"X-API-Key": ADMIN}
        assert current == "next"
    else:
        assert calls == [] and current == "serving"
        assert "Kept the serving model" in result.report.read_text()
    assert (settings.models_dir / "next" / "retrain" / "report.md").is_file()  # either way


def test_bad_options_are_refused_before_training(stocked):
    settings, store = stocked
    with pytest.raises(ConfigError, match="--serving"):
        job.retrain(settings, store, serving="missing", name="x")
    with pytest.raises(ConfigError, match="inside the models directory"):
        job.retrain(settings, store, name="../outside")
    with pytest.raises(ConfigError, match="--margin"):
        job.retrain(settings, store, margin=1.5)
    assert not any(settings.models_dir.iterdir())  # nothing was trained or written
