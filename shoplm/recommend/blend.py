"""`Blend`: how the engine mixes behaviour and popularity by history length, and its tuning.

Scores live in "row space": one entry per row of the search pipeline's vector index (the
live catalog, new items included the moment they are indexed). Three sources feed them:

- the trained shoplm user model (shoplm/recommend/model.py), for the items it was trained on;
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from shoplm.atomic import write_text
from shoplm.data.aggregates import LENGTH_BUCKETS, history_bucket
from shoplm.metrics import single_target_metrics, target_ranks

HISTORY_BUCKETS = ("0",) + tuple(name for name, _, _ in LENGTH_BUCKETS)  # the blend's buckets: "0" is no history


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

    def with_search_weight(self, beta: float, tuned_on: str) -> "Blend":
        """This blend with search personalised by `beta` in every bucket with a history
        (`shoplm eval personalized-search --write-blend` tunes it)."""
        return replace(self, search_personal={b: (0.0 if b == "0" else beta) for b in HISTORY_BUCKETS}, tuned_on=tuned_on)

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


def row_zscore(scores: np.ndarray) -> np.ndarray:
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
    blend = blend or Blend()
    prior = zscore(popularity_prior(popularity))[None, :]  # (1, n)
    buckets = np.asarray([history_bucket(len(h)) for h in valid.histories.items])
    tuned = []
    for bucket in HISTORY_BUCKETS[1:]:
        cases = np.flatnonzero(buckets == bucket)
        if len(cases) < min_cases:
            continue
        subset = valid.subset(buckets == bucket)
        behaviour = np.concatenate([row_zscore(score(subset.histories.slice(s, s + batch)))
                                    for s in range(0, len(subset), batch)])  # (m, n)

        def ndcg(w: float) -> float:
            ranks = target_ranks(behaviour + w * prior, subset.targets)
            return float(single_target_metrics(ranks)["ndcg@10"].mean())

        blend.popularity[bucket], _ = tune_weight(POPULARITY_GRID, ndcg)
        tuned.append(f"{bucket} ({len(cases)} cases)")
    blend.tuned_on = "validation targets, buckets " + ", ".join(tuned) if tuned else blend.tuned_on
    return blend
