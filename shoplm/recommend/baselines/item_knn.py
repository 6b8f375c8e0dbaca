"""Item-to-item co-occurrence (session k-NN style).

Two items co-occur when one actor has them at most `window` events apart; a pair d events
apart counts weight_a * weight_b / d (close in time = more related). Similarity is the
co-occurrence count normalised by sqrt(count_a * count_b) (cosine). A history is scored
as the recency-weighted sum of its items' similarity rows (the last item weighs 1, the one
before `decay`, ...), with popularity 1e-6 times as a tie-breaker for items no neighbour
reaches. See Ludewig & Jannach (2018) on how hard such neighbourhood methods are to beat.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from shoplm.recommend.cooccurrence import co_occurrence, item_weights
from shoplm.recommend.recommender import FitData
from shoplm.recommend.sequences import RECENCY_DECAY, Histories, recency_weights


class ItemKNN:
    """`normalise=False` (name "cooc_counts"): the plain co-occurrence list, sums not cosines:
    popular partners rank first, which is strong for visitors with one or two events."""

    name = "item_knn"

    def __init__(self, window: int = 3, decay: float = RECENCY_DECAY, max_history: int = 10, normalise: bool = True):
        self.normalise = normalise
        self.name = "item_knn" if normalise else "cooc_counts"
        self.window = window
        self.decay = decay
        self.max_history = max_history
        self.similarity = sparse.csr_matrix((0, 0), dtype=np.float32)
        self.popularity = np.zeros(0, dtype=np.float32)

    def fit(self, data: FitData) -> None:
        self.similarity = co_occurrence(data.train, data.n_items, self.window, self.normalise)
        counts = item_weights(data.train, data.n_items)
        self.popularity = (counts / max(counts.max(), 1.0)).astype(np.float32)

    def score(self, histories: Histories) -> np.ndarray:
        rows, cols, vals = [], [], []
        for i, (items, weights) in enumerate(zip(histories.items, histories.weights)):
            items, weights = items[-self.max_history:], weights[-self.max_history:]
            recency = recency_weights(len(items), self.decay)  # (L,) the last item weighs 1
            rows.append(np.full(len(items), i))
            cols.append(items)
            vals.append(recency * weights)
        query = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                  shape=(len(histories), self.similarity.shape[0]))  # (B, n)
        scores = np.asarray((query @ self.similarity).todense(), dtype=np.float32)  # (B, n)
        return scores + 1e-6 * self.popularity
