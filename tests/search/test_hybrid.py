"""Fusion by hand-computed cases; tuning picks the better setting; rescoring re-ranks."""

from __future__ import annotations

import numpy as np
import pytest

from shoplm.search.fusion import Fusion, fuse, fuse_one, rescore, tune_fusion
from shoplm.search.index import Hits


def hits(rows):
    k = max(len(r) for r in rows)
    ids = np.full((len(rows), k), "", dtype=object)
    scores = np.full((len(rows), k), -np.inf, dtype=np.float32)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = [item for item, _ in row]
        scores[i, :len(row)] = [s for _, s in row]
    return Hits(ids, scores)


def test_rrf_by_hand():
    fused = fuse_one((["a", "b"], np.array([0.9, 0.8])), (["b", "c"], np.array([7.0, 3.0])), Fusion("rrf", 0.5, 60))
    assert fused["a"] == pytest.approx(0.5 / 61)
    assert fused["b"] == pytest.approx(0.5 / 62 + 0.5 / 61)
    assert fused["c"] == pytest.approx(0.5 / 62)


def test_weighted_min_max_by_hand():
    fused = fuse_one((["a", "b", "c"], np.array([0.9, 0.7, 0.5])), (["c", "d"], np.array([10.0, 2.0])),
                     Fusion("weighted", 0.25))
    assert fused == pytest.approx({"a": 0.25, "b": 0.125, "c": 0.75, "d": 0.0})


def test_fuse_pads_and_orders():
    out = fuse(hits([[("a", 0.9), ("b", 0.1)]]), hits([[("b", 5.0), ("c", 1.0)]]), Fusion("weighted", 0.4), k=4)
    assert list(out.ids[0]) == ["b", "a", "c", ""]  # b: 0 + 0.6, a: 0.4 + 0, c: 0 + 0
    assert out.scores[0][:3] == pytest.approx([0.6, 0.4, 0.0]) and np.isneginf(out.scores[0][3])


def test_tune_picks_the_system_that_is_right():
    dense = hits([[("x", 0.9), ("good", 0.8)]] * 4)
    lexical = hits([[("good", 9.0), ("x", 1.0)]] * 4)
    fusion, score = tune_fusion(dense, lexical, [{"good": 2.0}] * 4)
    assert score == pytest.approx(1.0) and fusion.dense_weight < 0.5


def test_rescore_reranks_by_cosine():
    fused = hits([[("a", 1.0), ("b", 0.5)]])
    vectors = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    out = rescore(fused, np.array([[0.0, 1.0]]), lambda ids: np.stack([vectors[i] for i in ids]))
    assert list(out.ids[0]) == ["b", "a"]
