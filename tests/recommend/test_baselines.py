"""Each baseline on a tiny fixture with a known answer, through the Recommender protocol."""

from __future__ import annotations

import numpy as np

from shoplm.recommend.recommender import FitData
from shoplm.recommend.baselines.item_knn import ItemKNN
from shoplm.recommend.baselines.popularity import Popularity
from shoplm.recommend.baselines.text_zero_shot import TextZeroShot
from shoplm.recommend.sequences import Cases, Histories, Sequences

DAY = 86_400.0


def seqs(rows, times=None):
    items = [np.array(r, dtype=np.int64) for r in rows]
    return Sequences([f"u{i}" for i in range(len(rows))], items, [np.ones(len(r), np.float32) for r in items],
                     times or [np.arange(len(r), dtype=np.float64) * DAY for r in items])


def hist(*rows):
    return Histories([np.array(r, dtype=np.int64) for r in rows], [np.ones(len(r), np.float32) for r in rows])


def data(train, n_items=5, text=None):
    empty = Cases([], hist(), np.zeros(0, np.int64))
    return FitData(train, empty, text if text is not None else np.eye(n_items, dtype=np.float32))


def test_popularity_decays_with_age():
    # item 0: two events 28 days old (two half-lives -> 0.5); item 1: one event today (1.0)
    train = Sequences(["u", "v"], [np.array([0, 0]), np.array([1])], [np.ones(2, np.float32), np.ones(1, np.float32)],
                      [np.array([0.0, 0.0]), np.array([28 * DAY])])
    rec = Popularity(half_life_days=14)
    rec.fit(data(train))
    scores = rec.score(hist([3], [4]))
    assert scores.shape == (2, 5)
    assert np.argmax(scores[0]) == 1 and scores[0, 0] == np.float32(0.5 + 2e-9)


def test_item_knn_follows_co_occurrence():
    train = seqs([[0, 1], [0, 1], [2, 3], [0, 1, 4]])
    rec = ItemKNN(window=1)
    rec.fit(data(train))
    scores = rec.score(hist([0], [2]))
    assert np.argmax(scores[0]) == 1 and np.argmax(scores[1]) == 3


def test_text_zero_shot_weights_recent_items_more():
    text = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.1, 0.9]], dtype=np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    rec = TextZeroShot(decay=0.5)
    rec.fit(data(seqs([[0]]), text=text))
    scores = rec.score(hist([0, 1], [1, 0]))
    # most recent item 1 -> item 3 (close to 1) beats item 2; and the other way round
    assert scores[0, 3] > scores[0, 2] and scores[1, 2] > scores[1, 3]
