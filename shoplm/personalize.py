"""P(item | history): the behaviour side of the engine, over the live catalog.

Scores live in "row space": one entry per row of the search pipeline's vector index (the
live catalog, new items included the moment they are indexed). Three sources feed them:

- the trained shoplm user model (shoplm/usermodel.py), for the items it was trained on;
- the item text, for every item: cosine between a recency-weighted mean of the history's
  item vectors and each item (the zero-shot text recommender) — how a new item, which the
  model never saw, is recommendable from its first second;
- time-decayed popularity, kept current event by event.

`Blend` mixes them by history length — the cold-start policy: with no history only
popularity (and the context item) speaks; from the first event the behaviour model takes
over. Its weights are tuned on validation data and stored as `blend.json` in the model
directory (see `tune_blend`); the defaults below are used until then.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from shoplm.atomic import write_text

HISTORY_BUCKETS = ("0", "1", "2-3", "4-7", "8+")


def history_bucket(length: int) -> str:
    if length <= 0:
        return "0"
    if length == 1:
        return "1"
    if length <= 3:
        return "2-3"
    return "4-7" if length <= 7 else "8+"


@dataclass
class Blend:
    """final = z(behaviour) + popularity[bucket] * z(log1p(popularity)), by history-length bucket.
    With no history the behaviour term is absent and popularity alone ranks."""

    popularity: dict[str, float] = field(default_factory=lambda: {"0": 1.0, "1": 0.3, "2-3": 0.2, "4-7": 0.1, "8+": 0.1})
    search_personal: dict[str, float] = field(default_factory=lambda: {"0": 0.0, "1": 0.1, "2-3": 0.15, "4-7": 0.2, "8+": 0.2})
    tuned_on: str | None = None  # where the weights came from, for the model card

    @classmethod
    def load(cls, directory: Path | None) -> "Blend":
        path = Path(directory) / "blend.json" if directory else None
        if path is None or not path.is_file():
            return cls()
        return cls(**json.loads(path.read_text()))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def save(self, directory: Path) -> None:
        write_text(Path(directory) / "blend.json", self.to_json())


def zscore(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(v - mean) / std over the finite entries (under `mask`); others become -inf."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values) if mask is None else (mask & np.isfinite(values))
    if ok.all():  # the common case, without the copies that boolean indexing makes (it runs per request)
        std = values.std()
        return (values - values.mean()) / (std if std > 1e-12 else 1.0)
    if not ok.any():
        return np.full(values.shape, -np.inf)
    kept = values[ok]
    mean, std = kept.mean(), kept.std()
    with np.errstate(invalid="ignore"):  # NaN entries; they become -inf below
        out = (values - mean) / (std if std > 1e-12 else 1.0)
    out[~ok] = -np.inf
    return out


def recency_weights(n: int, decay: float = 0.7) -> np.ndarray:
    """float64[n] for a history oldest first: the last item 1, the one before `decay`, ..."""
    return decay ** np.arange(n - 1, -1, -1, dtype=np.float64)


def text_scores(history_rows: Sequence[int], vectors: np.ndarray, decay: float = 0.7) -> np.ndarray:
    """Zero-shot text: cosine of every row to the recency-weighted mean of the history's vectors."""
    if not len(history_rows):
        return np.zeros(len(vectors))
    weights = recency_weights(len(history_rows), decay)  # (h,)
    profile = weights @ vectors[np.asarray(history_rows)]  # (dim,)
    norm = np.linalg.norm(profile)
    if norm <= 0:
        return np.zeros(len(vectors))
    # in the vectors' own dtype: a float64 profile would make numpy copy the whole matrix to float64
    return vectors @ (profile / norm).astype(vectors.dtype)  # (rows,)


class UserModelScorer:
    """A trained user model mapped onto row space; rows it does not know stay NaN."""

    def __init__(self, directory: Path, device: str | None = None):
        from shoplm.recommend_train import load_model, model_scores
        from shoplm.sequences import Histories

        self.directory = Path(directory)
        self.model, self.item_ids, self.params = load_model(self.directory, device)
        self._scores, self._histories = model_scores, Histories
        self.index = {item: i for i, item in enumerate(self.item_ids)}
        self.device = device or str(next(self.model.parameters()).device)

    def scores(self, history: Sequence[tuple[str, float]], rows_of_model: np.ndarray, n_rows: int) -> np.ndarray:
        """float64[n_rows]: model scores for the next item after `history` ((item_id, event
        weight) pairs, oldest first); items the model was not trained on are skipped."""
        known = [(self.index[i], w) for i, w in history if i in self.index]
        out = np.full(n_rows, np.nan)
        if not known:
            return out
        items = np.asarray([i for i, _ in known], dtype=np.int64)
        weights = np.asarray([w for _, w in known], dtype=np.float32)
        model = self._scores(self.model, self._histories([items], [weights]), 1, self.device)[0]  # (n_model,)
        mapped = rows_of_model >= 0
        out[rows_of_model[mapped]] = model[mapped]
        return out


def popularity_prior(popularity: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(popularity, 0.0))


def tune_weight(grid: Sequence[float], evaluate) -> tuple[float, float]:
    """(best weight, its metric) over `grid`; `evaluate(w) -> float`, higher is better."""
    best_w, best_m = grid[0], -math.inf
    for w in grid:
        metric = evaluate(w)
        if metric > best_m + 1e-12:
            best_w, best_m = w, metric
    return best_w, best_m


POPULARITY_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def _row_zscore(scores: np.ndarray) -> np.ndarray:
    """Per row (B, n): (s - mean) / std, as the engine z-scores one visitor's scores."""
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 1e-12, std, 1.0)


def tune_recommend_blend(score, valid, popularity: np.ndarray, blend: Blend | None = None,
                         min_cases: int = 50, batch: int = 512) -> Blend:
    """Pick, per history-length bucket, the popularity weight w that maximises validation
    NDCG@10 of z(model) + w * z(log(1 + popularity)) — the mix the engine serves.

    score: Histories -> float32 (B, n_items) (a trained recommender's `score`); valid: Cases
    (never the test targets); popularity: float (n_items,) from training events only.
    Buckets with fewer than `min_cases` validation cases keep their current weight."""
    from shoplm.metrics import single_target_metrics, target_ranks

    blend = blend or Blend()
    prior = zscore(popularity_prior(popularity))[None, :]  # (1, n)
    buckets = np.asarray([history_bucket(len(h)) for h in valid.histories.items])
    tuned = []
    for bucket in HISTORY_BUCKETS[1:]:
        cases = np.flatnonzero(buckets == bucket)
        if len(cases) < min_cases:
            continue
        subset = valid.subset(buckets == bucket)
        behaviour = np.concatenate([_row_zscore(score(subset.histories.slice(s, s + batch)))
                                    for s in range(0, len(subset), batch)])  # (m, n)

        def ndcg(w: float) -> float:
            ranks = target_ranks(behaviour + w * prior, subset.targets)
            return float(single_target_metrics(ranks)["ndcg@10"].mean())

        blend.popularity[bucket], _ = tune_weight(POPULARITY_GRID, ndcg)
        tuned.append(f"{bucket} ({len(cases)} cases)")
    blend.tuned_on = "validation targets, buckets " + ", ".join(tuned) if tuned else blend.tuned_on
    return blend
