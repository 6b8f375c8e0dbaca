"""Cold users offline and through the service: `eval recommend --cold-users` holds users out of
training and scores them after each of their first events; replaying the same users event by
event through `/v1/events` and `/v1/recommend` gives the same figures (shoplm/engine/replay.py)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from shoplm.api import create_app
from shoplm.cli import app
from shoplm.config import Settings
from shoplm.engine.engine import Engine
from shoplm.engine.replay import replay, visitors
from shoplm.recommend.sequences import build_sequences, hold_out_users, read_catalog
from shoplm.store import open_store
from shoplm.store.ingest import ingest
from tests.recommend.conftest import write_shop

runner = CliRunner()
KS = (0, 1, 2, 3)


def test_held_out_users_train_nothing_and_tune_the_short_history_blend(small_settings, tmp_path):
    items, events = write_shop(tmp_path / "shop", n_actors=400, anonymous=False)  # erasable between replays
    model = tmp_path / "model"
    result = runner.invoke(app, ["train", "recommend", "--items", str(items), "--events", str(events),
                                 "--out", str(model), "--cold-users", "0.2"])
    assert result.exit_code == 0, result.output
    params = json.loads((model / "params.json").read_text())
    assert params["cold_users"] == 0.2
    blend = json.loads((model / "blend.json").read_text())
    assert "held-out validation users" in blend["tuned_on"]
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", "recommend", "--items", str(items), "--events", str(events), "--model",
                                 str(model), "--json", str(out), "--cold-users", "0.2", "--exclude-history"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    cold = report["slices"]["cold_users"]
    assert set(cold) >= {"0", "1", "2"} and {"popularity", "item_knn", "shoplm", "shoplm_served"} <= set(cold["1"])
    assert cold["0"]["shoplm_served"] == cold["0"]["popularity"]  # no history: popularity alone
    counts = report["dataset"]["slice_counts"]["cold_users"]
    catalog = read_catalog(items, events)
    seqs = build_sequences(catalog.events, catalog.item_ids, small_settings.event_weights)
    warm, held = hold_out_users(seqs, 0.2, small_settings.cold_users_seed)
    assert counts["0"] == len(held.test) and not set(held.test.actors) & set(warm.actors)
    assert not set(held.valid.actors) & (set(warm.actors) | set(held.test.actors))
    # a model trained without --cold-users saw those users: refused
    other = tmp_path / "other"
    assert runner.invoke(app, ["train", "recommend", "--items", str(items), "--events", str(events),
                               "--out", str(other)]).exit_code == 0
    refused = runner.invoke(app, ["eval", "recommend", "--items", str(items), "--events", str(events), "--model",
                                  str(other), "--json", str(out), "--cold-users", "0.2"])
    assert refused.exit_code != 0 and "--cold-users" in (refused.output + str(refused.exception))

    # the same users replayed through the service, one event at a time
    held_actors = set(held.test.actors) | set(held.valid.actors)
    training_events = tmp_path / "training-events.csv"
    lines = events.read_text().splitlines()
    header = lines[0].split(",")
    user_at, session_at = header.index("user_id"), header.index("session_id")

    def actor(line: str) -> str:
        fields = line.split(",")
        return fields[user_at] or f"session:{fields[session_at]}"

    training_events.write_text("\n".join([lines[0], *(l for l in lines[1:] if actor(l) not in held_actors)]) + "\n")
    settings = Settings(**{**small_settings.model_dump(), "recommend_model": model,
                           "search_index_dir": tmp_path / "index", "max_per_category": 0, "admin_key": "admin"})
    store = open_store("memory://")
    ingest(store, items=items, events=training_events)
    users = visitors(catalog.events, set(held.test.actors), small_settings.event_weights)
    with TestClient(create_app(settings, Engine.open(settings, store))) as client:
        served = replay(client, users, KS, exclude_seen=True, admin={"X-API-Key": "admin"})
    for k in KS:
        offline = cold[str(k)]["shoplm_served"]
        assert served[str(k)]["cases"] == counts[str(k)]
        assert served[str(k)]["ndcg@10"] == pytest.approx(offline["ndcg@10"], rel=0.02, abs=1e-3), k
        assert served[str(k)]["recall@10"] == pytest.approx(offline["recall@10"], rel=0.02, abs=1e-3), k
