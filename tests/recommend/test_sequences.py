"""Sequences, the leave-last-out split (ties in input order) and the seeded cold-items split."""

from __future__ import annotations

import numpy as np
import pytest

from shoplm.errors import RecommendDataError
from shoplm.data.records import Event
from shoplm.recommend.sequences import apply_cold_items, build_sequences, cold_items, item_frequency, leave_last_out

WEIGHTS = {"search": 0.0, "view": 1.0, "click": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
ITEMS = ["a", "b", "c", "d", "e"]


def ev(t, item, user="u", kind="purchase", session=None):
    return Event(timestamp=t, event_type=kind, user_id=user, session_id=session, item_id=item,
                 query="q" if kind == "search" else None)


def test_sequences_by_time_with_ties_in_input_order_and_weights():
    events = [ev(30, "c"), ev(10, "b"), ev(20, "d", kind="view"), ev(20, "a"), ev(5, None, kind="search"),
              ev(1, "e", user=None, session="s1", kind="click")]
    seqs = build_sequences(events, ITEMS, WEIGHTS)
    assert seqs.actors == ["u", "session:s1"]
    # b@10, then the two events at t=20 in input order (d before a), then c@30; the search is dropped.
    assert [ITEMS[i] for i in seqs.items[0]] == ["b", "d", "a", "c"]
    assert seqs.weights[0].tolist() == [5.0, 1.0, 5.0, 5.0]
    assert [ITEMS[i] for i in seqs.items[1]] == ["e"]


def test_sequences_by_session_are_one_per_visit():
    """A user's two visits are two sequences; an event without a session groups by its user."""
    events = [ev(1, "a", session="s1"), ev(2, "b", session="s1"), ev(9, "c", session="s2"), ev(10, "d"),
              ev(11, "e", user=None, session="s3")]
    seqs = build_sequences(events, ITEMS, WEIGHTS, by="session")
    assert seqs.actors == ["s1", "s2", "user:u", "s3"]
    assert [[ITEMS[i] for i in items] for items in seqs.items] == [["a", "b"], ["c"], ["d"], ["e"]]
    assert build_sequences(events, ITEMS, WEIGHTS).actors == ["u", "session:s3"]  # by user, the default


def test_event_weight_table_is_configurable():
    events = [ev(1, "a", kind="view"), ev(2, "b", kind="purchase")]
    seqs = build_sequences(events, ITEMS, {"purchase": 1.0})  # views switched off
    assert [ITEMS[i] for i in seqs.items[0]] == ["b"]


def test_leave_last_out():
    events = [ev(t, item) for t, item in enumerate("abcde")] + [ev(0, "a", user="v"), ev(1, "b", user="v")] + \
             [ev(0, "c", user="w")]
    split = leave_last_out(build_sequences(events, ITEMS, WEIGHTS))
    u = split.train.actors.index("u")
    assert [ITEMS[i] for i in split.train.items[u]] == ["a", "b", "c"]
    assert split.valid.actors == ["u"] and ITEMS[split.valid.targets[0]] == "d"
    assert [ITEMS[i] for i in split.valid.histories.items[0]] == ["a", "b", "c"]
    assert split.test.actors == ["u", "v"]
    assert [ITEMS[i] for i in split.test.targets] == ["e", "b"]
    assert [ITEMS[i] for i in split.test.histories.items[0]] == ["a", "b", "c", "d"]
    # v (2 events): a test case, no validation case, nothing in training; w (1 event): training only.
    assert len(split.train.items[split.train.actors.index("v")]) == 0
    assert [ITEMS[i] for i in split.train.items[split.train.actors.index("w")]] == ["c"]
    # the test target is never a training event
    assert item_frequency(split.train, 5).tolist() == [1, 1, 2, 0, 0]


def test_cold_items_are_seeded_and_lose_training_events():
    a, b = cold_items(1000, 0.1, seed=3), cold_items(1000, 0.1, seed=3)
    assert a.sum() == 100 and (a == b).all() and not (a == cold_items(1000, 0.1, seed=4)).all()
    events = [ev(t, item) for t, item in enumerate("abcae")] + [ev(t, item, user="v") for t, item in enumerate("bcad")]
    split = leave_last_out(build_sequences(events, ITEMS, WEIGHTS))
    cold = np.array([True, False, False, False, False])  # "a" is new
    cold_split = apply_cold_items(split, cold)
    assert item_frequency(cold_split.train, 5)[0] == 0
    assert not cold[cold_split.valid.targets].any()  # v's validation target "a" is gone
    assert len(cold_split.test) == len(split.test)  # test cases and histories are untouched
    with pytest.raises(RecommendDataError, match="fraction"):
        cold_items(10, 1.5, seed=0)
