"""Metric code checked against ranx on the same runs, plus hand-computed cases."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from shoplm.metrics import ranking_metrics, single_target_metrics, target_ranks


def test_hand_computed():
    ranked = [["a", "b", "c"], ["x", "y", "z"]]
    qrels = [{"b": 2.0, "c": 1.0, "d": 0.0}, {"q": 1.0}]
    m = ranking_metrics(ranked, qrels, ks=(3,), mrr_k=3)
    dcg = 2 / math.log2(3) + 1 / 2
    idcg = 2 + 1 / math.log2(3)
    assert m["ndcg@3"] == pytest.approx((dcg / idcg + 0) / 2)
    assert m["recall@3"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["mrr@3"] == pytest.approx((0.5 + 0) / 2)


def test_fractional_relevance_below_one_is_not_relevant_for_recall():
    m = ranking_metrics([["a"]], [{"a": 0.67}], ks=(10,), mrr_k=10)
    assert m["recall@10"] == 0.0 and m["mrr@10"] == 0.0 and m["ndcg@10"] == 1.0


def test_agrees_with_ranx():
    ranx = pytest.importorskip("ranx")
    rng = random.Random(7)
    items = [f"i{j}" for j in range(60)]
    qrels, runs = {}, {}
    for q in range(40):
        judged = rng.sample(items, 8)
        qrels[f"q{q}"] = {i: rng.choice([0, 1, 1, 2, 3]) for i in judged}
        if not any(qrels[f"q{q}"].values()):
            qrels[f"q{q}"][judged[0]] = 1
        ranked = rng.sample(items, 50)
        runs[f"q{q}"] = {i: float(50 - r) for r, i in enumerate(ranked)}
    ours = ranking_metrics([list(runs[q]) for q in qrels], [qrels[q] for q in qrels], ks=(10,), recall_ks=(10, 50), mrr_k=10)
    theirs = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(runs), ["ndcg@10", "recall@10", "recall@50", "mrr@10"])
    for name in ("ndcg@10", "recall@10", "recall@50", "mrr@10"):
        assert ours[name] == pytest.approx(theirs[name], abs=1e-9), name


def test_single_target_agrees_with_ranx():
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(3)
    scores = rng.random((30, 100)).astype(np.float32)
    targets = rng.integers(0, 100, 30)
    ranks = target_ranks(scores, targets)
    ours = {k: v.mean() for k, v in single_target_metrics(ranks, ks=(10, 50)).items()}
    qrels = {f"u{i}": {f"t{targets[i]}": 1} for i in range(30)}
    run = {f"u{i}": {f"t{j}": float(scores[i, j]) for j in range(100)} for i in range(30)}
    theirs = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), ["recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr"])
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name


def test_ties_count_against_the_target():
    scores = np.zeros((1, 5), dtype=np.float32)
    assert target_ranks(scores, np.array([2]))[0] == 5
