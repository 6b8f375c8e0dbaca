"""Search evaluation: bm25, dense and hybrid (base model) and, with a fine-tuned model,
dense_ft and hybrid_ft; NDCG@10, Recall@100 and MRR@10 for each, on one of two query sets.

- `evaluate_search`: the dev split of one judgments file, the queries `shoplm train search`
  held out. Hybrid fusion (method and weight) is tuned on those dev queries by 2-fold
  cross-fitting: the best setting on one half is applied to the other half, so no query is
  scored with weights tuned on itself. When the model directory carries a re-ranker
  (`shoplm.search.rerank`), hybrid_ft is its ranking of the fused candidates and
  hybrid_ft_fusion the fusion alone. No system here is exactly what `shoplm serve` answers:
  the service fuses with the settings' method and weight, not tuned ones.
- `evaluate_held_out`: every judged query of a test file. hybrid_served (and hybrid_ft_served)
  are what `shoplm serve` answers on GET /v1/search: the caller hands in the service (a
  `Service`: the engine, built as `shoplm serve` builds it), which runs with the settings'
  fusion or the model's re-ranker. hybrid_tuned (hybrid_ft_tuned) is the same service with
  the fusion tuned on the train file's queries and no re-ranker; test queries tune nothing.

bm25 and dense are single systems; dense retrieval is exact (one matmul per block of
queries), so it measures the model, not the approximate index. Item and query vectors go
through the persisted `EmbeddingCache`, so a second run encodes nothing.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from shoplm.config import Settings
from shoplm.data.records import Item, Judgment
from shoplm.data.text import item_texts
from shoplm.lm.cache import EmbeddingCache
from shoplm.lm.encoder import RERANKER_DIR, Encoder, model_dir
from shoplm.metrics import ranking_metrics
from shoplm.progress import Counter, Progress, quiet
from shoplm.report import Section, write_report
from shoplm.search.data import qrels_by_query, split_queries
from shoplm.search.fusion import Fusion, fuse, ranked_lists, tune_fusion
from shoplm.search.index import Hits, top_k
from shoplm.search.late import TokenStore
from shoplm.search.lexical import LexicalIndex
from shoplm.search.rerank import load_reranker, rerank_all

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
SERVED = "as served"  # how[system] starts with it for the systems `shoplm serve` answers exactly
SINGLE = "single system"


class SearchEval(NamedTuple):
    n_queries: int
    models: dict[str, dict[str, float]]  # system -> metric -> value
    fusion: dict[str, list[Fusion]]  # system with tuned fusion -> the setting(s) it was scored with
    seconds: dict[str, float]
    how: dict[str, str]  # system -> how it was scored: SERVED, which queries tuned it, or SINGLE
    queries: str = "dev"  # "dev": the seeded dev split of one file; "test": every query of a test file

    @property
    def served(self) -> list[str]:
        return [name for name, how in self.how.items() if how.startswith(SERVED)]

    def to_json(self) -> dict:
        out = {"n_queries": self.n_queries, "models": self.models}
        if self.queries == "test":  # the dev-split document keeps the shape its published figures have
            out |= {"queries": "test", "served": self.served, "how": self.how}
        return out


def metrics_of(hits: Hits, qrels: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return ranking_metrics(ranked_lists(hits), qrels, ks=(10,), recall_ks=(10, 100), mrr_k=10)


def describe(fusion: Fusion) -> str:
    return f"{fusion.method} w_dense={fusion.dense_weight:g}"


def dense_search(query_vectors: np.ndarray, item_vectors: np.ndarray, ids: np.ndarray, k: int,
                 block: int = 256) -> Hits:
    """Exact top-k by inner product, `block` queries at a time (256 x 54k floats = 56 MB)."""
    parts = [top_k(query_vectors[s:s + block] @ item_vectors.T, ids, k) for s in range(0, len(query_vectors), block)]
    return Hits(np.concatenate([p.ids for p in parts]), np.concatenate([p.scores for p in parts]))


def rows_of(hits: Hits, rows: np.ndarray) -> Hits:
    return Hits(hits.ids[rows], hits.scores[rows])


def cross_fit_fusion(dense: Hits, lexical: Hits, qrels: list[Mapping[str, float]], rrf_k: int, k: int,
                     seed: int) -> tuple[Hits, list[Fusion]]:
    """Fuse each half of the queries with the setting tuned on the other half."""
    n = len(qrels)
    half = np.random.default_rng(seed).permutation(n) < n // 2  # bool[n]
    out = Hits(np.full((n, k), "", dtype=object), np.full((n, k), -np.inf, dtype=np.float32))
    chosen = []
    for tune_on in (half, ~half):
        rows = np.flatnonzero(tune_on)
        fusion, _ = tune_fusion(rows_of(dense, rows), rows_of(lexical, rows), [qrels[i] for i in rows], rrf_k)
        apply = np.flatnonzero(~tune_on)
        fused = fuse(rows_of(dense, apply), rows_of(lexical, apply), fusion, k)
        out.ids[apply], out.scores[apply] = fused.ids, fused.scores
        chosen.append(fusion)
    return out, chosen


class Encoded(NamedTuple):
    encoder: Encoder
    cache: EmbeddingCache
    items: np.ndarray  # float32[n_items, dim]


def encode_catalog(settings: Settings, directory: Path | None, texts: list[str], stage: str,
                   progress: Progress) -> Encoded:
    """The catalog's vectors under one model, through the embedding cache."""
    encoder = Encoder.from_settings(settings, directory)
    cache = EmbeddingCache(settings.embedding_cache_dir, encoder.fingerprint, encoder.dim)
    progress(stage, 0, len(texts))
    vectors = cache.encode(encoder, texts, progress=Counter(progress, stage, len(texts)))  # (n_items, dim)
    progress(stage, len(texts), len(texts))  # duplicate texts are encoded once
    return Encoded(encoder, cache, vectors)


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
    lexical_index = LexicalIndex(list(ids), texts, language=settings.language)
    lexical = lexical_index.search(queries, depth)  # (n, depth)
    models, how = {"bm25": metrics_of(lexical, qrels)}, {"bm25": SINGLE}
    progress("bm25", 1, 1)
    seconds["bm25"] = time.monotonic() - started
    fusion: dict[str, list[Fusion]] = {}
    for suffix, directory in (("", settings.encoder_model), ("_ft", model)):
        if suffix and model is None:
            continue
        t = time.monotonic()
        encoded = encode_catalog(settings, directory, texts, f"encode items{suffix or ' (base)'}", progress)
        query_vectors = encoded.cache.encode(encoded.encoder, queries)  # (n, dim)
        dense = dense_search(query_vectors, encoded.items, ids, depth)
        models[f"dense{suffix}"], how[f"dense{suffix}"] = metrics_of(dense, qrels), f"{SINGLE}, exact search"
        progress(f"tune hybrid{suffix}", 0, 1)
        hybrid, fusion[f"hybrid{suffix}"] = cross_fit_fusion(dense, lexical, qrels, settings.rrf_k, depth,
                                                              settings.search_split_seed)
        models[f"hybrid{suffix}"] = metrics_of(hybrid, qrels)
        how[f"hybrid{suffix}"] = ("fusion tuned on these dev queries by 2-fold cross-fitting ("
                                  + " / ".join(describe(f) for f in fusion[f"hybrid{suffix}"]) + ")")
        progress(f"tune hybrid{suffix}", 1, 1)
        encoder = encoded.encoder
        ranker = load_reranker(Path(directory), device=encoder.device, bf16=encoder.bf16) if suffix else None
        if ranker is not None:  # hybrid_ft is the re-ranker `shoplm search` serves, over exact dense candidates
            models[f"hybrid{suffix}_fusion"] = models[f"hybrid{suffix}"]
            how[f"hybrid{suffix}_fusion"] = how[f"hybrid{suffix}"]
            stage = f"re-rank hybrid{suffix}"
            item_tokens = TokenStore.of(encoded.cache).get(encoder, texts, encoded.cache)  # written by `train search`
            reranked = rerank_all(ranker, lexical_index, encoded.items, queries, query_vectors, depth, depth,
                                  progress=Counter(progress, stage, len(queries)),
                                  query_tokens=encoder.encode_tokens(queries)[1], item_tokens=item_tokens)
            models[f"hybrid{suffix}"] = metrics_of(reranked, qrels)
            how[f"hybrid{suffix}"] = "the model's re-ranker over exact-dense and BM25 candidates, unavailable items included"
        seconds[f"dense{suffix}+hybrid{suffix}"] = time.monotonic() - t
    order = ["bm25", "dense", "hybrid", "dense_ft", "hybrid_ft_fusion", "hybrid_ft"]
    models = {name: {m: models[name][m] for m in METRICS} for name in order if name in models}
    seconds["total"] = time.monotonic() - started
    return SearchEval(len(queries), models, fusion, seconds, {name: how[name] for name in models})


