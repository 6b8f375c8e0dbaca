"""Training the re-ranker (`shoplm.search.rerank`) after fine-tuning: its features are computed
under the fine-tuned model, on judged queries held out of fine-tuning (the model's scores of
its own training queries are inflated), optionally with a cross-encoder trained first."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from shoplm.device import pick_device, use_bf16
from shoplm.lm.cache import EmbeddingCache
from shoplm.lm.encoder import RERANKER_DIR, Encoder
from shoplm.progress import Counter, Progress, quiet
from shoplm.search.cross_encoder import CROSS_DIR, CrossConfig, train_cross_encoder
from shoplm.search.data import SearchInputs
from shoplm.search.late import TokenStore
from shoplm.search.rerank import Reranker, query_candidates


def ranker_seconds(settings, texts: Sequence[str], model: Path | None, queries: int = 0, sample: int = 256) -> float:
    """Estimated seconds of `fit_reranker`: the catalog's encoding, timed on a seeded sample
    with the base model (the fine-tuned one has the same size), plus a margin for the features
    and the boosting (45 s and 30 ms a held-out query, about twice the 13 ms a query measured
    on 3,405 Home Depot queries); with a cross-encoder (`search_cross_depth` > 0) also its training
    (`search_cross_minutes`) and its reading of `queries` x depth (query, item) pairs, each
    counted as 2.5 item encodings (measured on Home Depot: 2.8 ms a pair against 1.1 ms a title)."""

    rng = random.Random(0)
    chosen = rng.sample(list(texts), min(sample, len(texts)))
    encoder = Encoder.from_settings(settings, model)
    encoder.encode(chosen[:16])  # warm-up
    started = time.monotonic()
    encoder.encode(chosen)
    per_text = (time.monotonic() - started) / max(len(chosen), 1)
    cross = settings.search_cross_minutes * 60 + 2.5 * per_text * queries * settings.search_cross_depth \
        if settings.search_cross_depth > 0 else 0.0
    return 1.15 * per_text * len(texts) + 45.0 + 0.03 * queries + cross


def fit_reranker(settings, inputs: SearchInputs, model_dir: Path, seed: int,
                 progress: Progress = quiet, cross_minutes: float | None = None) -> dict:
    """Trains the re-ranker on the held-out queries' candidates under the fine-tuned model in
    `model_dir` and saves it to `model_dir/ranker`; returns its summary (queries, rounds, ...).
    With `search_cross_depth` > 0 it first trains the cross-encoder on the fine-tuning pairs
    (from the fine-tuned model's weights) into `model_dir/cross`, and the re-ranker learns
    from its scores too. The catalog is encoded through the embedding cache, so `eval search`
    and `index build` with this model find its vectors there."""

    cross, depth = None, settings.search_cross_depth
    minutes = settings.search_cross_minutes if cross_minutes is None else cross_minutes
    if depth > 0:
        progress("cross-encoder", 0, None)
        device = pick_device(settings.device)
        cross = train_cross_encoder(
            model_dir, inputs.texts, [(p.query, p.item_id) for p in inputs.train_pairs], inputs.negatives,
            CrossConfig(steps=settings.search_cross_steps, max_minutes=minutes, seed=seed),
            device, use_bf16(settings.encoder_bf16, device), progress)
        cross.save(model_dir / CROSS_DIR)

    progress("encode the catalog with the fine-tuned model (for the re-ranker)", 0, None)
    encoder = Encoder.from_settings(settings, model_dir)
    cache = EmbeddingCache(settings.embedding_cache_dir, encoder.fingerprint, encoder.dim)
    texts, ids = list(inputs.texts.values()), list(inputs.texts)  # the order of inputs.lexical
    # one pass gives the token vectors (MaxSim features, kept for `eval search` and serving) and the pooled ones
    item_tokens = TokenStore.of(cache).get(encoder, texts, cache, progress=Counter(progress, "encode items", len(texts)))
    item_vectors = cache.encode(encoder, texts)  # (n, dim), from the pass above
    queries = sorted(inputs.ranker_qrels)
    progress(f"re-ranker on {len(queries)} held-out queries" + (" (cross-encoder reading)" if cross else ""), 0, None)
    query_vectors = cache.encode(encoder, queries)  # (q, dim)
    query_tokens = encoder.encode_tokens(queries)[1]
    groups, relevances = [], []
    for query, vector, tokens in zip(queries, query_vectors, query_tokens):
        rows, x = query_candidates(inputs.lexical, item_vectors, query, vector, settings.hybrid_depth, cross, depth,
                                   tokens, item_tokens)
        judged = inputs.ranker_qrels[query]
        groups.append(x)
        relevances.append(np.array([judged.get(ids[r], 0.0) for r in rows]))
    ranker = Reranker.fit(groups, relevances, seed, threads=torch.get_num_threads(), cross_depth=depth if cross else 0)
    if cross:
        ranker.meta["cross_steps"] = cross.trained_steps
        ranker.meta["cross_minutes"] = round(minutes, 2)
    ranker.save(model_dir / RERANKER_DIR)
    return ranker.meta
