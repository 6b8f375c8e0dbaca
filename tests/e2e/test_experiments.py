"""Experiments through the real service on loopback, with seeded simulated shoppers: an A/A
experiment rarely differs, an arm that ranks what shoppers want higher is found better, and a
skewed split is flagged by the sample-ratio check."""

from __future__ import annotations

import random

import httpx
import pytest

from shoplm.data.experiments import Experiment
from shoplm.data.records import Item
from shoplm.store import open_store
from tests.service import ServiceProcess

ADMIN = {"X-API-Key": "admin-key-for-tests"}
# (wanted item, its title, what a shopper types, a title sharing a word with the query but not
# what is wanted): BM25 alone ranks the distractor first, the language model the wanted item.
WANTS = [("glue", "Wood glue, waterproof", "timber adhesive", "Timber decking board"),
         ("mower", "Electric lawn mower", "grass cutter", "Grass seed mix"),
         ("ladder", "Aluminium step ladder", "climbing steps", "Climbing rope"),
         ("paint", "Interior wall paint, white", "emulsion for walls", "Wall clock"),
         ("lock", "Padlock with two keys", "security lock", "Security camera"),
         ("kettle", "Electric kettle", "water boiler", "Water filter")]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    work = tmp_path_factory.mktemp("experiments")
    url = f"sqlite:///{work / 'shop.db'}"
    store = open_store(url)
    store.upsert_items([Item(i, title) for i, title, _, _ in WANTS] + [Item(f"d-{i}", d) for i, _, _, d in WANTS])
    store.close()
    # thousands of simulated shoppers share one client: no per-key rate limit (0 = off)
    with ServiceProcess(url, work, env={"SHOPLM_ADMIN_KEY": ADMIN["X-API-Key"], "SHOPLM_RULES_REFRESH_S": "0.01",
                                        "SHOPLM_RATE_LIMIT_PER_SECOND": "0"}) as s:
        with httpx.Client(base_url=s.url, timeout=30) as client:
            yield client


def _shoppers(client: httpx.Client, run: int, arms: list[dict], n: int = 60, skip_b: float = 0.0) -> dict:
    """Each shopper searches for one of WANTS and clicks the wanted item with a probability that
    falls with its position: 0.9 first, 0.3 in the top 5, else 0.05."""
    created = client.post("/v1/admin/experiments", json={"name": f"run-{run}", "arms": arms, "salt": f"run-{run}"},
                          headers=ADMIN)  # seeded: the same assignment of shoppers every time
    assert created.status_code == 200, created.text
    experiment = created.json()
    local = Experiment.parse(experiment)
    rng = random.Random(run)
    events = []
    for i in range(n):
        session = f"run{run}-shopper{i}"
        if skip_b and local.assign(session).name == "b" and rng.random() < skip_b:
            continue  # a logger that loses some of one arm's visitors
        wanted, _, query, _ = rng.choice(WANTS)
        page = client.get("/v1/search", params={"q": query, "session_id": session}).json()
        ids = [h["item_id"] for h in page["items"]]
        position = ids.index(wanted) if wanted in ids else None
        chance = 0.05 if position is None or position >= 5 else 0.9 if position == 0 else 0.3
        if rng.random() < chance and position is not None:
            events.append({"session_id": session, "event_type": "click", "item_id": ids[position],
                           "position": position, "list_id": page["list_id"]})
    if events:
        assert client.post("/v1/events", json={"events": events}).status_code == 200
    results = client.get(f"/v1/admin/experiments/{experiment['id']}/results", headers=ADMIN).json()
    assert client.post(f"/v1/admin/experiments/{experiment['id']}/stop", headers=ADMIN).status_code == 200
    return results


SAME = [{"name": "a", "share": 0.5, "settings": {"hybrid_dense_weight": 1.0}},
        {"name": "b", "share": 0.5, "settings": {"hybrid_dense_weight": 1.0}}]
BETTER = [{"name": "a", "share": 0.5, "settings": {"hybrid_dense_weight": 0.0}},  # BM25 alone: the distractor first
          {"name": "b", "share": 0.5, "settings": {"hybrid_dense_weight": 1.0}}]  # the language model: the wanted item


def test_an_aa_experiment_rarely_differs_and_a_better_arm_is_found(service):
    aa = [_shoppers(service, run, SAME) for run in range(40)]
    false_alarms = sum(r["arms"]["b"]["vs_control"]["click_rate"]["p_value"] < 0.05 for r in aa)
    assert false_alarms <= 4, false_alarms  # about 5% of 40
    ab = [_shoppers(service, 100 + run, BETTER) for run in range(40)]
    found = sum(r["arms"]["b"]["vs_control"]["click_rate"]["p_value"] < 0.05
                and r["arms"]["b"]["click_rate"] > r["arms"]["a"]["click_rate"] for r in ab)
    assert found >= 36, found  # at least 90% of runs
    assert all(r["arms"]["a"]["visitors"] + r["arms"]["b"]["visitors"] == 60 for r in aa + ab)
    # the check flags p < 0.001: over 80 fair runs it fires 0.08 times on average
    assert sum(r["sample_ratio"]["mismatch"] for r in aa + ab) <= 1


def test_a_skewed_split_is_flagged(service):
    skewed = _shoppers(service, 500, SAME, n=400, skip_b=0.5)
    assert skewed["sample_ratio"]["mismatch"], skewed["sample_ratio"]


def test_bad_experiments_answer_422_naming_the_field_and_only_one_runs(service):
    bad = service.post("/v1/admin/experiments", headers=ADMIN, json={"name": "x", "arms": [
        {"name": "a", "share": 0.5}, {"name": "b", "share": 0.6}]})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["loc"] == ["body", "arms"]
    first = service.post("/v1/admin/experiments", headers=ADMIN, json={"name": "one", "arms": SAME}).json()
    second = service.post("/v1/admin/experiments", headers=ADMIN, json={"name": "two", "arms": SAME})
    assert second.status_code == 422 and "stop it first" in second.json()["error"]["message"]
    promoted = service.post(f"/v1/admin/experiments/{first['id']}/promote", headers=ADMIN, json={"arm": "b"}).json()
    assert promoted["status"] == "promoted" and promoted["winner"] == "b"
    assert service.post(f"/v1/admin/experiments/{first['id']}/stop", headers=ADMIN).json()["status"] == "stopped"
    assert service.get("/v1/admin/experiments", headers={"X-API-Key": "wrong"}).status_code == 401
