"""Experiments: validation naming the field, sticky and share-true assignment, and the
statistics: an A/A test rarely differs, a real difference is found, a skewed split is flagged."""

from __future__ import annotations

import random

import pytest

from shoplm.data.experiments import Experiment, ExperimentError
from shoplm.engine.experiments import results

TWO = {"name": "fusion", "arms": [{"name": "control", "share": 0.5},
                                  {"name": "bm25", "share": 0.5, "settings": {"hybrid_dense_weight": 0.2}}]}


@pytest.mark.parametrize("change, field", [
    ({"arms": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.4}]}, "arms"),
    ({"arms": [{"name": "a", "share": 1.0}]}, "arms"),
    ({"arms": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}]}, "arms"),
    ({"arms": [{"name": "a", "share": 0.5}, {"name": "b", "share": -0.5}, {"name": "c", "share": 1.0}]}, "arms[1].share"),
    ({"arms": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "settings": {"store_url": "x"}}]},
     "arms[1].settings.store_url"),
    ({"arms": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "settings": {"hybrid_dense_weight": 2}}]},
     "arms[1].settings.hybrid_dense_weight"),
    ({"name": ""}, "name"),
])
def test_a_bad_experiment_names_the_field(change, field):
    with pytest.raises(ExperimentError) as error:
        Experiment.parse({**TWO, **change})
    assert error.value.field == field


def test_assignment_is_sticky_follows_the_shares_and_differs_by_salt():
    a = Experiment.parse({**TWO, "arms": [{"name": "x", "share": 0.2}, {"name": "y", "share": 0.8}]})
    b = Experiment.parse({**TWO, "arms": [{"name": "x", "share": 0.2}, {"name": "y", "share": 0.8}]})
    visitors = [f"v{i}" for i in range(20_000)]
    arms = [a.assign(v).name for v in visitors]
    assert arms == [a.assign(v).name for v in visitors]  # sticky
    assert 0.19 < arms.count("x") / len(arms) < 0.21
    agree = sum(x == b.assign(v).name for x, v in zip(arms, visitors)) / len(visitors)
    assert agree < 0.75  # independent salts: 0.2^2 + 0.8^2 = 0.68 by chance
    assert a.assign(None) is None
    stopped = Experiment.parse({**TWO, "status": "stopped"})
    promoted = Experiment.parse({**TWO, "status": "promoted", "winner": "bm25"})
    assert stopped.assign("v1") is None and promoted.assign("v1").name == "bm25"


def _run(rng: random.Random, experiment: Experiment, rates: dict[str, float], n: int = 400, drop: float = 0.0):
    per_arm: dict[str, dict[str, float]] = {}
    for i in range(n):
        arm = experiment.assign(f"visitor-{rng.random()}")
        if arm.name == "bm25" and rng.random() < drop:
            continue  # a broken logger that loses some of one arm's visitors
        row = per_arm.setdefault(experiment.label(arm), {"visitors": 0, "clicked": 0, "bought": 0,
                                                         "impressions": 0, "clicks": 0, "revenue": 0.0})
        row["visitors"] += 1
        row["impressions"] += 1
        if rng.random() < rates[arm.name]:
            row["clicked"] += 1
            row["clicks"] += 1
    return results(experiment, per_arm)


def _seeded(rng: random.Random) -> Experiment:
    """An experiment whose salt comes from `rng`: a seeded test is the same every run (the salt
    is random otherwise, and so which visitor lands in which arm)."""
    return Experiment.parse({**TWO, "salt": f"{rng.random()}"})


def test_the_statistics_are_honest_on_simulated_visitors():
    rng = random.Random(7)
    flagged_aa = sum(_run(rng, _seeded(rng), {"control": 0.3, "bm25": 0.3})["arms"]["bm25"]["vs_control"]
                     ["click_rate"]["p_value"] < 0.05 for _ in range(200))
    assert flagged_aa <= 0.08 * 200  # about 5% of A/A runs differ by chance
    found_ab = sum(_run(rng, _seeded(rng), {"control": 0.3, "bm25": 0.5})["arms"]["bm25"]["vs_control"]
                   ["click_rate"]["p_value"] < 0.05 for _ in range(100))
    assert found_ab >= 90
    # enough visitors: at 2,000 a 20% loss in one arm stays under the 0.001 threshold about one
    # time in ten
    skewed = _run(rng, _seeded(rng), {"control": 0.3, "bm25": 0.3}, n=4_000, drop=0.2)
    fair = _run(rng, _seeded(rng), {"control": 0.3, "bm25": 0.3}, n=4_000)
    assert skewed["sample_ratio"]["mismatch"] and not fair["sample_ratio"]["mismatch"]


def test_an_arm_may_name_a_recommendation_model_but_nothing_outside_the_models_directory():
    arm = Experiment.parse({**TWO, "arms": [{"name": "a", "share": 0.5},
                                            {"name": "b", "share": 0.5, "recommend_model": "scientific-v2"}]}).arms[1]
    assert arm.recommend_model == "scientific-v2"
    with pytest.raises(ExperimentError) as error:
        Experiment.parse({**TWO, "arms": [{"name": "a", "share": 0.5},
                                          {"name": "b", "share": 0.5, "recommend_model": "../elsewhere"}]})
    assert error.value.field == "arms[1].recommend_model"
