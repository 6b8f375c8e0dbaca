"""Ranking metrics, computed for every query in one vectorised pass.

`ranking_metrics(ranked, qrels, ks)` takes the ranked item ids of each query (best first)
and the judged relevance of each query's items, and returns the mean of every metric as
`dict[str, float]`. Conventions (the same as trec_eval / ranx):

- NDCG@k: gain = relevance as given (linear, not 2^rel - 1), log2 discount, ideal DCG from
  all of the query's judgments; unjudged items count as 0; a query with no relevant item
  scores 0;
- Recall@k: relevant = relevance >= `min_relevance` (1 by default); the share of a query's
  relevant items found in the top k; a query with none counts as 0;
- MRR@k: 1 / rank of the first relevant item within the top k, else 0.

Recommendation with one held-out target per case is the special case qrels = {target: 1}.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def ranking_metrics(
    ranked: Sequence[Sequence[str]],
    qrels: Sequence[Mapping[str, float]],
    ks: Sequence[int] = (10,),
    recall_ks: Sequence[int] | None = None,
    mrr_k: int | None = 10,
    min_relevance: float = 1.0,
) -> dict[str, float]:
    """Mean NDCG@k for k in `ks`, Recall@k for k in `recall_ks` (default `ks`) and MRR@`mrr_k`
    (None: MRR over the whole ranked list). `ranked[i]` and `qrels[i]` belong to query i."""
    per_query = per_query_metrics(ranked, qrels, ks, recall_ks, mrr_k, min_relevance)
    return {name: float(values.mean()) if len(values) else 0.0 for name, values in per_query.items()}


def per_query_metrics(
    ranked: Sequence[Sequence[str]],
    qrels: Sequence[Mapping[str, float]],
    ks: Sequence[int] = (10,),
    recall_ks: Sequence[int] | None = None,
    mrr_k: int | None = 10,
    min_relevance: float = 1.0,
) -> dict[str, np.ndarray]:
    """Like `ranking_metrics` but float64[n_queries] per metric, for slicing and significance."""
    if len(ranked) != len(qrels):
        raise ValueError(f"{len(ranked)} rankings for {len(qrels)} queries")
    recall_ks = list(ks) if recall_ks is None else list(recall_ks)
    longest = max((len(r) for r in ranked), default=1)
    depth = max([*ks, *recall_ks, mrr_k or longest])
    gains = _gain_matrix(ranked, qrels, depth)  # (n, depth)
    relevant = gains >= min_relevance  # (n, depth)
    out: dict[str, np.ndarray] = {}
    discount = 1.0 / np.log2(np.arange(2, depth + 2))  # (depth,)
    for k in ks:
        dcg = (gains[:, :k] * discount[:k]).sum(axis=1)
        ideal = np.array([_ideal_dcg(q, k, discount) for q in qrels])
        out[f"ndcg@{k}"] = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)
    n_relevant = np.array([sum(1 for g in q.values() if g >= min_relevance) for q in qrels], dtype=np.float64)
    for k in recall_ks:
        found = relevant[:, :k].sum(axis=1)
        out[f"recall@{k}"] = np.divide(found, n_relevant, out=np.zeros_like(n_relevant), where=n_relevant > 0)
    cut = depth if mrr_k is None else mrr_k
    hit = relevant[:, :cut]
    first = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)
    name = "mrr" if mrr_k is None else f"mrr@{mrr_k}"
    out[name] = np.divide(1.0, first, out=np.zeros(len(first)), where=first > 0)
    return out


def _gain_matrix(ranked: Sequence[Sequence[str]], qrels: Sequence[Mapping[str, float]], depth: int) -> np.ndarray:
    gains = np.zeros((len(ranked), depth), dtype=np.float64)
    for i, (ids, judged) in enumerate(zip(ranked, qrels)):
        for j, item in enumerate(ids[:depth]):
            gains[i, j] = judged.get(item, 0.0)
    return gains


def _ideal_dcg(judged: Mapping[str, float], k: int, discount: np.ndarray) -> float:
    best = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    return float((np.asarray(best) * discount[: len(best)]).sum())


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each row's target among all columns: int64[n] from float32[n, n_items]
    scores and int64[n] target columns. Ties count against the target (pessimistic), so a
    model that scores everything equal does not look good."""
    target_scores = scores[np.arange(len(targets)), targets][:, None]  # (n, 1)
    return (scores >= target_scores).sum(axis=1).astype(np.int64)


def single_target_metrics(ranks: np.ndarray, ks: Sequence[int] = (10, 50)) -> dict[str, np.ndarray]:
    """Recall@k, NDCG@k and MRR per case from the 1-based rank of one relevant target."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = ranks <= k
        out[f"recall@{k}"] = hit.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(ranks + 1), 0.0)
    out["mrr"] = 1.0 / ranks
    return out
