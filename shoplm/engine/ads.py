"""Sponsored items ranked for a context: score = relevance x bid.

Relevance is the cosine of the ad's text vector to a target vector (the query's, the context
item's, or the actor's recency-weighted recent items); an ad under the relevance floor is never
shown, whatever its bid. One matrix-vector product per request, in float32.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from shoplm.engine.catalog import Sponsored
from shoplm.lm.vectors import matvec, rows_at


class Ad(NamedTuple):
    item_id: str
    score: float
    relevance: float
    bid: float


def rank_ads(sponsored: Sponsored, vectors: np.ndarray, servable: np.ndarray, target: np.ndarray,
             floor: float, k: int, exclude: str | None = None) -> list[Ad]:
    """The k best ads by relevance x bid, ties by item_id. `vectors`: float32[rows, dim];
    `servable`: bool[rows]; `target`: [dim], unit length; `exclude`: the context item."""
    keep = sponsored.rows >= 0
    keep[keep] = servable[sponsored.rows[keep]]
    if exclude is not None:
        keep &= sponsored.ids != exclude
    picked = np.flatnonzero(keep)  # (m,) in item_id order
    rows = sponsored.rows[picked]
    target = np.asarray(target, dtype=np.float32)  # a float64 target would make numpy convert the rows too
    if 4 * len(rows) > len(vectors):  # most rows sponsored: one pass over the matrix beats copying its rows out
        relevance = matvec(vectors, target)[rows].astype(np.float64)  # (m,)
    else:
        relevance = (rows_at(vectors, rows) @ target).astype(np.float64)  # (m,)
    shown = relevance >= floor
    picked, relevance = picked[shown], relevance[shown]
    scores = relevance * sponsored.bids[picked]  # (m,)
    if len(scores) > k:  # every ad scoring at least the k-th best, ties included, still in id order
        scores_kth = -np.partition(-scores, k - 1)[k - 1]
        top = scores >= scores_kth
        picked, relevance, scores = picked[top], relevance[top], scores[top]
    order = np.argsort(-scores, kind="stable")[:k]  # stable: equal scores keep item_id order
    return [Ad(sponsored.ids[picked[i]], float(scores[i]), float(relevance[i]), float(sponsored.bids[picked[i]]))
            for i in order]
