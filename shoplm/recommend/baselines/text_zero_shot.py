"""Zero-shot text: no training at all. A history is the recency-weighted mean of its items'
text embeddings (the last item weighs 1, the one before `decay`, ..., times the event
type's weight), and every item is scored by cosine similarity to it. Works for new items
and shows how much the language model alone knows.
"""

from __future__ import annotations

import numpy as np

from shoplm.recommend.recommender import FitData
from shoplm.recommend.sequences import Histories


class TextZeroShot:
    name = "text_zero_shot"

    def __init__(self, decay: float = 0.7, max_history: int = 50):
        self.decay = decay
        self.max_history = max_history
        self.item_text = np.zeros((0, 0), dtype=np.float32)

    def fit(self, data: FitData) -> None:
        self.item_text = data.item_text  # (n, dim), L2-normalised

    def score(self, histories: Histories) -> np.ndarray:
        users = np.zeros((len(histories), self.item_text.shape[1]), dtype=np.float32)  # (B, dim)
        for i, (items, weights) in enumerate(zip(histories.items, histories.weights)):
            items, weights = items[-self.max_history:], weights[-self.max_history:]
            recency = self.decay ** np.arange(len(items))[::-1]  # (L,)
            users[i] = (recency * weights) @ self.item_text[items]  # (dim,)
        users /= np.maximum(np.linalg.norm(users, axis=1, keepdims=True), 1e-9)
        return users @ self.item_text.T  # (B, n)