Answer = Callable[[str, int], list[str]]  # (query, k) -> the item ids answered, best first
Service = Callable[[Sequence[Item], Settings], ContextManager[Answer]]
"""`service(catalog, settings)`: a context holding the engine `shoplm serve` runs with `settings`
on a store that holds `catalog` (indexes in settings.search_index_dir), whose answer is what
GET /v1/search?q=QUERY&k=K answers a visitor without history. The CLI builds it from the
engine, the layer above this one."""


@contextmanager
def serving_threads(threads: int) -> Iterator[None]:
    """torch, BLAS and OpenMP (FAISS) at `threads`, as `shoplm serve` runs its engine
    (settings.serve_threads, applied in shoplm/api/app.py). With several threads FAISS adds
    to an HNSW graph in an unspecified order, so only a build at the service's one thread
    (the default) reproduces the graph it searches (FAISS wiki, "Threads and asynchronous calls")."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(before)


def served_metrics(service: Service, catalog: Sequence[Item], settings: Settings, queries: Sequence[str],
                   qrels: Sequence[Mapping[str, float]], progress: Progress = quiet,
                   stage: str = "served search") -> dict[str, float]:
    """NDCG@10, Recall@10 and MRR@10 of the service's first 10 answers, Recall@100 of its 100, each query
    asked once for k=100: the service cuts every page from one ranking (shoplm/engine/listing.py),
    so its k=10 answer is the first 10 of it (tests/search/test_eval_parity.py asks both)."""
    ranked = []
    with serving_threads(settings.serve_threads), service(catalog, settings) as answer:
        for i, query in enumerate(queries):
            ranked.append(answer(query, 100))
            progress(stage, i + 1, len(queries))
    at10 = ranking_metrics([r[:10] for r in ranked], qrels, ks=(10,), recall_ks=(10,), mrr_k=10)
    at100 = ranking_metrics(ranked, qrels, ks=(10,), recall_ks=(100,), mrr_k=10)
    return {"ndcg@10": at10["ndcg@10"], "recall@10": at10["recall@10"], "recall@100": at100["recall@100"],
            "mrr@10": at10["mrr@10"]}


class HeldOut(NamedTuple):
    """What every model of `evaluate_held_out` is scored on."""

    items: Sequence[Item]
    ids: np.ndarray  # object[n_items]
    texts: list[str]
    queries: list[str]  # the test queries, sorted
    qrels: list[dict[str, float]]
    tune_queries: list[str]  # the train queries the test file does not have, sorted
    tune_qrels: list[dict[str, float]]
    tune_lexical: Hits  # BM25's hybrid_depth best of each tune query


def evaluate_held_out(items: Sequence[Item], train: Sequence[Judgment], test: Sequence[Judgment], settings: Settings,
                      service: Service, model: Path | None = None, progress: Progress = quiet) -> SearchEval:
    """Every system on every judged query of `test`, none split off: hybrid_served (and
    hybrid_ft_served) what `service` answers with `settings` (and `model` as encoder_model),
    hybrid_tuned the same with the fusion tuned on the judged queries of `train` that `test`
    does not have, and no re-ranker."""
    started = time.monotonic()
    test_qrels, train_qrels = qrels_by_query(test), qrels_by_query(train)
    queries, tune_queries = sorted(test_qrels), sorted(set(train_qrels) - set(test_qrels))
    ids = np.asarray([i.item_id for i in items], dtype=object)
    texts = item_texts(items, settings.item_text_template)
    progress("bm25", 0, 1)
    lexical_index = LexicalIndex(list(ids), texts, language=settings.language)
    data = HeldOut(items, ids, texts, queries, [test_qrels[q] for q in queries], tune_queries,
                   [train_qrels[q] for q in tune_queries], lexical_index.search(tune_queries, settings.hybrid_depth))
    models = {"bm25": metrics_of(lexical_index.search(queries, max(100, settings.hybrid_depth)), data.qrels)}
    how, fusion = {"bm25": SINGLE}, {}
    progress("bm25", 1, 1)
    seconds = {"bm25": time.monotonic() - started}
    with tempfile.TemporaryDirectory(prefix="shoplm-served-") as tmp:
        for suffix, directory in (("", settings.encoder_model), ("_ft", model)):
            if suffix and model is None:
                continue
            t = time.monotonic()
            served = settings.model_copy(update={"encoder_model": directory, "torch_threads": settings.serve_threads,
                                                 "search_index_dir": Path(tmp) / f"index{suffix}"})
            for name, (metrics, described, tuned) in _held_out_model(data, served, service, suffix, progress).items():
                models[name], how[name] = metrics, described
                if tuned is not None:
                    fusion[name] = [tuned]
            seconds[f"dense{suffix}+hybrid{suffix}"] = time.monotonic() - t
    seconds["total"] = time.monotonic() - started
    return SearchEval(len(queries), {name: {m: v[m] for m in METRICS} for name, v in models.items()}, fusion, seconds,
                      how, "test")


def _held_out_model(data: HeldOut, served: Settings, service: Service, suffix: str,
                    progress: Progress) -> dict[str, tuple[dict[str, float], str, Fusion | None]]:
    """dense, hybrid_tuned and hybrid_served under one model (served.encoder_model):
    system -> (metrics, how, tuned fusion)."""
    model = served.encoder_model
    encoded = encode_catalog(served, model, data.texts, f"encode items{suffix or ' (base)'}", progress)
    dense = dense_search(encoded.cache.encode(encoded.encoder, data.queries), encoded.items, data.ids,
                         max(100, served.hybrid_depth))
    out = {f"dense{suffix}": (metrics_of(dense, data.qrels), f"{SINGLE}, exact search", None)}
    tuned = None
    if data.tune_queries:
        progress(f"tune hybrid{suffix}", 0, 1)
        tune_dense = dense_search(encoded.cache.encode(encoded.encoder, data.tune_queries), encoded.items, data.ids,
                                  served.hybrid_depth)
        tuned, _ = tune_fusion(tune_dense, data.tune_lexical, data.tune_qrels, served.rrf_k)
        progress(f"tune hybrid{suffix}", 1, 1)
    metrics = served_metrics(service, data.items, served, data.queries, data.qrels, progress, f"serve hybrid{suffix}")
    reranked = bool(served.search_rerank and model and (model_dir(model) / RERANKER_DIR / "ranker.json").is_file())
    fused = Fusion(served.hybrid_method, served.hybrid_dense_weight, served.rrf_k)
    if tuned is not None:
        if tuned == fused and not reranked:
            tuned_metrics = metrics  # the settings hold the tuned fusion already: the same answers
        else:  # the same service with the tuned fusion instead of the settings' one, and no re-ranker
            retuned = served.model_copy(update={"hybrid_method": tuned.method, "hybrid_dense_weight": tuned.dense_weight,
                                                "search_rerank": False})
            tuned_metrics = served_metrics(service, data.items, retuned, data.queries, data.qrels, progress,
                                           f"serve hybrid{suffix}_tuned")
        out[f"hybrid{suffix}_tuned"] = (tuned_metrics, f"the service with fusion {describe(tuned)} tuned on "
                                        f"{len(data.tune_queries):,} train queries, no re-ranker", tuned)
    scored_with = "the model's re-ranker" if reranked else f"fusion {describe(fused)}"
    out[f"hybrid{suffix}_served"] = (metrics, f"{SERVED} (GET /v1/search) with {model or 'the bundled model'}: "
                                     f"{scored_with}", None)
    return out


def write_search_report(result: SearchEval, out_dir: Path, title: str) -> Path:
    """Markdown table + PNG chart: how each system was scored, which are as served, and the
    relative gains of the best system."""
    dev = result.queries == "dev"
    lines = [(f"{result.n_queries} dev queries (split by query, seeded)" if dev else
              f"All {result.n_queries} judged queries of the test file") + "; bm25 and dense are single systems, "
             "dense retrieval exact.",
             "How each system was scored: " + "; ".join(f"{name}: {how}" for name, how in result.how.items()) + ".",
             f"As served (what `shoplm serve` answers with these settings): {', '.join(result.served)}." if result.served
             else "No system here is what `shoplm serve` answers: it fuses with SHOPLM_HYBRID_METHOD and "
                  "SHOPLM_HYBRID_DENSE_WEIGHT, not with weights tuned on these queries; `--test-judgments` scores "
                  "the served system on held-out queries.",
             *(["hybrid_ft re-ranks the union of the BM25 and dense_ft candidates with the model directory's "
                "LambdaMART re-ranker (trained by `shoplm train search` on judged queries held out of fine-tuning); "
                "hybrid_ft_fusion is the tuned fusion of the same two systems, without it."]
               if "hybrid_ft_fusion" in result.models else []),
             "Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()) + "."]
    hybrids = ["hybrid"] if dev else ["hybrid_tuned", "hybrid_served"]
    best = next(n for n in (("hybrid_ft", "hybrid") if dev else ("hybrid_ft_served", "hybrid_served")) if n in result.models)
    for base in ("bm25", "dense", *hybrids):
        if base != best and base in result.models:
            a, b = result.models[best]["ndcg@10"], result.models[base]["ndcg@10"]
            ra, rb = result.models[best]["recall@100"], result.models[base]["recall@100"]
            lines.append(f"{best} vs {base}: NDCG@10 {a:.4f} vs {b:.4f} ({(a / b - 1) * 100:+.1f}% relative); "
                         f"Recall@100 {ra:.4f} vs {rb:.4f}.")
    section = Section("Dev queries" if dev else "Test queries", result.models, chart="search.png")
    return write_report(out_dir, title, [section], preamble="\n\n".join(lines))
