"""Personalised product search, measured with the protocol of Ai et al. (SIGIR 2017, "Learning
a Hierarchical Embedding Model for Personalized Product Search") for Amazon data.

For each user's held-out purchase (leave-last-out by time), the query is the purchased
item's category text ("Industrial & Scientific > Power Tools > Drills" -> "industrial
scientific power tools drills", repeated words dropped, as they build queries from category
paths); all items are ranked

- for the query alone: z(dense cosine) and z(BM25) over the whole catalog, mixed with the
  search pipeline's dense weight (`Settings.hybrid_dense_weight`);
- for the query plus the user's history: the same + beta * z(behaviour), where behaviour is
  the trained shoplm user model (`--model`) or, without one, the zero-shot text profile.

beta is tuned on the validation targets (the second-last event, history before it) and
only then applied to the test targets; both rankings are reported on the same test cases.
Items without a category give no query and are left out (counted in the report).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from shoplm.config import Settings
from shoplm.data.records import Item
from shoplm.engine.engine import Engine
from shoplm.engine.listing import PageRequest
from shoplm.store import open_store
from shoplm.lm.cache import EmbeddingCache
from shoplm.lm.encoder import Encoder
from shoplm.search.lexical import LexicalIndex
from shoplm.progress import Progress, quiet
from shoplm.recommend.checkpoint import check_same_catalog, load_model
from shoplm.recommend.model import model_scores
from shoplm.metrics import single_target_metrics, target_ranks
from shoplm.recommend.blend import zscore
from shoplm.recommend.sequences import Cases, Histories, build_sequences, leave_last_out, read_catalog, recency_weights
from shoplm.data.text import item_texts

BETAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def category_query(category: str | None) -> str | None:
    """Category path -> query words, lower-cased, repeats dropped, in order."""
    if not category:
        return None
    words = re.findall(r"[a-z0-9]+", category.lower())
    return " ".join(dict.fromkeys(words)) or None


def _query_scores(queries: list[str], encoder: Encoder, vectors: np.ndarray, lexical: LexicalIndex,
                  dense_weight: float) -> dict[str, np.ndarray]:
    """query -> float64[n_items] query-only score over the whole catalog."""
    out = {}
    for q in queries:
        dense = vectors @ encoder.encode_query(q)  # (n,)
        out[q] = dense_weight * zscore(dense) + (1 - dense_weight) * zscore(lexical.scores(q))
    return out


def _text_behaviour(cases: Cases, vectors: np.ndarray, decay: float) -> Callable[[int], np.ndarray]:
    def score(i: int) -> np.ndarray:
        history = cases.histories.items[i]
        profile = recency_weights(len(history), decay) @ vectors[history]  # (dim,)
        return vectors @ (profile / max(np.linalg.norm(profile), 1e-12))
    return score


def _model_behaviour(cases: Cases, model_dir: Path, item_ids: list[str], settings: Settings) -> Callable[[int], np.ndarray]:

    model, model_items, _ = load_model(model_dir, settings.device)
    check_same_catalog(model_items, item_ids, model_dir)
    device = str(next(model.parameters()).device)

    def score(i: int) -> np.ndarray:
        histories = Histories([cases.histories.items[i]], [cases.histories.weights[i]])
        return model_scores(model, histories, 1, device)[0].astype(np.float64)
    return score


def _ranks(cases: Cases, queries: list[str | None], query_scores: dict[str, np.ndarray],
           behaviour: Callable[[int], np.ndarray], betas: tuple[float, ...]) -> dict[float, np.ndarray]:
    """beta -> int64[n_cases] rank of the target (cases without a query are skipped)."""
    ranks: dict[float, list[int]] = {b: [] for b in betas}
    for i, q in enumerate(queries):
        if q is None:
            continue
        base = query_scores[q]
        personal = zscore(behaviour(i))
        personal = np.where(np.isfinite(personal), personal, 0.0)
        for beta in betas:
            scores = (base + beta * personal)[None, :]  # (1, n)
            ranks[beta].append(int(target_ranks(scores, cases.targets[i:i + 1])[0]))
    return {b: np.asarray(r, dtype=np.int64) for b, r in ranks.items()}


def evaluate_personalized_search(items_path: Path, events_path: Path, settings: Settings,
                                 model_dir: Path | None = None,
                                 progress: Progress = quiet) -> dict[str, Any]:
    catalog = read_catalog(items_path, events_path)
    item_ids = catalog.item_ids
    split = leave_last_out(build_sequences(catalog.events, item_ids, settings.event_weights,
                                           settings.recommend_sequences_by))
    progress("encode the catalog", 0, None)
    encoder = Encoder.from_settings(settings)
    texts = item_texts(catalog.items, settings.item_text_template)
    vectors = EmbeddingCache(settings.embedding_cache_dir, encoder.fingerprint, encoder.dim).encode(encoder, texts)
    lexical = LexicalIndex(item_ids, texts, language=settings.language)
    category_of = [category_query(item.category) for item in catalog.items]
    cases = {"valid": split.valid, "test": split.test}
    queries = {name: [category_of[t] for t in c.targets] for name, c in cases.items()}
    distinct = sorted({q for qs in queries.values() for q in qs if q})
    progress(f"score {len(distinct)} distinct category queries", 0, None)
    query_scores = _query_scores(distinct, encoder, vectors, lexical, settings.hybrid_dense_weight)

    def behaviour_of(c: Cases):
        if model_dir is not None:
            return _model_behaviour(c, model_dir, item_ids, settings)
        return _text_behaviour(c, vectors, settings.text_recency_decay)

    progress("tune beta on validation targets", 0, None)
    valid = _ranks(split.valid, queries["valid"], query_scores, behaviour_of(split.valid), BETAS)
    valid_ndcg = {b: float(single_target_metrics(r)["ndcg@10"].mean()) for b, r in valid.items()}
    beta = max(BETAS, key=lambda b: (valid_ndcg[b], -b))
    progress(f"beta = {beta}; rank test targets", 0, None)
    test = _ranks(split.test, queries["test"], query_scores, behaviour_of(split.test), (0.0, beta))
    summary = {name: {m: float(v.mean()) for m, v in single_target_metrics(test[b]).items()}
               for name, b in (("query_only", 0.0), ("personalized", beta))}
    return {
        "protocol": "Ai et al. (SIGIR 2017): query = the test target's category text; all items ranked",
        "n_cases": int(len(test[0.0])),
        "cases_without_category": int(sum(q is None for q in queries["test"])),
        "behaviour": "shoplm user model" if model_dir else "zero-shot text profile",
        "beta": beta,
        "valid_ndcg@10_by_beta": valid_ndcg,
        "models": summary,
    }


@contextmanager
def served_search(catalog: Sequence[Item], served: Settings) -> Iterator[Callable[[str, int], list[str]]]:
    """The engine `shoplm serve` opens with the settings `served` on a store holding `catalog`,
    as a function (query, k) -> the item ids GET /v1/search?q=QUERY&k=K answers a visitor
    without history (shoplm/api/routes.py): what `eval search --test-judgments` scores."""
    store = open_store("memory://")
    store.upsert_items(catalog)
    engine = Engine.open(served, store)
    try:
        yield lambda query, k: [hit.item_id for hit in engine.search_page(PageRequest(query.strip(), limit=k)).hits]
    finally:
        engine.close()
