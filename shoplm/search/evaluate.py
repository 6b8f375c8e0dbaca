"""Search evaluation on the dev queries: bm25, dense, hybrid (base model) and, with a
fine-tuned model, dense_ft and hybrid_ft; NDCG@10, Recall@100 and MRR@10 for each. When
the model directory carries a re-ranker (`shoplm.search.rerank`), hybrid_ft is its ranking of the
fused candidates, as `shoplm search` serves it, and hybrid_ft_fusion the fusion alone.

Dense retrieval here is exact (one matmul per block of queries), so the numbers measure the
model, not the approximate index. Hybrid fusion (method and weight) is tuned on dev queries
by 2-fold cross-fitting: the best setting on one half is applied to the other half, so no
query is scored with weights tuned on itself. Item and query vectors go through the
persisted `EmbeddingCache`, so a second run encodes nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from shoplm.config import Settings
from shoplm.lm.cache import EmbeddingCache
from shoplm.lm.encoder import Encoder
from shoplm.search.fusion import Fusion, fuse, ranked_lists, tune_fusion
from shoplm.search.index import Hits, top_k
from shoplm.search.late import TokenStore
from shoplm.search.lexical import LexicalIndex
from shoplm.metrics import ranking_metrics
from shoplm.data.records import Item, Judgment
from shoplm.search.rerank import load_reranker, rerank_all
from shoplm.progress import Counter, Progress, quiet
from shoplm.report import Section, write_report
from shoplm.search.data import qrels_by_query, split_queries
from shoplm.data.text import item_texts

METRICS = ("ndcg@10", "recall@100", "mrr@10")


class SearchEval(NamedTuple):
    n_queries: int
    models: dict[str, dict[str, float]]  # system -> metric -> value
    fusion: dict[str, list[Fusion]]  # hybrid system -> the setting tuned on each half
    seconds: dict[str, float]

    def to_json(self) -> dict:
        return {"n_queries": self.n_queries, "models": self.models}


def metrics_of(hits: Hits, qrels: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return ranking_metrics(ranked_lists(hits), qrels, ks=(10,), recall_ks=(100,), mrr_k=10)


def dense_search(query_vectors: np.ndarray, item_vectors: np.ndarray, ids: np.ndarray, k: int,
                 block: int = 256) -> Hits:
    """Exact top-k by inner product, `block` queries at a time (256 x 54k floats = 56 MB)."""
    parts = [top_k(query_vectors[s:s + block] @ item_vectors.T, ids, k) for s in range(0, len(query_vectors), block)]
    return Hits(np.concatenate([p.ids for p in parts]), np.concatenate([p.scores for p in parts]))


def cross_fit_fusion(dense: Hits, lexical: Hits, qrels: list[Mapping[str, float]], rrf_k: int, k: int,
                     seed: int) -> tuple[Hits, list[Fusion]]:
    """Fuse each half of the queries with the setting tuned on the other half."""
    n = len(qrels)
    half = np.random.default_rng(seed).permutation(n) < n // 2  # bool[n]
    out = Hits(np.full((n, k), "", dtype=object), np.full((n, k), -np.inf, dtype=np.float32))
    chosen = []
    for tune_on in (half, ~half):
        rows = np.flatnonzero(tune_on)
        fusion, _ = tune_fusion(Hits(dense.ids[rows], dense.scores[rows]), Hits(lexical.ids[rows], lexical.scores[rows]),
                                [qrels[i] for i in rows], rrf_k)
        apply = np.flatnonzero(~tune_on)
        fused = fuse(Hits(dense.ids[apply], dense.scores[apply]), Hits(lexical.ids[apply], lexical.scores[apply]), fusion, k)
        out.ids[apply], out.scores[apply] = fused.ids, fused.scores
        chosen.append(fusion)
    return out, chosen


def evaluate_search(items: Sequence[Item], judgments: Sequence[Judgment], settings: Settings,
                    model: Path | None = None, progress: Progress = quiet) -> SearchEval:
    """Every system on the dev split of the judged queries (settings.search_dev_fraction / _split_seed)."""
    seconds: dict[str, float] = {}
    started = time.monotonic()
    qrels_all = qrels_by_query(judgments)
    queries = split_queries(qrels_all, settings.search_dev_fraction, settings.search_split_seed).dev
    qrels = [qrels_all[q] for q in queries]
    ids = np.asarray([i.item_id for i in items], dtype=object)
    texts = item_texts(items, settings.item_text_template)
    depth = max(100, settings.hybrid_depth)

    progress("bm25", 0, 1)
    lexical_index = LexicalIndex(list(ids), texts)
    lexical = lexical_index.search(queries, depth)  # (n, depth)
    models = {"bm25": metrics_of(lexical, qrels)}
    progress("bm25", 1, 1)
    seconds["bm25"] = time.monotonic() - started
    fusion: dict[str, list[Fusion]] = {}
    for suffix, model_dir in (("", settings.encoder_model), ("_ft", model)):
        if suffix and model is None:
            continue
        t = time.monotonic()
        encoder = Encoder.from_settings(settings, model_dir)
        cache = EmbeddingCache(settings.embedding_cache_dir, encoder.fingerprint, encoder.dim)
        stage = f"encode items{suffix or ' (base)'}"
        progress(stage, 0, len(texts))
        item_vectors = cache.encode(encoder, texts, progress=Counter(progress, stage, len(texts)))  # (n_items, dim)
        progress(stage, len(texts), len(texts))  # duplicate texts are encoded once
        query_vectors = cache.encode(encoder, queries)  # (n, dim)
        dense = dense_search(query_vectors, item_vectors, ids, depth)
        models[f"dense{suffix}"] = metrics_of(dense, qrels)
        progress(f"tune hybrid{suffix}", 0, 1)
        hybrid, fusion[f"hybrid{suffix}"] = cross_fit_fusion(dense, lexical, qrels, settings.rrf_k, depth,
                                                              settings.search_split_seed)
        models[f"hybrid{suffix}"] = metrics_of(hybrid, qrels)
        progress(f"tune hybrid{suffix}", 1, 1)
        ranker = load_reranker(Path(model_dir), device=encoder.device, bf16=encoder.bf16) if suffix else None
        if ranker is not None:  # hybrid_ft is what `shoplm search` serves: candidates re-ranked
            models[f"hybrid{suffix}_fusion"] = models[f"hybrid{suffix}"]
            stage = f"re-rank hybrid{suffix}"
            item_tokens = TokenStore.of(cache).get(encoder, texts, cache)  # written by `train search`
            reranked = rerank_all(ranker, lexical_index, item_vectors, queries, query_vectors, depth, depth,
                                  progress=Counter(progress, stage, len(queries)),
                                  query_tokens=encoder.encode_tokens(queries)[1], item_tokens=item_tokens)
            models[f"hybrid{suffix}"] = metrics_of(reranked, qrels)
        seconds[f"dense{suffix}+hybrid{suffix}"] = time.monotonic() - t
    order = ["bm25", "dense", "hybrid", "dense_ft", "hybrid_ft_fusion", "hybrid_ft"]
    models = {name: {m: models[name][m] for m in METRICS} for name in order if name in models}
    seconds["total"] = time.monotonic() - started
    return SearchEval(len(queries), models, fusion, seconds)


def write_search_report(result: SearchEval, out_dir: Path, title: str) -> Path:
    """Markdown table + PNG chart, with the relative gains of the best system and the fusion settings."""
    lines = [f"{result.n_queries} dev queries (split by query, seeded); dense retrieval is exact.",
             "Hybrid fusion tuned by 2-fold cross-fitting on the dev queries: "
             + "; ".join(f"{name}: " + ", ".join(f"{f.method} w_dense={f.dense_weight:g}" for f in fs)
                         for name, fs in result.fusion.items()) + ".",
             *(["hybrid_ft re-ranks the union of the BM25 and dense_ft candidates with the model directory's "
                "LambdaMART re-ranker (trained by `shoplm train search` on judged queries held out of fine-tuning); "
                "hybrid_ft_fusion is the tuned fusion of the same two systems, without it."] if "hybrid_ft_fusion" in result.models else []),
             "Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()) + "."]
    best = "hybrid_ft" if "hybrid_ft" in result.models else "hybrid"
    for base in ("bm25", "dense", "hybrid"):
        if base != best:
            a, b = result.models[best]["ndcg@10"], result.models[base]["ndcg@10"]
            ra, rb = result.models[best]["recall@100"], result.models[base]["recall@100"]
            lines.append(f"{best} vs {base}: NDCG@10 {a:.4f} vs {b:.4f} ({(a / b - 1) * 100:+.1f}% relative); "
                         f"Recall@100 {ra:.4f} vs {rb:.4f}.")
    section = Section("Dev queries", result.models, chart="search.png")
    return write_report(out_dir, title, [section], preamble="\n\n".join(lines))
