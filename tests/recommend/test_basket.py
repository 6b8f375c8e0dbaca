"""Basket completion (shoplm/recommend/basket.py) and the complements it scores
(shoplm/recommend/complements.py): the split holds nothing out twice and trains on nothing it
scores, the complements are what co-purchase says, and on Instacart they beat item-kNN and
popularity, with "buy again" reported beside them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from shoplm.config import Settings
from shoplm.data.convert import convert
from shoplm.recommend.basket import Split, evaluate_baskets, user_baskets
from shoplm.recommend.complements import Complements


def _frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"timestamp": pl.Float64, "event_type": pl.String, "user_id": pl.String,
                                      "session_id": pl.String, "item_id": pl.String}, orient="row")


def test_baskets_are_sessions_in_the_order_their_items_went_in():
    frame = _frame([(10, "purchase", "u1", "o2", "c"), (1, "purchase", "u1", "o1", "b"), (2, "purchase", "u1", "o1", "a"),
                    (11, "add_to_cart", "u1", "o2", "a"), (12, "view", "u1", "o2", "b"),  # a view is not in a basket
                    (5, "purchase", None, "anon", "a"), (6, "purchase", None, "anon", "c")])
    baskets = user_baskets(frame, ["a", "b", "c"])
    assert [b.tolist() for b in baskets["u1"]] == [[1, 0], [2, 0]]
    assert [b.tolist() for b in baskets[None]] == [[0, 2]]


def test_a_split_never_trains_on_what_it_holds_out_or_on_later_baskets():
    baskets = {"u1": [np.array([0, 1]), np.array([1, 2]), np.array([2, 3])], "u2": [np.array([4, 5])],
               None: [np.array([0, 5])]}
    test = Split(baskets, held_from_end=1)
    assert test.held["u1"].tolist() == [2, 3] and "u2" not in test.held  # one basket: nothing to learn from
    assert [b.tolist() for b in test.train] == [[0, 1], [1, 2], [0, 5]]
    valid = Split(baskets, held_from_end=2)
    assert valid.held["u1"].tolist() == [1, 2]
    assert [b.tolist() for b in valid.train] == [[0, 1], [0, 5]]  # neither the held basket nor the test one
    users, carts, targets = test.cases(1)
    assert users == ["u1"] and carts[0].tolist() == [2] and targets == [{3}]


def test_complements_follow_co_purchase_and_a_new_item_borrows_from_its_look_alike():
    baskets = [np.array([0, 1]), np.array([0, 1]), np.array([0, 2]), np.array([3, 4])]
    complements = Complements.fit(baskets, 6)
    scores = complements.scores([0])
    assert scores[1] > scores[2] > 0 and scores[0] == 0 and scores[3] == scores[4] == 0
    vectors = np.eye(6, dtype=np.float32)
    vectors[5] = vectors[0] * 0.9 + vectors[2] * 0.436  # item 5, never bought, looks like item 0 (cosine 0.9)
    borrowed = complements.scores([5], vectors)
    assert np.argmax(borrowed) == 1 and complements.context_weights([5], vectors) == {0: 1.0}
    assert complements.scores([5], vectors, floor=0.95).sum() == 0  # no look-alike close enough
    grown = complements.grown(8)
    assert grown.n_items == 8 and np.array_equal(grown.scores([0])[:6], scores)


def test_basket_decay_weighs_small_baskets_more():
    baskets = [np.array([0, 1]), np.array([0, 2, 3, 4, 5, 6])]
    flat, decayed = Complements.fit(baskets, 7, basket_decay=0.0), Complements.fit(baskets, 7, basket_decay=1.0)
    assert flat.scores([0])[1] == pytest.approx(flat.scores([0])[2])
    assert decayed.scores([0])[1] > decayed.scores([0])[2]


@pytest.mark.slow
def test_on_instacart_complements_beat_item_knn_and_popularity(data_dir, tmp_path):
    convert("instacart", data_dir / "instacart", tmp_path)
    result = evaluate_baskets(Settings(), tmp_path / "items.csv", tmp_path / "events.csv", tuned=False)
    assert result["dataset"]["items"] == 49_688 and result["dataset"]["users"] == 593
    for k, models in result["k"].items():
        ours = models["shoplm_complements"]["recall@10"]
        assert ours > 1.3 * models["item_knn"]["recall@10"] and ours > 2 * models["popularity"]["recall@10"], (k, models)
        assert models["buy_again"]["recall@10"] > 0  # reported beside, not beaten on groceries
