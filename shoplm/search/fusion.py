"""Hybrid retrieval: fuse the dense and the BM25 result lists of each query.

- `rrf`: reciprocal-rank fusion, score = sum_s w_s / (k + rank_s) (Cormack, Clarke &
  Buettcher, SIGIR 2009); k = 60 as in the paper. Needs no score calibration.
- `weighted`: each system's scores min-max normalised over its candidates, then
  w * dense + (1 - w) * bm25; an item a system did not return gets 0 from it
  ("convex combination", Bruch et al., TOIS 2023, found it beats RRF once w is tuned).

`tune_fusion` picks the method and weight by NDCG@10 on dev queries; `rescore` re-ranks a
fused list by a (fine-tuned) model's cosine.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from shoplm.search.index import Hits
from shoplm.metrics import ranking_metrics

METHODS = ("weighted", "rrf")
WEIGHT_GRID = tuple(round(w, 2) for w in np.arange(0.0, 1.01, 0.1))


class Fusion(NamedTuple):
    method: str  # one of METHODS
    dense_weight: float  # BM25 gets 1 - dense_weight
    rrf_k: int = 60


def _row(hits: Hits, i: int) -> tuple[list[str], np.ndarray]:
    keep = hits.ids[i] != ""
    return list(hits.ids[i][keep]), hits.scores[i][keep]


def fuse_one(dense: tuple[list[str], np.ndarray], lexical: tuple[list[str], np.ndarray], fusion: Fusion) -> dict[str, float]:
    """item -> fused score for one query from (ids, scores) of each system, best first."""
    out: dict[str, float] = {}
    for (ids, scores), weight in ((dense, fusion.dense_weight), (lexical, 1.0 - fusion.dense_weight)):
        if not ids or weight == 0:
            continue
        if fusion.method == "rrf":
            part = weight / (fusion.rrf_k + np.arange(1, len(ids) + 1))  # (m,)
        else:
            low, high = float(scores.min()), float(scores.max())
            part = weight * ((scores - low) / (high - low) if high > low else np.ones(len(ids)))
        for item, value in zip(ids, part):
            out[item] = out.get(item, 0.0) + float(value)
    return out


def fuse(dense: Hits, lexical: Hits, fusion: Fusion, k: int) -> Hits:
    """Top-k fused items of each query; ties keep the dense order, then BM25's."""
    n = len(dense.ids)
    out_ids = np.full((n, k), "", dtype=object)
    out_scores = np.full((n, k), -np.inf, dtype=np.float32)
    for i in range(n):
        scored = fuse_one(_row(dense, i), _row(lexical, i), fusion)
        best = sorted(scored.items(), key=lambda kv: -kv[1])[:k]  # stable sort keeps insertion order on ties
        out_ids[i, :len(best)] = [item for item, _ in best]
        out_scores[i, :len(best)] = [score for _, score in best]
    return Hits(out_ids, out_scores)


def ranked_lists(hits: Hits) -> list[list[str]]:
    return [[item for item in row if item] for row in hits.ids]


def tune_fusion(dense: Hits, lexical: Hits, qrels: Sequence[Mapping[str, float]], rrf_k: int = 60,
                grid: Sequence[float] = WEIGHT_GRID) -> tuple[Fusion, float]:
    """The (method, weight) with the best mean NDCG@10 over these queries, and that NDCG."""
    best, best_score = Fusion("rrf", 0.5, rrf_k), -1.0
    for method in METHODS:
        for weight in grid:
            fusion = Fusion(method, float(weight), rrf_k)
            score = ranking_metrics(ranked_lists(fuse(dense, lexical, fusion, 10)), qrels, ks=(10,))["ndcg@10"]
            if score > best_score + 1e-12:
                best, best_score = fusion, score
    return best, best_score


def rescore(fused: Hits, query_vectors: np.ndarray, vectors_of: Callable[[list[str]], np.ndarray]) -> Hits:
    """Re-rank each fused list by cosine under another model: `query_vectors` float32[n, dim] and
    `vectors_of(ids) -> float32[m, dim]` from that model (L2-normalised)."""
    out_ids = np.full(fused.ids.shape, "", dtype=object)
    out_scores = np.full(fused.scores.shape, -np.inf, dtype=np.float32)
    for i, q in enumerate(query_vectors):
        ids, _ = _row(fused, i)
        if not ids:
            continue
        scores = vectors_of(ids) @ q  # (m,)
        order = np.argsort(-scores, kind="stable")
        out_ids[i, :len(ids)] = [ids[j] for j in order]
        out_scores[i, :len(ids)] = scores[order]
    return Hits(out_ids, out_scores)
