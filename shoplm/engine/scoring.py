"""P(item | history) over the live catalog's rows: the behaviour side of the engine.

Scores live in "row space": one entry per row of the live catalog (the search pipeline's
vector index, new items included the moment they are indexed). Three sources feed them:

- the trained shoplm user model (shoplm/recommend/model.py), for the items it was trained on;
- the item text, for every item: cosine between a recency-weighted mean of the history's
  item vectors and each item (the zero-shot text recommender) — how a new item, which the
  model never saw, is recommendable from its first second;
- time-decayed popularity, kept current event by event (shoplm/engine/catalog.py).

`Blend` (shoplm/recommend/blend.py) mixes them by history length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from shoplm.recommend.checkpoint import load_model
from shoplm.recommend.model import model_scores
from shoplm.recommend.serving import ServingModel
from shoplm.recommend.sequences import RECENCY_DECAY, Histories, recency_weights
from shoplm.lm.vectors import matvec, rows_at

def text_scores(history_rows: Sequence[int], vectors: np.ndarray, decay: float = RECENCY_DECAY) -> np.ndarray:
    """Zero-shot text: cosine of every row to the recency-weighted mean of the history's vectors."""
    if not len(history_rows):
        return np.zeros(len(vectors))
    weights = recency_weights(len(history_rows), decay)  # (h,)
    profile = weights @ rows_at(vectors, np.asarray(history_rows))  # (dim,)
    norm = np.linalg.norm(profile)
    if norm <= 0:
        return np.zeros(len(vectors))
    # in float32 (`matvec`): a float64 profile would make numpy copy the whole matrix to float64
    return matvec(vectors, profile / norm)  # (rows,)


class UserModelScorer:
    """A trained user model mapped onto row space; rows it does not know stay NaN. On a CPU
    it scores through the model's serving form (shoplm/recommend/serving.py: ONNX Runtime
    and numpy, a third of the torch module's time per visitor), on a GPU through the module."""

    def __init__(self, directory: Path, device: str | None = None):
        import torch

        self.directory = Path(directory)
        self.model, self.item_ids, self.params = load_model(self.directory, device)
        self.index = {item: i for i, item in enumerate(self.item_ids)}
        self.device = device or str(next(self.model.parameters()).device)
        on_cpu = torch.device(self.device).type == "cpu"
        self.serving = ServingModel(self.model, threads=torch.get_num_threads()) if on_cpu else None

    def scores(self, history: Sequence[tuple[str, float]], rows_of_model: np.ndarray, n_rows: int) -> np.ndarray:
        """float64[n_rows]: model scores for the next item after `history` ((item_id, event
        weight) pairs, oldest first); items the model was not trained on are skipped."""
        known = [(self.index[i], w) for i, w in history if i in self.index]
        out = np.full(n_rows, np.nan)
        if not known:
            return out
        items = np.asarray([i for i, _ in known], dtype=np.int64)
        if self.serving is not None:
            model = self.serving.scores(items)  # (n_model,)
        else:
            weights = np.asarray([w for _, w in known], dtype=np.float32)
            model = model_scores(self.model, Histories([items], [weights]), 1, self.device)[0]
        mapped = rows_of_model >= 0
        out[rows_of_model[mapped]] = model[mapped]
        return out


