"""Recommenders behind one protocol: fit on training sequences, score every item for a
batch of histories. One module per baseline; the shoplm model (`shoplm.recommend.model`) is
wrapped by `shoplm.recommend.train.TrainedUserModel`, as is SASRec.

    rec = Popularity(half_life_days=14)
    rec.fit(FitData(train, valid, item_text))
    scores = rec.score(histories)  # float32 (B, n_items), higher = better
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from shoplm.recommend.sequences import Cases, Histories, Sequences


class FitData(NamedTuple):
    train: Sequences  # training events only (validation and test targets are not in it)
    valid: Cases  # for early stopping; never the test target
    item_text: np.ndarray  # float32 (n_items, text_dim), L2-normalised

    @property
    def n_items(self) -> int:
        return len(self.item_text)


class Recommender(Protocol):
    name: str

    def fit(self, data: FitData) -> None:
        """Learn from `data.train`; may use `data.valid` for early stopping only."""

    def score(self, histories: Histories) -> np.ndarray:
        """float32 (B, n_items): a score for every catalog item after each history."""
