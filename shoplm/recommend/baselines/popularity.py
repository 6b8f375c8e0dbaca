"""Time-decayed popularity: the same ranking for everyone.

popularity_j = sum over j's training events of weight(type) * 0.5 ** (age / half_life),
the formula of `shoplm.data.aggregates.item_popularity`, with age measured from the newest
training event (so replaying an old log gives the same result).
"""

from __future__ import annotations

import numpy as np

from shoplm.recommend.recommender import FitData
from shoplm.recommend.sequences import Histories

SECONDS_PER_DAY = 86_400.0


class Popularity:
    name = "popularity"

    def __init__(self, half_life_days: float = 14.0):
        self.half_life_days = half_life_days
        self.popularity = np.zeros(0, dtype=np.float32)

    def fit(self, data: FitData) -> None:
        items = np.concatenate([np.zeros(0, np.int64), *data.train.items])  # (E,)
        weights = np.concatenate([np.zeros(0, np.float32), *data.train.weights])  # (E,)
        times = np.concatenate([np.zeros(0, np.float64), *data.train.times])  # (E,)
        now = times.max() if len(times) else 0.0
        decay = 0.5 ** ((now - times) / SECONDS_PER_DAY / self.half_life_days)  # (E,)
        popularity = np.zeros(data.n_items, dtype=np.float64)
        np.add.at(popularity, items, weights * decay)
        # Raw event counts break ties among equally decayed items; 1e-9 keeps them secondary.
        np.add.at(popularity, items, 1e-9)
        self.popularity = popularity.astype(np.float32)

    def score(self, histories: Histories) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(histories), len(self.popularity))).copy()  # (B, n)
