"""shoplm benchmarks: `make bench` (or `python bench/bench.py [--only encoder,ann,service,service_trained,service_search_trained,ingest,ads,storefront,facets_1m,impressions,lists,hosts,million]`).

Every comparison is measured in the same run on the same machine, alternating the systems
compared and quoting medians, because the machine may be shared and noisy. Results go to
bench/RESULTS.md (with the machine described) and bench/results.json.

Sections:
- encoder: catalog items/s and one-query p50/p99 ms for the naive `SentenceTransformer.encode`,
  shoplm's default path (torch, length-sorted batches, bare forward pass for a query) and the
  fast path (int8 ONNX); NDCG@10 of dense retrieval on the Home Depot dev queries for each
  (from `shoplm eval search`, whose embedding cache makes a re-run cheap).
- ann: the real Home Depot vectors and synthetic ones at 100k and 1M (same dimension):
  build seconds, p50/p99 ms for one query and Recall@10 against exact search.
- service: p50/p99 and errors of /v1/search and /v1/recommend at 1, 8 and 32 concurrent
  clients against `shoplm serve` (1 and 2 worker processes) on the Amazon Scientific data,
  from wrk (bench/wrk.lua), a C load generator, so the client's own cost stays out.
- service_search_trained: p50/p99 of plain /v1/search on Home Depot with the bundled model and
  with the fine-tuned model and its re-ranker (`shoplm train search`, trained once into
  var/models/hd), at 1, 8 and 32 clients, 1 and 2 workers.
- ingest: events/s from a file into SQLite and PostgreSQL, and through POST /v1/events in
  batches of 500 against a running `shoplm serve`.
- ads: p50/p99 ms of `Engine.rank_ads` (/v1/ads/rank) at 50,000 sponsored-capable items, for
  the item and the session (history) targets; with `--ads-before CHECKOUT` the same measured
  for an earlier checkout of shoplm in the same run (the two alternating), the p50 ratio
  before/after, and whether both return the same ads.
- storefront: p50/p99 and errors of /v1/search with facets brand,category,price and
  sort=price_asc, of the same without them, and of /v1/suggest on 1-8 character prefixes, at 8
  clients against `shoplm serve --workers 2` on the Home Depot catalog (wrk), for the torch and
  the int8 ONNX encoder; py-spy's samples of a worker under that load (when py-spy is
  installed), and each stage's share of a request run alone through the app in-process.
- facets_1m: `FacetColumns` build time and memory at 1,000,000 synthetic items made from the
  Home Depot titles, and p50/p99 of brand+category+price facets (with and without a brand
  filter), the filter mask and sort=price_asc over a 30% and a 1% result set, in-process.
- impressions: p50/p99 of plain /v1/search (onnx-int8) at 8 clients with impression logging
  on (sample rate 1) and off (1e-9, which logs none), two services side by side taking turns;
  impressions/s with it on, and the rows of the impressions table against wrk's 200 answers.
- million: a 1,000,000-item catalog from real titles (bench/million.py) end to end through the
  CLI and the HTTP API: embed, ingest, index build (time, peak memory), `shoplm serve --workers
  2` (startup, memory per worker), /v1/search p50/p99 at 8 clients, POST -> found latency, and
  the quantised vectors' Recall@10 against exact search. The first run encodes the catalog
  (about 25 minutes on 2 cores); later runs reuse its Parquet parts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The shoplm checkout imported: this one, or, in an `ads` child process, the one it measures.
CODE = Path(os.environ.get("SHOPLM_BENCH_CODE") or ROOT)
sys.path.insert(0, str(CODE))

from shoplm.config import Settings  # noqa: E402

OUT = ROOT / "bench"


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_mib": mem, "load_average_at_start": os.getloadavg(),
            "python": platform.python_version(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


# --- encoder ------------------------------------------------------------------------------

def bench_encoder(settings: Settings, n_items: int, n_queries: int, repeats: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from shoplm.lm.encoder import Encoder, default_model_dir

    torch.set_num_threads(os.cpu_count() or 1)
    texts, queries = _homedepot_texts(settings, n_items, n_queries)
    naive = SentenceTransformer(str(settings.encoder_model or default_model_dir()), device="cpu")
    default = Encoder.from_settings(settings.model_copy(update={"encoder_backend": "torch"}))
    fast = Encoder.from_settings(settings.model_copy(update={"encoder_backend": "onnx-int8"}))
    systems = {
        "naive (SentenceTransformer.encode)": (lambda t: naive.encode(t, normalize_embeddings=True),
                                               lambda q: naive.encode([q], normalize_embeddings=True)[0]),
        "shoplm default (torch)": (default.encode, default.encode_query),
        "shoplm fast (onnx-int8)": (fast.encode, fast.encode_query),
    }
    throughput = {name: [] for name in systems}
    latency = {name: [] for name in systems}
    for _ in range(repeats):  # alternate the systems, so load changes hit them alike
        for name, (encode, _query) in systems.items():
            started = time.perf_counter()
            encode(texts)
            throughput[name].append(len(texts) / (time.perf_counter() - started))
    for query in queries:
        for name, (_encode, encode_query) in systems.items():
            started = time.perf_counter()
            encode_query(query)
            latency[name].append(time.perf_counter() - started)
    naive_rate = statistics.median(throughput["naive (SentenceTransformer.encode)"])
    quality = _search_quality(settings)
    rows = {}
    for name in systems:
        rate = statistics.median(throughput[name])
        backend = "onnx-int8" if "fast" in name else "torch"
        rows[name] = {"items_per_s": round(rate, 1), "x_naive": round(rate / naive_rate, 2), **percentiles(latency[name]),
                      "dense_ndcg@10": quality.get(backend, {}).get("dense"),
                      "hybrid_ndcg@10": quality.get(backend, {}).get("hybrid")}
    base = quality.get("torch", {}).get("dense")
    fast_q = quality.get("onnx-int8", {}).get("dense")
    return {"items": len(texts), "queries": len(queries), "repeats": repeats, "threads": torch.get_num_threads(),
            "systems": rows, "fast_dense_ndcg_vs_base": round(fast_q / base, 4) if base and fast_q else None}


def _converted_homedepot(settings: Settings) -> Path:
    converted = ROOT / "var" / "hd"
    if not (converted / "items.csv").is_file():
        subprocess.run([sys.executable, "-m", "shoplm.cli", "data", "convert", "homedepot",
                        str(settings.data_dir / "homedepot"), str(converted)], check=True, capture_output=True)
    return converted


def _homedepot_texts(settings: Settings, n_items: int, n_queries: int) -> tuple[list[str], list[str]]:
    """Item texts as the search index builds them, and distinct judged queries."""
    import polars as pl

    from shoplm.data.readers import read_items
    from shoplm.data.text import item_texts

    converted = _converted_homedepot(settings)
    items = read_items(converted / "items.csv")[:n_items]
    queries = pl.read_csv(converted / "judgments.csv")["query"].unique(maintain_order=True).head(n_queries).to_list()
    return item_texts(items, settings.item_text_template), queries


def _search_quality(settings: Settings) -> dict:
    """NDCG@10 of `dense` and `hybrid` on the Home Depot dev queries, per encoder backend,
    by `shoplm eval search` on the converted files (converted here if missing)."""
    converted = _converted_homedepot(settings)
    out = {}
    for backend in ("torch", "onnx-int8"):
        json_out = ROOT / "var" / "eval" / f"bench-search-{backend}.json"
        env = {**os.environ, "SHOPLM_ENCODER_BACKEND": backend}
        subprocess.run([sys.executable, "-m", "shoplm.cli", "eval", "search", "--items", str(converted / "items.csv"),
                        "--judgments", str(converted / "judgments.csv"), "--json", str(json_out)],
                       check=True, capture_output=True, env=env)
        models = json.loads(json_out.read_text())["models"]
        out[backend] = {"dense": models["dense"]["ndcg@10"], "hybrid": models["hybrid"]["ndcg@10"]}
    return out


# --- ANN ----------------------------------------------------------------------------------

def bench_ann(settings: Settings, sizes: list[int], n_queries: int) -> dict:
    import faiss

    from shoplm.search.index import FaissIndex

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    rows = {}
    real = _homedepot_vectors(settings)
    datasets = ([("homedepot (real)", real)] if real is not None else []) + \
               [(f"synthetic {n:,}", None) for n in sizes]
    dim = real.shape[1] if real is not None else 384
    rng = np.random.default_rng(0)
    for name, vectors in datasets:
        if vectors is None:
            vectors = _synthetic(int(name.split()[1].replace(",", "")), dim, rng)
        queries = vectors[rng.choice(len(vectors), n_queries, replace=False)] + \
            rng.normal(0, 0.05, (n_queries, dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        exact = faiss.IndexFlatIP(dim)
        exact.add(vectors)
        started = time.perf_counter()
        index = FaissIndex(dim, hnsw_min_items=1)  # HNSW at every size: that is what is measured
        index.add([str(i) for i in range(len(vectors))], vectors)
        build = time.perf_counter() - started
        exact_lat, truths = [], []
        for q in queries:
            started = time.perf_counter()
            _, truth = exact.search(q[None, :], 10)
            exact_lat.append(time.perf_counter() - started)
            truths.append(set(truth[0]))
        sweep = {}
        for ef in EF_SEARCH:  # the recall/speed curve, as ann-benchmarks draws it
            index.ef_search = ef
            ann_lat, recall = [], []
            for q, truth in zip(queries, truths):
                started = time.perf_counter()
                hits = index.search(q[None, :], 10)
                ann_lat.append(time.perf_counter() - started)
                recall.append(len(set(hits.ids[0].astype(int)) & truth) / 10)
            sweep[str(ef)] = {"recall@10": round(float(np.mean(recall)), 4), "hnsw": percentiles(ann_lat),
                              "speedup_p50": round(float(np.median(exact_lat) / np.median(ann_lat)), 1)}
        rows[name] = {"vectors": len(vectors), "build_s": round(build, 1), "exact": percentiles(exact_lat),
                      "ef_search": sweep}
        del exact, index
    return {"queries": n_queries, "m": 32, "ef_construction": 80, "default_ef_search": 128, "datasets": rows}


EF_SEARCH = (16, 32, 64, 128, 256)


def _homedepot_vectors(settings: Settings) -> np.ndarray | None:
    from shoplm.lm.encoder import Encoder

    fingerprint = Encoder.from_settings(settings.model_copy(update={"encoder_backend": "torch"})).fingerprint
    path = settings.embedding_cache_dir / fingerprint / "vectors.npy"
    return np.load(path) if path.is_file() else None


def _synthetic(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Clustered unit vectors (1,000 topics), closer to text embeddings than uniform noise."""
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        out[start:start + m] = centres[rng.integers(0, 1000, m)] + rng.normal(0, 0.6, (m, dim)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


# --- ingest -------------------------------------------------------------------------------

def bench_ingest(settings: Settings, n_events: int, pg_url: str | None, repeats: int = 3) -> dict:
    """Events/s from a file into each store (`repeats` runs into an empty store each, the
    median quoted) and through `/v1/events`."""
    import tempfile

    from shoplm.store.ingest import ingest
    from shoplm.data.records import Item
    from shoplm.store import open_store

    work = Path(tempfile.mkdtemp(prefix="shoplm-bench-"))
    items = [Item(f"i{i}", f"item {i}") for i in range(1000)]
    events = work / "events.csv"
    rng = np.random.default_rng(0)
    with open(events, "w") as handle:
        handle.write("timestamp,user_id,session_id,event_type,item_id\n")
        types = np.array(["view", "click", "add_to_cart", "purchase"])
        for i in range(n_events):
            handle.write(f"{1_700_000_000 + i},u{rng.integers(50_000)},s{i // 20},{types[i % 4]},i{rng.integers(1000)}\n")
    rows = {}
    stores = {"sqlite": lambda run: f"sqlite:///{work / f'bench-{run}.db'}"}
    if pg_url:
        stores["postgresql"] = lambda run: _fresh_pg_database(pg_url, "shoplm_bench")
    for name, fresh_url in stores.items():
        runs = []
        for run in range(repeats):
            store = open_store(fresh_url(run))
            store.upsert_items(items)
            started = time.perf_counter()
            report = ingest(store, events=events)
            runs.append((time.perf_counter() - started, report.files[0].stored))
            store.close()
        seconds, stored = sorted(runs)[len(runs) // 2]
        rows[f"file -> {name}"] = {"events": stored, "seconds": round(seconds, 2), "events_per_s": round(stored / seconds),
                                   "events_per_s_runs": [round(n / t) for t, n in runs]}
    rows["POST /v1/events (batches of 500) -> sqlite"] = _ingest_http(work, items, 50_000)
    return {"rows": rows}


def _fresh_pg_database(admin_url: str, name: str) -> str:
    """An empty database `name` on the server of `admin_url` (dropped first if it exists)."""
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    admin.dispose()
    return url


def _ingest_http(work: Path, items, n_events: int) -> dict:
    import httpx

    from shoplm.store import open_store
    from tests.service import ServiceProcess

    url = f"sqlite:///{work / 'http.db'}"
    store = open_store(url)
    store.upsert_items(items)
    store.close()
    env = {"SHOPLM_READ_KEY": "bench", "SHOPLM_RATE_LIMIT_PER_SECOND": "0", "SHOPLM_LOG_LEVEL": "warning",
           "SHOPLM_MAX_EVENTS_PER_REQUEST": "500"}
    with ServiceProcess(url, work, env=env) as service, httpx.Client(base_url=service.url, timeout=60,
                                                                     headers={"X-API-Key": "bench"}) as http:
        batches = [[{"timestamp": 1_700_000_000 + b * 500 + j, "user_id": f"u{(b * 500 + j) % 5000}",
                     "event_type": "view", "item_id": f"i{(b * 7 + j) % 1000}"} for j in range(500)]
                   for b in range(n_events // 500)]
        started = time.perf_counter()
        for batch in batches:
            assert http.post("/v1/events", json={"events": batch}).status_code == 200
        seconds = time.perf_counter() - started
    return {"events": n_events, "seconds": round(seconds, 2), "events_per_s": round(n_events / seconds)}


# --- service ------------------------------------------------------------------------------

WARM_UP_S = 3.0  # wrk at a cell's load before each timed run of it (service sections)


def bench_service(settings: Settings, clients: list[int], seconds: float, model: Path | None,
                  backend: str = "onnx-int8", workers: list[int] = (1,), repeats: int = 3,
                  routes: Sequence[str] = ("search", "recommend")) -> dict:
    """p50/p99 and errors of /v1/search and /v1/recommend (`routes`) against `shoplm serve` on
    the Amazon Scientific data, loaded by wrk (a separate process, C, epoll) over loopback: each
    request a random query (of 500 item titles) or user (of 2,000). For each number of worker
    processes; each cell `repeats` times, the routes alternating, medians reported (the machine
    is shared). `model`: a trained recommendation model the service loads."""
    import shutil
    import urllib.parse

    import polars as pl

    from tests.service import ServiceProcess, run_cli

    if shutil.which("wrk") is None:
        raise SystemExit("the service benchmark needs the load generator wrk: apt-get install wrk (Debian/Ubuntu) "
                         "or brew install wrk; or leave it out with --only encoder,ann,ingest")
    data = ROOT / "var" / "data" / "scientific"
    if not (data / "events.csv").is_file():
        run_cli("data", "convert", "amazon-recbole", str(settings.data_dir / "amazon-scientific"), str(data))
    work = ROOT / "var" / "bench-service"
    work.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{work / 'shop.db'}"
    run_cli("ingest", "--items", str(data / "items.csv"), "--events", str(data / "events.csv"), "--store", store)
    users = pl.read_csv(data / "events.csv")["user_id"].unique().sort().head(2000).to_list()
    queries = [str(t).split(",")[0][:60] for t in pl.read_csv(data / "items.csv")["title"].head(500).to_list()]
    paths = {"search": ["/v1/search?" + urllib.parse.urlencode({"q": q}) for q in queries],
             "recommend": ["/v1/recommend?" + urllib.parse.urlencode({"user_id": u}) for u in users]}
    paths = {route: lines for route, lines in paths.items() if route in routes}
    for route, lines in paths.items():
        (work / f"{route}.paths").write_text("\n".join(lines) + "\n")
    env = {"SHOPLM_READ_KEY": "bench", "SHOPLM_RATE_LIMIT_PER_SECOND": "0", "SHOPLM_LOG_LEVEL": "warning",
           "SHOPLM_EMBEDDING_CACHE_DIR": str(settings.embedding_cache_dir.resolve()),
           "SHOPLM_ENCODER_BACKEND": backend, "SHOPLM_ONNX_CACHE_DIR": str(settings.onnx_cache_dir.resolve())}
    if model is not None:
        env["SHOPLM_RECOMMEND_MODEL"] = str(model.resolve())
    rows = {}
    for n_workers in workers:
        # a first start builds the index (ONNX export + encoding): past 180 s on a slow 2-core CPU
        with ServiceProcess(store, work, env={**env, "SHOPLM_SERVE_WORKERS": str(n_workers)},
                            start_timeout=900) as service:
            cells = {(route, n): [] for route in paths for n in clients}
            for _ in range(repeats):
                for (route, n), runs in cells.items():
                    # a warm-up at the cell's own load, not counted: the previous cell's backlog
                    # (32 requests in flight) would otherwise wait in front of this cell's first
                    # requests, which is most of a p99 over a thousand requests
                    for duration in (WARM_UP_S, seconds):
                        out = subprocess.run(
                            ["wrk", "-t1", f"-c{n}", f"-d{duration:g}s", "--timeout", "10s", "-s",
                             str(OUT / "wrk.lua"), service.url, "--", str(work / f"{route}.paths"), str(n)],
                            capture_output=True, text=True, check=True, env={**os.environ, "BENCH_KEY": "bench"})
                    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            for (route, n), runs in cells.items():
                rows[f"/v1/{route} x{n}, {n_workers} worker{'s' if n_workers > 1 else ''}"] = {
                    "route": route, "clients": n, "workers": n_workers, "requests": sum(r["requests"] for r in runs),
                    "errors": sum(r["errors"] + r["non_2xx"] for r in runs),
                    "requests_per_s": round(statistics.median(r["requests"] / r["seconds"] for r in runs), 1),
                    "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                    "p99_ms": statistics.median(r["p99_ms"] for r in runs), "p99_runs_ms": [r["p99_ms"] for r in runs]}
    return {"seconds_per_cell": seconds, "repeats": repeats, "warm_up_s": WARM_UP_S, "model": str(model) if model else None,
            "load": "wrk -t1", "encoder_backend": backend, "rows": rows}


def trained_scientific(settings: Settings, minutes: float) -> Path:
    """A `shoplm train recommend` model of Amazon Scientific for the service section with a
    trained model, trained here once (`minutes` of training; the serving cost does not depend
    on it: the architecture and the catalog are the same) unless --service-model names one."""
    from tests.service import run_cli

    data, model = ROOT / "var" / "data" / "scientific", ROOT / "var" / "models" / "bench-scientific"
    if not (model / "params.json").is_file():
        if not (data / "events.csv").is_file():
            run_cli("data", "convert", "amazon-recbole", str(settings.data_dir / "amazon-scientific"), str(data))
        print(f"  service_trained: training {model} ({minutes:g} minutes) ...", flush=True)
        subprocess.run([sys.executable, "-m", "shoplm.cli", "train", "recommend", "--items", str(data / "items.csv"),
                        "--events", str(data / "events.csv"), "--out", str(model)], check=True,
                       env={**os.environ, "SHOPLM_RECOMMEND_MAX_MINUTES": f"{minutes:g}"})
    return model


def bench_search_models(settings: Settings, model: Path, clients: list[int], workers: list[int], seconds: float,
                        repeats: int) -> dict:
    """Plain /v1/search?q=Q (the first 500 distinct judged Home Depot queries) against `shoplm
    serve` on the Home Depot catalog with the bundled model and with `model` (a `shoplm train
    search` directory: the fine-tuned encoder and its re-ranker, the pipeline the README's
    search figure comes from), torch encoder, for each number of workers; per service the
    cells (clients) alternate for `repeats` rounds, each run after a warm-up at its own load."""
    import polars as pl

    from tests.service import ServiceProcess, run_cli

    converted = _converted_homedepot(settings)
    work = ROOT / "var" / "bench-search-models"
    work.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{work / 'shop.db'}"
    if not (work / "shop.db").is_file():
        run_cli("ingest", "--items", str(converted / "items.csv"), "--store", store)
    judged = pl.read_csv(converted / "judgments.csv")["query"].unique(maintain_order=True).to_list()
    paths = work / "search.paths"
    paths.write_text("\n".join(_search_url(q, facets=False) for q in judged[:500]) + "\n")
    rows = {}
    # the README's figure is of the torch encoder; the int8 one answers at 99.6% of its NDCG@10
    # (docs/search.md) with the query's token vectors from the same run
    for name, directory, backend in (("bundled", None, "torch"), ("fine-tuned + re-ranker", model, "torch"),
                                     ("fine-tuned + re-ranker, onnx-int8", model, "onnx-int8")):
        overrides = {"search_index_dir": work / f"index-{'bundled' if directory is None else 'trained'}-{backend}",
                     "embedding_cache_dir": (ROOT / settings.embedding_cache_dir).resolve(), "encoder_backend": backend,
                     "onnx_cache_dir": (ROOT / settings.onnx_cache_dir).resolve()}
        if directory is not None:
            overrides["encoder_model"] = Path(directory).resolve()
        for n_workers in workers:
            service = ServiceProcess(store, work, env=_service_env(n_workers, overrides))
            service.log.unlink(missing_ok=True)
            service.start(timeout=1800)
            try:
                _wait_for_workers(service.url, n_workers)
                runs = {n: [] for n in clients}
                for _ in range(repeats):
                    for n in clients:
                        _wrk(service.url, paths, n, WARM_UP_S)
                        runs[n].append(_wrk(service.url, paths, n, seconds))
            finally:
                service.stop()
            for n, r in runs.items():
                rows[f"{name}, x{n}, {n_workers} worker{'s' if n_workers > 1 else ''}"] = {
                    "model": name, "clients": n, "workers": n_workers, **_wrk_row(r),
                    "p99_runs_ms": [x["p99_ms"] for x in r]}
    return {"model": str(model), "seconds_per_cell": seconds, "repeats": repeats, "warm_up_s": WARM_UP_S,
            "queries": min(500, len(judged)), "items": len(pl.read_csv(converted / "items.csv", columns=["item_id"])),
            "rows": rows}


def trained_homedepot(settings: Settings) -> Path:
    """The README's `shoplm train search` model of Home Depot (var/models/hd), trained here once."""
    converted, model = _converted_homedepot(settings), ROOT / "var" / "models" / "hd"
    if not (model / "shoplm_train.json").is_file():
        print(f"  service_search_trained: training {model} ...", flush=True)
        subprocess.run([sys.executable, "-m", "shoplm.cli", "train", "search", "--items", str(converted / "items.csv"),
                        "--judgments", str(converted / "judgments.csv"), "--out", str(model)], check=True)
    return model


def _search_models_lines(v: dict) -> list[str]:
    lines = ["## Search with the fine-tuned model and its re-ranker", "",
             f"Plain `/v1/search?q=Q` ({v['queries']} distinct judged Home Depot queries) against `shoplm serve` on "
             f"the Home Depot catalog ({v['items']:,} items, SQLite), with the bundled model and with "
             f"`{v['model']}` (`shoplm train search`: the fine-tuned encoder and its re-ranker, the pipeline of the "
             f"README's search figure), torch encoder unless the row says onnx-int8 (the same model exported to int8 "
             f"ONNX, query vector and token vectors from one run); wrk over loopback, {v['seconds_per_cell']:.0f} s per run, {v['repeats']} runs "
             f"per cell after a {v['warm_up_s']:g} s warm-up each: medians of the runs.", "",
             "| model, clients, workers | requests | req/s | p50 ms | p99 ms | p99 of each run, ms | errors |",
             "|---|---|---|---|---|---|---|"]
    for name, r in v["rows"].items():
        each = ", ".join(f"{x:g}" for x in r["p99_runs_ms"])
        lines.append(f"| {name} | {r['requests']:,} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {each} | "
                     f"{r['errors']} |")
    return lines + [""]


# --- ads ----------------------------------------------------------------------------------

ADS_TARGETS = 50  # distinct context items and sessions the timed calls cycle through


def bench_ads(n_items: int, calls: int, rounds: int, before: Path | None, threads: int = 1) -> dict:
    """`Engine.rank_ads(item_id=..., k=3)` and `rank_ads(session_id=..., k=3)` over `n_items`
    synthetic items, every one with a bid, in a memory:// store. Each code version runs in a
    child process of its own (`--ads-child`: PYTHONPATH and cwd the checkout, so `import shoplm`
    is that checkout's); both share one embedding cache (same format and key in both), so the
    items are encoded once, the first time. The children take turns: `rounds` rounds, each
    `calls / rounds` calls per target path per child, so load changes on a shared machine hit
    both alike; then each answers the same 2 x ADS_TARGETS requests, compared for equality."""
    work = ROOT / "var" / "bench-ads"
    codes = {"before": before.resolve()} if before is not None else {}
    codes["after"] = ROOT
    children: dict[str, _AdsChild] = {}
    try:
        for label, code in codes.items():  # one after the other: the first fills the embedding cache
            print(f"  ads: opening an engine over {n_items:,} items with {code} ...", flush=True)
            children[label] = _AdsChild(code, work, n_items, threads)
        per_round = max(1, calls // rounds)
        times = {(label, path): [] for label in children for path in ("item", "session")}
        for _ in range(rounds):
            for path in ("item", "session"):
                for label, child in children.items():
                    times[label, path].append(child.ask({"op": "time", "path": path, "n": per_round})["seconds"])
        answers = {label: child.ask({"op": "answers"}) for label, child in children.items()}
    finally:
        for child in children.values():
            child.close()
    rows = {}
    for (label, path), runs in times.items():
        pooled = [t for run in runs for t in run]
        rows[f"{label} {path}"] = {"code": label, "path": path, "calls": len(pooled), **percentiles(pooled),
                                   "p50_rounds_ms": [round(float(np.median(run)) * 1e3, 2) for run in runs],
                                   "ads_per_answer": round(float(np.mean([len(a) for a in answers[label][path]])), 2)}
    out = {"items": n_items, "sponsored": n_items, "k": 3, "targets": ADS_TARGETS, "rounds": rounds, "threads": threads,
           "calls_per_round": per_round, "rows": rows,
           "children": {label: child.info for label, child in children.items()}}
    if "before" in children:
        out["p50_ratio_before_after"] = {path: round(rows[f"before {path}"]["p50_ms"] / rows[f"after {path}"]["p50_ms"], 1)
                                         for path in ("item", "session")}
        out["match"] = {path: _same_ads(answers["before"][path], answers["after"][path]) for path in ("item", "session")}
    return out


def _same_ads(before: list, after: list, tol: float = 1e-5) -> dict:
    """Same item ids in the same order, scores (and relevances, bids) within `tol`, per answer."""
    differ = [i for i, (b, a) in enumerate(zip(before, after))
              if [x[0] for x in b] != [x[0] for x in a]
              or any(abs(p - q) > tol for x, y in zip(b, a) for p, q in zip(x[1:], y[1:]))]
    if len(before) != len(after):
        differ.append(min(len(before), len(after)))
    return {"answers": len(before), "same": not differ, "differing": len(differ),
            "max_score_diff": max((abs(x[1] - y[1]) for b, a in zip(before, after) for x, y in zip(b, a)), default=0.0),
            "first_difference": {"before": before[differ[0]], "after": after[differ[0]]} if differ else None}


class _AdsChild:
    """One `bench.py --ads-child` process on checkout `code`: JSON lines in, JSON lines out."""

    def __init__(self, code: Path, work: Path, n_items: int, threads: int):
        env = {**os.environ, "PYTHONPATH": str(code), "SHOPLM_BENCH_CODE": str(code)}
        tag = hashlib.blake2b(str(code.resolve()).encode(), digest_size=4).hexdigest()
        config = {"items": n_items, "threads": threads, "cache": str(work / "embeddings"),
                  "index": str(work / f"index-{tag}")}
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--ads-child", json.dumps(config)],
                                        cwd=code, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()
        if Path(self.info["shoplm"]).resolve().parent.parent != code.resolve():
            raise SystemExit(f"the ads child for {code} imported shoplm from {self.info['shoplm']}")

    def ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"an ads child stopped (exit status {self.process.wait()}); its stderr is above")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.ask({"op": "quit"})
            except (SystemExit, BrokenPipeError):
                pass
            self.process.wait(timeout=60)


def _ads_child(config: dict) -> None:
    """The child side of `bench_ads`: this checkout's engine, timed on request. Answers on the
    original stdout; anything the library prints goes to stderr."""
    import importlib.util

    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    import shoplm
    from shoplm.store import open_store

    flat = importlib.util.find_spec("shoplm.engine").submodule_search_locations is None  # the earlier layout
    if flat:
        from shoplm.engine import Engine
        from shoplm.records import Event, Item
    else:
        from shoplm.data.records import Event, Item
        from shoplm.engine.engine import Engine

    items, sessions = _ads_catalog(config["items"])
    store = open_store("memory://")
    store.upsert_items([Item(**fields) for fields in items])
    store.add_events([Event(**fields) for events in sessions.values() for fields in events])
    settings = Settings(store_url="memory://", search_index_dir=Path(config["index"]),
                        embedding_cache_dir=Path(config["cache"]))
    started = time.perf_counter()
    engine = Engine.open(settings, store)
    open_s = time.perf_counter() - started
    # As `shoplm serve` runs a request: BLAS and OpenMP pools at serve_threads (1 by default;
    # with a pool per core, a matrix-vector product next to another busy process waits on a
    # descheduled thread), and the engine's long-lived objects frozen out of the collector's passes.
    import gc

    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(config["threads"])  # noqa: F841 (kept for the process's life)
    gc.collect()
    gc.freeze()
    rng = np.random.default_rng(1)
    item_targets = [items[i]["item_id"] for i in rng.choice(len(items), ADS_TARGETS, replace=False)]
    calls = {"item": [lambda t=t: engine.rank_ads(item_id=t, k=3) for t in item_targets],
             "session": [lambda s=s: engine.rank_ads(session_id=s, k=3) for s in list(sessions)[:ADS_TARGETS]]}
    started = time.perf_counter()
    calls["item"][0]()  # the first call after opening (the new code builds its sponsored arrays here)
    first_ms = (time.perf_counter() - started) * 1e3
    for call in calls["item"] + calls["session"]:  # warm-up
        call()

    def send(message: dict) -> None:
        reply.write(json.dumps(message) + "\n")
        reply.flush()

    send({"shoplm": shoplm.__file__, "engine": sys.modules[Engine.__module__].__file__, "layout": "flat" if flat else "packages",
          "fingerprint": engine.search_pipeline.encoder.fingerprint, "open_s": round(open_s, 1),
          "first_call_ms": round(first_ms, 2)})
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "time":
            seconds, path = [], calls[request["path"]]
            for i in range(request["n"]):
                started = time.perf_counter()
                path[i % len(path)]()
                seconds.append(time.perf_counter() - started)
            send({"seconds": seconds})
        elif request["op"] == "answers":  # plain lists: the new code's Ad NamedTuples and the old tuples alike
            send({path: [[list(ad) for ad in call()] for call in fns] for path, fns in calls.items()})
        else:
            send({})
            break


def _ads_catalog(n: int, n_sessions: int = ADS_TARGETS) -> tuple[list[dict], dict[str, list[dict]]]:
    """`n` synthetic items (title, category, price; a bid on every one), deterministic, as field
    dicts both code versions' `Item` take; and sessions of 5 views each, oldest first."""
    rng = np.random.default_rng(0)
    departments = {
        "Tools > Power Tools": ["drill", "impact driver", "circular saw", "jigsaw", "angle grinder", "sander"],
        "Tools > Hand Tools": ["hammer", "screwdriver set", "wrench", "pliers", "utility knife", "tape measure"],
        "Garden > Watering": ["garden hose", "sprinkler", "hose nozzle", "watering can", "drip kit", "hose reel"],
        "Garden > Outdoor Power": ["lawn mower", "leaf blower", "string trimmer", "hedge trimmer", "chainsaw", "tiller"],
        "Kitchen > Cookware": ["frying pan", "saucepan", "stock pot", "dutch oven", "wok", "griddle"],
        "Kitchen > Appliances": ["blender", "toaster", "coffee maker", "kettle", "air fryer", "mixer"],
        "Bath > Fixtures": ["shower head", "faucet", "towel bar", "toilet seat", "vanity mirror", "drain"],
        "Lighting > Indoor": ["ceiling light", "floor lamp", "desk lamp", "pendant light", "led bulb", "chandelier"],
        "Electrical > Wiring": ["extension cord", "outlet", "light switch", "wire connector", "breaker", "power strip"],
        "Paint > Supplies": ["paint roller", "paint brush", "drop cloth", "painter's tape", "paint tray", "primer"],
        "Storage > Garage": ["tool chest", "shelving unit", "wall hook", "storage bin", "workbench", "pegboard"],
        "Flooring > Tile": ["ceramic tile", "tile spacer", "grout", "tile cutter", "trowel", "floor tile"],
    }
    brands = ["Acme", "Northline", "Ridgeway", "Bolt & Co", "Harbor", "Summit", "Keystone", "Everpro", "Maple",
              "Ironclad", "Brightway", "Stonehill", "Vantage", "Crestline", "Pinecrest", "Redwood"]
    adjectives = ["heavy duty", "compact", "cordless", "professional", "lightweight", "adjustable", "premium",
                  "stainless", "ergonomic", "classic", "industrial", "quick release"]
    sizes = ["small", "medium", "large", "12 in.", "18 in.", "24 in.", "2-pack", "5-piece", "20V", "1/2 in."]
    names = list(departments)
    items = []
    for i in range(n):
        department = names[int(rng.integers(len(names)))]
        noun = departments[department][int(rng.integers(6))]
        title = (f"{brands[int(rng.integers(len(brands)))]} {adjectives[int(rng.integers(len(adjectives)))]} "
                 f"{noun} {sizes[int(rng.integers(len(sizes)))]}")
        items.append({"item_id": f"i{i:06d}", "title": title, "category": f"{department} > {noun.title()}",
                      "price": round(float(rng.uniform(3, 400)), 2),
                      "sponsored_bid": round(float(rng.uniform(0.05, 3.0)), 2)})
    sessions = {f"s{j:03d}": [{"timestamp": 1_700_000_000 + 60 * j + t, "event_type": "view", "session_id": f"s{j:03d}",
                               "item_id": f"i{int(rng.integers(n)):06d}"} for t in range(5)]
                for j in range(n_sessions)}
    return items, sessions


# --- storefront ---------------------------------------------------------------------------

# The storefront catalog: Home Depot titles with the fields a sidebar counts. The Home Depot
# files have a title and nothing else, so these are derived, seeded: brand = the title's
# first word (the titles lead with the brand: BEHR, KOHLER, DEWALT; "Home" for Home
# Decorators Collection, "Hampton" for Hampton Bay), category = one of the two-level paths
# below (department by Zipf weight, then a sub-category uniformly), price = log-normal
# around $35 (sigma 1.1, cents), as a home-improvement shop's wide price range.
STOREFRONT_CATEGORIES = {
    "Tools": ["Power Tools", "Hand Tools", "Tool Storage", "Measuring"], "Paint": ["Interior", "Exterior", "Supplies"],
    "Bath": ["Faucets", "Toilets", "Vanities", "Showers"], "Lighting": ["Ceiling", "Lamps", "Bulbs", "Outdoor"],
    "Hardware": ["Fasteners", "Door Hardware", "Brackets"], "Flooring": ["Tile", "Vinyl", "Rugs", "Wood"],
    "Garden": ["Watering", "Outdoor Power", "Planters"], "Kitchen": ["Sinks", "Faucets", "Cabinets"],
    "Electrical": ["Wiring", "Outlets", "Breakers"], "Plumbing": ["Pipe", "Valves", "Water Heaters"],
    "Building Materials": ["Lumber", "Moulding", "Drywall"], "Heating & Cooling": ["Fans", "Heaters", "Air Filters"],
}
STOREFRONT_FACETS = "brand,category,price"
STOREFRONT_TARGETS_MS = {"search": 50.0, "suggest": 10.0}  # p99 at 8 clients, 2 workers; errors: 0


def storefront_fields(titles: Sequence[str], rng: np.random.Generator) -> tuple[list[str], list[str], np.ndarray]:
    """(brands, categories, prices float64[n]) for `titles`, as described above STOREFRONT_CATEGORIES."""
    departments = list(STOREFRONT_CATEGORIES)
    weights = 1.0 / np.arange(1, len(departments) + 1)  # Zipf: a few departments hold most items
    picked = rng.choice(len(departments), len(titles), p=weights / weights.sum())  # (n,)
    subs = rng.random(len(titles))  # (n,) in [0, 1): the sub-category within the department
    categories = []
    for d, s in zip(picked.tolist(), subs.tolist()):
        names = STOREFRONT_CATEGORIES[departments[d]]
        categories.append(f"{departments[d]} > {names[int(s * len(names))]}")
    prices = np.round(np.clip(rng.lognormal(np.log(35.0), 1.1, len(titles)), 1.0, 5000.0), 2)  # (n,) dollars
    return [t.split()[0] if t.split() else "" for t in titles], categories, prices


def _storefront_catalog(converted: Path, work: Path) -> Path:
    """var/hd/items.csv with brand, category and price added (`storefront_fields`, seed 0)."""
    import polars as pl

    out = work / "items.csv"
    items = pl.read_csv(converted / "items.csv", schema_overrides={"item_id": pl.Utf8})
    brands, categories, prices = storefront_fields(items["title"].to_list(), np.random.default_rng(0))
    items.with_columns(pl.Series("brand", brands), pl.Series("category", categories),
                       pl.Series("price", prices)).write_csv(out)
    return out


def bench_storefront(settings: Settings, clients: int, workers: int, seconds: float, repeats: int,
                     n_queries: int, n_profile: int, backends: Sequence[str] = ("torch",)) -> dict:
    """/v1/search with facets brand,category,price and sort=price_asc, the same without both,
    /v1/suggest on prefixes of 1-8 characters, and the faceted search again over every judged
    query, against `shoplm serve --workers N` on the Home Depot catalog (fields from
    `storefront_fields`), for each encoder backend in turn (a service each): each load from
    wrk at `clients` connections, the four alternating for `repeats` runs (medians quoted),
    then one more faceted run sampled by py-spy when it is installed; then the request paths
    in this process: where a request's time goes."""
    import polars as pl

    from shoplm.search.pipeline import QUERY_MEMO
    from tests.service import run_cli

    converted = _converted_homedepot(settings)
    work = ROOT / "var" / "bench-storefront"
    work.mkdir(parents=True, exist_ok=True)
    items_csv = _storefront_catalog(converted, work)
    for old in work.glob("shop.db*"):  # a store of the code measured: its tables as this code makes them
        old.unlink()
    store = f"sqlite:///{work / 'shop.db'}"
    run_cli("ingest", "--items", str(items_csv), "--store", store)
    judged = pl.read_csv(converted / "judgments.csv")["query"].unique(maintain_order=True).to_list()
    queries = judged[:n_queries]
    paths = _storefront_paths(queries, judged)
    out = {"items": len(pl.read_csv(items_csv, columns=["item_id"])), "queries": len(queries),
           "judged_queries": len(judged), "query_memo": QUERY_MEMO, "prefixes": len(paths["suggest"]),
           "clients": clients, "workers": workers, "seconds_per_cell": seconds, "repeats": repeats,
           "code": _code_state(), "backends": {}}
    for backend in backends:
        print(f"  storefront: encoder backend {backend} ...", flush=True)
        overrides = _storefront_overrides(settings, store, work, backend)
        load = _storefront_load(store, work, overrides, paths, clients, workers, seconds, repeats)
        print("  storefront: profiling the request paths in-process ...", flush=True)
        try:  # the load figures are kept whatever happens here
            profile = _storefront_profile(settings.model_copy(update=overrides), queries[:n_profile])
        except Exception as error:  # noqa: BLE001 - reported in RESULTS.md instead
            profile = {"error": f"{type(error).__name__}: {error}"}
        out["backends"][backend] = {**load, **_storefront_verdict(load["rows"]), "profile": profile}
    return out


def _storefront_verdict(rows: dict) -> dict:
    """What facets and sort cost over plain search (p50 and p99 ratios, on both query sets),
    and the targets."""
    search, suggest = rows["search, facets + sort"], rows["suggest"]
    ratios = {}
    for queries in ("", ", every judged query"):
        faceted, plain = rows["search, facets + sort" + queries], rows["search, plain" + queries]
        ratios[queries.removeprefix(", ") or "500 queries"] = {
            q: round(faceted[f"{q}_ms"] / plain[f"{q}_ms"], 2) if plain[f"{q}_ms"] else None for q in ("p50", "p99")}
    return {"facets_over_plain": ratios,
            "targets": {f"{name} p99 <= {limit:g} ms, 0 errors": row["p99_ms"] <= limit and not row["errors"]
                        for name, limit, row in (("search", STOREFRONT_TARGETS_MS["search"], search),
                                                 ("suggest", STOREFRONT_TARGETS_MS["suggest"], suggest))}}


def _storefront_paths(queries: list[str], judged: list[str]) -> dict[str, list[str]]:
    """The request paths of each cell (in STOREFRONT_ORDER's order of runs)."""
    import urllib.parse

    return {"search, facets + sort": [_search_url(q, facets=True) for q in queries],
            "search, plain": [_search_url(q, facets=False) for q in queries],
            "suggest": ["/v1/suggest?" + urllib.parse.urlencode({"q": p, "k": 5}) for p in _prefixes(queries)],
            "search, facets + sort, every judged query": [_search_url(q, facets=True) for q in judged],
            "search, plain, every judged query": [_search_url(q, facets=False) for q in judged]}


# The cells of one round, in order. Each worker remembers its last QUERY_MEMO query vectors
# (shoplm/search/pipeline.py), so a cell over the 500 queries runs faster the more of them
# the cell before left in the memo: each of the two follows a cell over every judged query
# (which leaves almost none of them there), so both start alike.
STOREFRONT_ORDER = ("search, facets + sort, every judged query", "search, facets + sort",
                    "search, plain, every judged query", "search, plain", "suggest")


def _prefixes(queries: list[str]) -> list[str]:
    """Distinct prefixes of 1-8 characters, as a shopper types them."""
    return list(dict.fromkeys(q[:n] for q in queries for n in range(1, 9) if q[:n].strip()))


def _storefront_load(store: str, work: Path, overrides: dict, paths: dict[str, list[str]], clients: int,
                     workers: int, seconds: float, repeats: int) -> dict:
    """Startup time, first answers, the wrk rows of each path, and py-spy's sample of one
    worker during one more faceted search run and one more suggest run (not in the rows)."""
    import shutil

    from tests.service import ServiceProcess

    if shutil.which("wrk") is None:
        raise SystemExit("the storefront benchmark needs the load generator wrk: apt-get install wrk (Debian/Ubuntu) "
                         "or brew install wrk; or leave it out of --only")
    files = {}
    for name, lines in paths.items():
        files[name] = work / (name.replace(", ", "-").replace(" + ", "-").replace(" ", "-") + ".paths")
        files[name].write_text("\n".join(lines) + "\n")
    service = ServiceProcess(store, work, env=_service_env(workers, overrides))
    service.log.unlink(missing_ok=True)  # it appends: this service's log only
    started = time.perf_counter()
    service.start(timeout=900)
    try:
        _wait_for_workers(service.url, workers)
        startup_s = time.perf_counter() - started
        first = _first_answers(service.url, {name: lines[0] for name, lines in paths.items()})
        for name in paths:  # warm-up, not counted: the first requests of each worker
            _wrk(service.url, files[name], clients, 3)
        runs = {name: [] for name in paths}
        for _ in range(repeats):
            for name in STOREFRONT_ORDER:
                runs[name].append(_wrk(service.url, files[name], clients, seconds))
        sampled = {name: _pyspy_run(service.url, files[name], clients, seconds, work)
                   for name in ("search, facets + sort, every judged query", "suggest")}
    finally:
        service.stop()
    return {"startup_s": round(startup_s, 1), "first_answers": first,
            "service_log_tracebacks": service.log.read_text(errors="replace").count("Traceback"),
            "rows": {name: _wrk_row(r) for name, r in runs.items()}, "pyspy": sampled}


def _service_env(workers: int, overrides: dict) -> dict[str, str]:
    """`shoplm serve`'s environment for a load test: a read key wrk sends, no rate limit, `overrides` as settings."""
    return {"SHOPLM_READ_KEY": "bench", "SHOPLM_RATE_LIMIT_PER_SECOND": "0", "SHOPLM_LOG_LEVEL": "warning",
            "SHOPLM_SERVE_WORKERS": str(workers), **{f"SHOPLM_{k.upper()}": str(v) for k, v in overrides.items()}}


def _code_state() -> dict:
    """The commit the service runs, and whether shoplm/ differs from it (a digest of the diff)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=CODE, capture_output=True, text=True).stdout

    diff = git("diff", "HEAD", "--", "shoplm")
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "shoplm_uncommitted": bool(diff),
            "diff_digest": hashlib.blake2b(diff.encode(), digest_size=6).hexdigest() if diff else None}


def _pyspy_run(url: str, paths: Path, clients: int, seconds: float, work: Path) -> dict | None:
    """py-spy's samples (100 a second) of one worker during a wrk run of `paths`, by stage
    (`_pyspy_shares`); None without py-spy (pip install py-spy)."""
    import shutil

    import httpx

    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        return None
    pid = httpx.get(url + "/healthz", timeout=30).json()["worker"]
    raw = work / f"py-spy-{paths.stem}.txt"
    record = subprocess.Popen([spy, "record", "-p", str(pid), "-d", f"{seconds:g}", "-r", "100", "-f", "raw",
                               "-o", str(raw), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    load = _wrk(url, paths, clients, seconds)
    _, errors = record.communicate(timeout=seconds + 60)
    if record.returncode != 0 or not raw.is_file():
        return {"error": errors.strip()[-300:]}
    return {"worker": pid, "requests": load["requests"], "p99_ms": load["p99_ms"], **_pyspy_shares(raw.read_text())}


def _pyspy_shares(raw: str) -> dict:
    """{samples, share: {stage: fraction}, top_functions: {function: fraction of the samples
    with it innermost}} of py-spy's raw (collapsed) stacks: a stack is the
    stage of its innermost frame in STAGES; else "other shoplm code" when a shoplm frame is on
    it (beyond the worker's dispatch loop and middleware), else "HTTP, ASGI and event loop"
    (uvicorn, Starlette, FastAPI, asyncio), else other."""
    import re

    frame = re.compile(r"^(?P<function>.*) \((?P<file>.*):\d+\)$")
    by_name: dict[str, list[tuple[str, str]]] = {}
    for stage, file, qualname in STAGES:
        by_name.setdefault(qualname.split(".")[-1], []).append((file, stage))

    def stage_of(function: str, path: str) -> str | None:  # py-spy names a function, or a method with its class
        return next((stage for file, stage in by_name.get(function.rpartition(".")[2], ()) if path.endswith(file)), None)

    counts: dict[str, int] = {}
    leaves: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [m.groups() for m in map(frame.match, stack.split(";")) if m]  # (function, file), root first
        stage = next(filter(None, (stage_of(function, path) for function, path in reversed(frames))), None)
        if stage is None:
            ours = [path for _, path in frames if "shoplm/" in path]
            if ours and not re.search(r"shoplm/api/(dispatch|middleware)\.py$", ours[-1]):
                stage = "other shoplm code"
            elif re.search(r"uvicorn|starlette|fastapi|asyncio|anyio|httptools|h11", " ".join(p for _, p in frames)):
                stage = "HTTP, ASGI and event loop"
            else:
                stage = "other"
        counts[stage] = counts.get(stage, 0) + int(n)
        if frames:
            leaf = f"{frames[-1][0]} ({Path(frames[-1][1]).name})"
            leaves[leaf] = leaves.get(leaf, 0) + int(n)
    total = sum(counts.values()) or 1
    return {"samples": sum(counts.values()),
            "share": {stage: round(n / total, 3) for stage, n in sorted(counts.items(), key=lambda x: -x[1])},
            "top_functions": {f: round(n / total, 3) for f, n in sorted(leaves.items(), key=lambda x: -x[1])[:8]}}


def _search_url(query: str, facets: bool) -> str:
    import urllib.parse

    params = {"q": query, **({"facets": STOREFRONT_FACETS, "sort": "price_asc"} if facets else {})}
    return "/v1/search?" + urllib.parse.urlencode(params)


def _storefront_overrides(settings: Settings, store: str, work: Path, backend: str) -> dict:
    """The settings the storefront service and the in-process profile share. The encoder reads
    the title alone: what the shared embedding cache holds for Home Depot (torch, bf16 where
    the CPU has it), so no item is encoded again; the derived brand and category would change
    every item's text. Another backend encodes the catalog once, into the same cache."""
    def rooted(path: Path) -> Path:
        return path if path.is_absolute() else ROOT / path

    return {"store_url": store, "search_index_dir": work / f"index-{backend}", "item_text_template": "{title}",
            "embedding_cache_dir": rooted(settings.embedding_cache_dir), "encoder_backend": backend,
            "onnx_cache_dir": rooted(settings.onnx_cache_dir)}


def _wait_for_workers(url: str, workers: int, timeout: float = 900) -> None:
    """Until `workers` connections held open at once are answered by as many processes (the
    dispatcher hands a connection to a ready worker only): every worker has its engine."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        clients = [httpx.Client(base_url=url, timeout=30) for _ in range(workers)]
        try:
            if len({c.get("/healthz").json()["worker"] for c in clients}) == workers:
                return
        finally:
            for c in clients:
                c.close()
        time.sleep(2)
    raise SystemExit(f"shoplm serve did not have {workers} ready workers after {timeout:.0f} s")


def _first_answers(url: str, paths: dict[str, str]) -> dict:
    """Each route's first request after startup: milliseconds, status, and for a search page
    how many values each facet has (so a table of timings also shows the facets were there)."""
    import httpx

    out = {}
    with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": "bench"}) as http:
        for name, path in paths.items():
            started = time.perf_counter()
            response = http.get(path)
            out[name] = {"path": path, "ms": round((time.perf_counter() - started) * 1e3, 1), "status": response.status_code}
            body = response.json()
            if "facets" in body:
                out[name] |= {"total": body["total"], "facet_values": {f: len(v) for f, v in body["facets"].items()}}
            if "suggestions" in body:
                out[name] |= {"suggestions": len(body["suggestions"]), "items": len(body["items"])}
    return out


def _wrk(url: str, paths: Path, clients: int, seconds: float) -> dict:
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(OUT / "wrk.lua"),
                          url, "--", str(paths), str(clients)],
                         capture_output=True, text=True, check=True, env={**os.environ, "BENCH_KEY": "bench"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _wrk_row(runs: list[dict]) -> dict:
    """Medians over wrk runs; requests and errors summed."""
    return {"requests": sum(r["requests"] for r in runs), "errors": sum(r["errors"] + r["non_2xx"] for r in runs),
            "requests_per_s": round(statistics.median(r["requests"] / r["seconds"] for r in runs), 1),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs), "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "p99_runs_ms": [r["p99_ms"] for r in runs]}


# Where a search or suggest request's time goes: (stage, file, function) for `_StageClock` in
# this process and for py-spy's samples of a worker. A function missing from the code is skipped.
STAGES = (
    ("encoder forward pass", "shoplm/lm/encoder.py", "Encoder.encode_query"),
    ("encoder forward pass", "shoplm/lm/encoder.py", "Encoder.encode_tokens"),
    ("FAISS HNSW", "shoplm/search/index.py", "FaissIndex.search"),
    ("FAISS HNSW", "shoplm/search/index.py", "FaissIndex.search_rows"),
    ("BM25 tokenize (bm25s)", "shoplm/search/lexical.py", "LexicalIndex.tokenize"),
    ("BM25 scoring", "shoplm/search/lexical.py", "LexicalIndex.token_scores"),
    ("BM25 scoring", "shoplm/search/lexical.py", "LexicalIndex.top"),
    ("spelling correction", "shoplm/search/lexical.py", "LexicalIndex.corrected"),
    ("spelling correction", "shoplm/search/spelling.py", "Speller.correct"),
    ("fusion", "shoplm/search/fusion.py", "fuse"),
    ("re-ranker", "shoplm/search/rerank.py", "candidate_features"),
    ("facets", "shoplm/search/facets.py", "FacetColumns.facets"),
    ("filters", "shoplm/search/facets.py", "FacetColumns.mask"),
    ("sort", "shoplm/engine/listing.py", "_sorted"),
    ("variant groups", "shoplm/engine/listing.py", "_grouped"),
    ("suggestion lookup", "shoplm/search/suggest.py", "Suggester.suggest"),
    ("Engine.suggest itself (its item lookup)", "shoplm/engine/engine.py", "Engine.suggest"),
    ("result set (SearchPipeline.matches itself)", "shoplm/search/pipeline.py", "SearchPipeline.matches"),
    ("page assembly (listing.search_page itself)", "shoplm/engine/listing.py", "search_page"),
    ("impression log", "shoplm/engine/engine.py", "Engine.shown"),
    ("impression log", "shoplm/engine/attribution.py", "ImpressionLog._run"),
    ("response model", "shoplm/api/routes.py", "_search_page"),
    ("response model", "shoplm/api/routes.py", "_hit_list"),
    ("highlight", "shoplm/search/highlight.py", "highlight"),
    ("JSON", "pydantic/main.py", "BaseModel.model_dump_json"),
)


class _StageClock:
    """Exclusive wall time per stage of STAGES: their functions are wrapped, and time spent in
    a wrapped function called from another (in the same thread) is its own stage's, not its
    caller's. A module function is wrapped wherever a shoplm module imported it by name.
    `restore` unwraps."""

    def __init__(self):
        import importlib

        self.seconds: dict[str, float] = {}
        self._local = threading.local()  # .stack: [stage, started, seconds in wrapped callees] per thread
        self._patched: list[tuple[object, str, object]] = []
        for stage, file, qualname in STAGES:
            module = importlib.import_module(file.removesuffix(".py").replace("/", "."))
            *owner_path, name = qualname.split(".")
            owner = getattr(module, owner_path[0], None) if owner_path else module
            original = getattr(owner, name, None)
            if original is None:
                continue
            holders = [owner] if owner_path else [m for key, m in list(sys.modules.items())
                                                   if key.startswith("shoplm") and getattr(m, name, None) is original]
            for holder in holders:
                self._wrap(holder, name, original, stage)

    def _wrap(self, holder: object, name: str, original, stage: str) -> None:
        self._patched.append((holder, name, original))
        self.seconds.setdefault(stage, 0.0)

        def timed(*args, **kwargs):
            stack = self._local.__dict__.setdefault("stack", [])
            stack.append([stage, time.perf_counter(), 0.0])
            try:
                return original(*args, **kwargs)
            finally:
                _, started, inner = stack.pop()
                elapsed = time.perf_counter() - started
                self.seconds[stage] += elapsed - inner
                if stack:
                    stack[-1][2] += elapsed

        setattr(holder, name, timed)

    def restore(self) -> None:
        for holder, name, original in reversed(self._patched):
            setattr(holder, name, original)
        self._patched.clear()


def _storefront_profile(settings: Settings, queries: list[str]) -> dict:
    """The faceted search, plain search and suggest requests of `queries` (and their
    prefixes) one at a time through the service's app in this process (`create_app` over an
    engine opened here, driven over ASGI without sockets), BLAS and torch at serve_threads as
    a worker runs them: per request p50/p99 ms and each stage's share (`_StageClock`). The
    query-vector memo is cleared before each request, so every search runs the encoder."""
    import asyncio
    import gc

    import httpx
    import torch
    from threadpoolctl import threadpool_limits

    from shoplm.api.app import create_app
    from shoplm.engine.engine import Engine
    from shoplm.store import open_store

    settings = settings.model_copy(update={"torch_threads": settings.serve_threads, "read_key": None,
                                           "rate_limit_per_second": 0})
    torch.set_num_threads(settings.serve_threads)
    limits = threadpool_limits(settings.serve_threads)  # noqa: F841 (kept while measuring)
    engine = Engine.open(settings, open_store(settings.store_url))
    engine.warm()
    app = create_app(settings, engine)
    gc.collect()
    gc.freeze()
    paths = _storefront_paths(queries, queries)
    paths = {name: paths[name] for name in ("search, facets + sort", "search, plain", "suggest")}

    async def measure() -> dict:
        out = {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            for urls in paths.values():  # warm-up
                for url in urls[:10]:
                    (await client.get(url)).raise_for_status()
            for name, urls in paths.items():
                clock, seconds = _StageClock(), []
                try:
                    for url in urls:
                        engine.search_pipeline._query_memo.clear()
                        started = time.perf_counter()
                        (await client.get(url)).raise_for_status()
                        seconds.append(time.perf_counter() - started)
                finally:
                    clock.restore()
                out[name] = _stage_shares(clock.seconds, seconds)
        return out

    try:
        rows = asyncio.run(measure())
    finally:
        gc.unfreeze()
    return {"threads": settings.serve_threads, "queries": len(queries),
            "encoder": engine.search_pipeline.encoder.fingerprint, **rows}


def _stage_shares(stage_seconds: dict[str, float], seconds: list[float]) -> dict:
    """p50/p99 of the requests, and each stage's share of their time and ms per request."""
    total = sum(seconds)
    share = {stage: round(x / total, 3) for stage, x in sorted(stage_seconds.items(), key=lambda x: -x[1]) if x}
    share[STAGE_REST] = round(1 - sum(stage_seconds.values()) / total, 3)
    return {"requests": len(seconds), **percentiles(seconds), "share": share,
            "ms_per_request": {stage: round(x / len(seconds) * 1e3, 2) for stage, x in stage_seconds.items() if x}}


STAGE_REST = "the rest (ASGI, FastAPI routing and validation, glue)"


# --- facets at 1M -------------------------------------------------------------------------

# The variant suffixes of the synthetic catalog: "<real title> (<variant>)".
FACET_VARIANTS = ("White", "Black", "Brushed Nickel", "Oil-Rubbed Bronze", "Chrome", "Matte Black", "2-Pack", "4-Pack",
                  "10-Pack", "12 in.", "24 in.", "36 in.", "1/2 in.", "3/4 in.", "1 gal.", "5 gal.")


def bench_facets_1m(settings: Settings, n_items: int, calls: int, broad: float = 0.30, narrow: float = 0.01) -> dict:
    """Facet counts over `n_items` synthetic items, in-process (no HTTP, no encoder): each item
    a real Home Depot title (drawn with replacement) plus a variant suffix, its brand the real
    title's first word and category and price from `storefront_fields` (seed 0). The columns
    are built as the engine builds them (`FacetColumns.extended` over Item records); then
    brand+category+price facets over a broad (30% of the rows) and a narrow (1%) result set,
    each a random mask, with no filter and with the most common brand selected (disjunctive:
    the brand facet ignores its own filter); `calls` calls per cell, cycling 5 masks."""
    import gc
    import polars as pl

    from shoplm.data.records import Item
    from shoplm.search.facets import FacetColumns, Schema, parse_filters

    rng = np.random.default_rng(0)
    real = pl.read_csv(_converted_homedepot(settings) / "items.csv")["title"].to_list()
    picks = rng.integers(len(real), size=n_items)  # (n,) which real title
    variants = rng.integers(len(FACET_VARIANTS), size=n_items)  # (n,)
    titles = [f"{real[p]} ({FACET_VARIANTS[v]})" for p, v in zip(picks.tolist(), variants.tolist())]
    brands, categories, prices = storefront_fields(titles, rng)
    gc.collect()
    rss_before = _rss_mib()
    items = {f"s{i:07d}": Item(f"s{i:07d}", t, category=c, brand=b or None, price=float(p))
             for i, (t, b, c, p) in enumerate(zip(titles, brands, categories, prices.tolist()))}
    del titles
    rss_items = _rss_mib()
    schema = Schema.from_settings(settings)
    started = time.perf_counter()
    columns = FacetColumns(schema).extended(list(items), items)
    build_s = time.perf_counter() - started
    gc.collect()
    rss_columns = _rss_mib()
    brand = columns.fields["brand"]
    top_brand = brand.values[int(np.argmax(np.bincount(brand.codes, minlength=len(brand.values))))]
    filters = {"no filter": [], f"brand:{top_brand}": parse_filters([f"brand:{top_brand}"], schema)}
    names = STOREFRONT_FACETS.split(",")
    rows = {}
    for label, share in (("broad", broad), ("narrow", narrow)):
        bases = [rng.random(n_items) < share for _ in range(5)]  # bool[rows] each
        for filter_name, clauses in filters.items():
            rows[f"{label} ({share:.0%}), {filter_name}"] = _facet_cell(columns, bases, clauses, names, calls,
                                                                          settings.search_facet_values, rng)
    del items
    return {"items": n_items, "distinct_titles": len(set(picks.tolist())), "variants": len(FACET_VARIANTS),
            "brands": len(columns.fields["brand"].values), "categories": len(columns.levels[1].values),
            "top_brand": top_brand, "top": settings.search_facet_values, "build_s": round(build_s, 1), "calls": calls,
            "memory_mib": {"items (Item records)": round(rss_items - rss_before), "columns (process RSS growth)":
                           round(rss_columns - rss_items), "columns (their arrays)": round(_column_bytes(columns) / 2**20, 1)},
            "rows": rows}


def _facet_cell(columns, bases: list[np.ndarray], clauses: list, names: list[str], calls: int, top: int,
                rng: np.random.Generator) -> dict:
    """p50/p99 of `facets`, of the listing's filter mask and of sort=price_asc (`listing._sorted`)
    over the set, the bases taking turns; the p50 of each facet counted alone (a quarter as
    many calls); and the mean result set and facet sizes."""
    import types

    from shoplm.engine.listing import _sorted

    view = types.SimpleNamespace(facet_columns=lambda: columns, popularity=None)  # what `_sorted` reads
    orders = [rng.permutation(np.flatnonzero(b & columns.mask(clauses))) for b in bases]  # stand-in relevance orders
    facet_s, mask_s, sort_s = [], [], []
    for i in range(calls):
        base = bases[i % len(bases)]
        started = time.perf_counter()
        counts = columns.facets(names, base, clauses, top)
        facet_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        columns.mask(clauses)
        mask_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        _sorted(view, "price_asc", orders[i % len(orders)])
        sort_s.append(time.perf_counter() - started)
    alone = {name: [] for name in names}  # each facet counted on its own: where the facets' time goes
    for i in range(max(1, calls // 4)):
        for name in names:
            started = time.perf_counter()
            columns.facets([name], bases[i % len(bases)], clauses, top)
            alone[name].append(time.perf_counter() - started)
    return {"result_set": round(float(np.mean([b.sum() for b in bases]))),
            "after_filter": round(float(np.mean([len(o) for o in orders]))), "facets": percentiles(facet_s),
            "each_facet_p50_ms": {name: round(float(np.median(x)) * 1e3, 2) for name, x in alone.items()},
            "filter_mask": percentiles(mask_s), "sort_price_asc": percentiles(sort_s),
            "values_returned": {name: len(v) for name, v in counts.items()}}


def _column_bytes(columns) -> int:
    arrays = [*columns.numbers.values(), *(a for f in (*columns.fields.values(), *columns.levels) for a in (f.rows, f.codes))]
    return sum(a.nbytes for a in arrays)


def _rss_mib() -> float:
    """Resident memory of this process (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- impressions --------------------------------------------------------------------------

# "Off": the smallest share the setting allows is above 0, so off is a share that logs next to
# none: a list is logged when the random part of its id (32 bits) is below rate * 2**32, i.e.
# for rate 1e-9 when it is one of 0..4, about one list in 860 million.
IMPRESSIONS_OFF_RATE = 1e-9
IMPRESSIONS_CELLS = {"logging on (sample rate 1.0)": 1.0, f"logging off (sample rate {IMPRESSIONS_OFF_RATE:g})":
                     IMPRESSIONS_OFF_RATE}


def bench_impressions(settings: Settings, clients: int, workers: int, seconds: float, repeats: int,
                      n_queries: int) -> dict:
    """/v1/search?q=Q (plain, the first `n_queries` judged queries, onnx-int8 encoder) against two
    `shoplm serve --workers N` on the storefront catalog side by side, one per cell of
    IMPRESSIONS_CELLS, each with a fresh copy of the same store; wrk at `clients` connections,
    the cells alternating (ABBA) for `repeats` rounds after a 3 s warm-up each. After both stop
    (a worker flushes its impressions on shutdown), the rows of each store's impressions table
    against the 200 answers wrk counted for that service (warm-up included)."""
    import shutil
    import sqlite3

    import polars as pl

    from tests.service import ServiceProcess, run_cli

    if shutil.which("wrk") is None:
        raise SystemExit("the impressions benchmark needs the load generator wrk: apt-get install wrk (Debian/Ubuntu) "
                         "or brew install wrk; or leave it out of --only")
    converted = _converted_homedepot(settings)
    work = ROOT / "var" / "bench-impressions"
    work.mkdir(parents=True, exist_ok=True)
    items_csv = _storefront_catalog(converted, work)
    for old in work.glob("shop*.db*"):
        old.unlink()
    run_cli("ingest", "--items", str(items_csv), "--store", f"sqlite:///{work / 'shop.db'}")
    judged = pl.read_csv(converted / "judgments.csv")["query"].unique(maintain_order=True).to_list()
    paths = work / "search-plain.paths"
    paths.write_text("\n".join(_search_url(q, facets=False) for q in judged[:n_queries]) + "\n")
    services, dbs = {}, {}
    for i, (cell, rate) in enumerate(IMPRESSIONS_CELLS.items()):
        dbs[cell] = work / f"shop-{i}.db"
        with sqlite3.connect(work / "shop.db") as src, sqlite3.connect(dbs[cell]) as dst:
            src.backup(dst)  # the same catalog, an empty impressions table
        # the storefront section's onnx-int8 index is reused: same catalog, same encoder
        overrides = {**_storefront_overrides(settings, f"sqlite:///{dbs[cell]}", ROOT / "var" / "bench-storefront",
                                             "onnx-int8"), "impression_sample_rate": rate}
        (work / str(i)).mkdir(exist_ok=True)
        services[cell] = ServiceProcess(overrides["store_url"], work / str(i), env=_service_env(workers, overrides))
        services[cell].log.unlink(missing_ok=True)
    runs = {cell: [] for cell in services}
    warmups = {}
    try:
        for cell, service in services.items():  # one after the other: a missing index is built once
            service.start(timeout=900)
            _wait_for_workers(service.url, workers)
        for cell, service in services.items():
            warmups[cell] = _wrk(service.url, paths, clients, 3)
        cells = list(services)
        for r in range(repeats):
            for cell in cells if r % 2 == 0 else cells[::-1]:
                runs[cell].append(_wrk(services[cell].url, paths, clients, seconds))
    finally:
        for service in services.values():
            service.stop()
    out = {"items": len(pl.read_csv(items_csv, columns=["item_id"])), "queries": min(n_queries, len(judged)),
           "clients": clients, "workers": workers, "seconds_per_cell": seconds, "repeats": repeats,
           "flush_s": settings.impression_flush_s, "code": _code_state(), "rows": {}}
    for cell, service in services.items():
        with sqlite3.connect(dbs[cell]) as db:
            stored = db.execute("SELECT count(*) FROM impressions").fetchone()[0]
        every = [warmups[cell], *runs[cell]]
        answered = sum(x["requests"] - x["non_2xx"] for x in every)  # 200 answers
        measured = sum(x["requests"] - x["non_2xx"] for x in runs[cell])
        out["rows"][cell] = {**_wrk_row(runs[cell]), "answered_200": answered, "impressions_stored": stored,
                             "stored_minus_answered": stored - answered, "wrk_runs": len(every),
                             "impressions_per_s": round(measured / sum(x["seconds"] for x in runs[cell]), 1)
                             if IMPRESSIONS_CELLS[cell] >= 1.0 else None,
                             "service_log_tracebacks": service.log.read_text(errors="replace").count("Traceback")}
    on, off = (out["rows"][cell] for cell in IMPRESSIONS_CELLS)
    out["on_over_off"] = {q: round(on[f"{q}_ms"] / off[f"{q}_ms"], 2) if off[f"{q}_ms"] else None
                          for q in ("p50", "p99")}
    return out


def _impressions_lines(d: dict) -> list[str]:
    cells = list(d["rows"].values())
    on = cells[0]
    lines = ["## Impression logging", "",
             f"`/v1/search?q=Q` (plain, the first {d['queries']} distinct judged queries, encoder onnx-int8) against two "
             f"`shoplm serve --workers {d['workers']}` on the storefront catalog ({d['items']:,} items), running side by "
             "side, each on its own fresh copy of the same SQLite store: one with `SHOPLM_IMPRESSION_SAMPLE_RATE=1` "
             f"(every list logged), one with {IMPRESSIONS_OFF_RATE:g}, the smallest share the setting allows above 0, "
             "which logs a list only when the random part of its id is one of 0..4 (about one in 860 million): "
             f"{cells[1]['impressions_stored']:,} rows here. Impressions are written in batches every {d['flush_s']:g} s. Load from wrk (one thread, "
             f"{d['clients']} connections) over loopback, {d['seconds_per_cell']:.0f} s per cell, the two cells "
             f"alternating (on, off, off, on, ...) for {d['repeats']} rounds after a 3 s warm-up each: medians of the "
             "runs, requests and errors summed. " + _shared_machine(d), "",
             "| cell | requests | req/s | p50 ms | p99 ms | p99 of each run, ms | errors | 200 answers (warm-up "
             "included) | rows in impressions | rows - answers |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in d["rows"].items():
        each = ", ".join(f"{x:g}" for x in r["p99_runs_ms"])
        lines.append(f"| {name} | {r['requests']:,} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {each} | "
                     f"{r['errors']} | {r['answered_200']:,} | {r['impressions_stored']:,} | "
                     + (f"{r['stored_minus_answered']:+,} |" if r["impressions_per_s"] is not None else "- (not logged) |"))
    ratio = d["on_over_off"]
    lost = on["stored_minus_answered"] < 0
    tracebacks = sum(r["service_log_tracebacks"] for r in cells)
    code = d["code"]
    lines += ["", f"Logging on over off: p50 {ratio['p50']}x, p99 {ratio['p99']}x. Impressions sustained with logging "
              f"on at {d['clients']} clients: {on['impressions_per_s']:,} a second (the 200 answers of the measured "
              f"runs over their seconds). Rows counted with sqlite3 after both services stopped (they flush on "
              f"shutdown): {'some impressions were lost' if lost else 'none lost'}. A row more than wrk's answers is a "
              f"request wrk had in flight when a run ended (up to {d['clients']} a run, {on['wrk_runs']} runs): the "
              "service answered and logged it, wrk did not count it."
              + (f" The services logged {tracebacks} tracebacks (var/bench-impressions/*/service.log)." if tracebacks
                 else "")
              + f" Code served: commit {code['commit']}"
              + (f", with uncommitted changes to shoplm/ (diff digest {code['diff_digest']})"
                 if code["shoplm_uncommitted"] else "") + ".", ""]
    return lines


# --- report -------------------------------------------------------------------------------

# --- the shop's lists on Instacart ---------------------------------------------------------

def bench_lists(settings: Settings, calls: int) -> dict:
    """The list routes on Instacart (49,688 items, 150,000 purchases) through `shoplm serve`
    (one worker, the bundled model): `calls` sequential requests per route from one client
    after 20 warm-up calls, each with its own cart, item or visitor drawn from the store.
    p50/p99 of the answer as the client sees it."""
    import httpx
    import polars as pl

    from shoplm.data.convert import convert
    from tests.service import ServiceProcess, run_cli

    work = ROOT / "var" / "bench-lists"
    data = work / "instacart"
    if not (data / "events.csv").is_file():
        convert("instacart", settings.data_dir / "instacart", data)
    for old in work.glob("shop.db*"):
        old.unlink()
    run_cli("ingest", "--items", str(data / "items.csv"), "--events", str(data / "events.csv"),
            "--store", f"sqlite:///{work / 'shop.db'}")
    events = pl.read_csv(data / "events.csv", infer_schema=False)
    rng = np.random.default_rng(0)
    baskets = events.group_by("session_id").agg(pl.col("item_id"))["item_id"].to_list()
    carts = [",".join(rng.choice(b, size=min(3, len(b)), replace=False)) for b in rng.choice(len(baskets), calls + 20)
             for b in [baskets[b]]]
    items = [c.split(",")[0] for c in carts]
    users = rng.choice(events["user_id"].unique().to_list(), calls + 20).tolist()
    catalog = pl.read_csv(data / "items.csv", infer_schema=False)["item_id"].to_list()
    supplied = [rng.choice(catalog, 100, replace=False).tolist() for _ in range(calls + 20)]
    env = {"SHOPLM_EMBEDDING_CACHE_DIR": str(settings.embedding_cache_dir.resolve()),
           **_service_env(1, {"log_level": "warning"})}
    routes = {
        "bought-together": lambda c, i: c.get(f"/v1/items/{items[i]}/bought-together", params={"k": 10}),
        "cart (3 items)": lambda c, i: c.get("/v1/recommend", params={"items": carts[i], "user_id": users[i]}),
        "trending": lambda c, i: c.get("/v1/recommend", params={"list": "trending"}),
        "best sellers, personalised": lambda c, i: c.get("/v1/recommend", params={"list": "best_sellers",
                                                                                 "user_id": users[i]}),
        "new arrivals": lambda c, i: c.get("/v1/recommend", params={"list": "new"}),
        "rank 100 ids": lambda c, i: c.post("/v1/rank", json={"user_id": users[i], "items": supplied[i]}),
    }
    out = {"items": len(catalog), "events": events.height, "calls": calls, "routes": {}}
    service = ServiceProcess(f"sqlite:///{work / 'shop.db'}", work, env=env).start(timeout=1800)  # builds the index
    try:
        with httpx.Client(base_url=service.url, headers={"X-API-Key": "bench"}, timeout=60) as client:
            for name, call in routes.items():
                seconds = []
                for i in range(calls + 20):
                    started = time.perf_counter()
                    answer = call(client, i)
                    elapsed = time.perf_counter() - started
                    answer.raise_for_status()
                    if i >= 20:
                        seconds.append(elapsed)
                out["routes"][name] = percentiles(seconds)
                print(f"  {name}: {out['routes'][name]}", flush=True)
    finally:
        service.stop()
    return out


# --- several hosts on one PostgreSQL store ------------------------------------------------

def bench_hosts(settings: Settings, pg_url: str | None, writes: int) -> dict:
    """Two `shoplm serve` processes (one worker each, the bundled model) on one fresh PostgreSQL
    database, as two machines: `writes` catalog writes through A (an item created, its price
    changed, then deleted, in turn), and for each the seconds from A's answer until B serves
    it, polled every 2 ms (shoplm/engine/follow.py). p50/p99 per kind of write."""
    import httpx

    from shoplm.store import open_store
    from tests.reliability.conftest import catalog
    from tests.service import ServiceProcess

    if not pg_url:
        return {"skipped": "no PostgreSQL (--pg-url)"}
    url = _fresh_pg_database(pg_url, "shoplm_bench_hosts")
    seed = open_store(url)
    seed.upsert_items(catalog(2_000))
    seed.close()
    work = ROOT / "var" / "bench-hosts"
    env = {"SHOPLM_EMBEDDING_CACHE_DIR": str(settings.embedding_cache_dir.resolve()), "SHOPLM_ADMIN_KEY": "bench",
           **_service_env(1, {"log_level": "warning"})}
    for name in "ab":
        (work / name).mkdir(parents=True, exist_ok=True)
    a_host = ServiceProcess(url, work / "a", env=env).start(timeout=1800)
    b_host = ServiceProcess(url, work / "b", env=env).start(timeout=1800)
    delays: dict[str, list[float]] = {"created": [], "changed": [], "deleted": []}
    admin = {"X-API-Key": "bench"}
    try:
        with httpx.Client(base_url=a_host.url, timeout=60) as a, \
                httpx.Client(base_url=b_host.url, timeout=60, headers=admin) as b:  # the read key: "bench" too
            for i in range(writes):
                kind = list(delays)[i % 3]
                item_id = f"bench-{i // 3}"
                body = {"title": f"Zanzibar copper kettle {i // 3}", "category": "Kitchen", "price": 30.0}
                if kind == "deleted":
                    a.delete(f"/v1/items/{item_id}", headers=admin).raise_for_status()
                    served = lambda: b.get(f"/v1/items/{item_id}").status_code == 404  # noqa: E731
                else:
                    price = 30.0 if kind == "created" else 12.5
                    a.put(f"/v1/items/{item_id}", json={**body, "price": price}, headers=admin).raise_for_status()
                    served = lambda: b.get(f"/v1/items/{item_id}").json().get("price") == price  # noqa: E731
                started = time.perf_counter()
                while not served():
                    if time.perf_counter() - started > 30:
                        raise RuntimeError(f"write {i} ({kind}) never reached B")
                    time.sleep(0.002)
                delays[kind].append(time.perf_counter() - started)
    finally:
        a_host.stop()
        b_host.stop()
    out = {"items": 2_000, "writes": writes, "delays": {k: percentiles(v) for k, v in delays.items()},
           "all": percentiles([x for v in delays.values() for x in v])}
    print(f"  {out['all']}", flush=True)
    return out


def write_results(results: dict) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    m = results["machine"]
    lines = ["# shoplm benchmarks", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_mib']:,} MiB; load average at start "
             f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}; Python {m['python']}, torch {m['torch']}; "
             f"{m['date']} (the latest section run; each section's own run is listed at the end). Produced by `make bench`; "
             "medians, and ratios measured in the same run.", ""]
    if "encoder" in results:
        e = results["encoder"]
        lines += ["## Encoder", "", f"{e['items']:,} Home Depot titles (catalog encoding, median of {e['repeats']} "
                  f"alternating runs), {e['queries']} single queries; {e['threads']} threads.", "",
                  "| path | items/s | x naive | query p50 ms | query p99 ms | dense NDCG@10 | hybrid NDCG@10 |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in e["systems"].items():
            quality = [f"{r[m]:.4f}" if r[m] is not None else "-" for m in ("dense_ndcg@10", "hybrid_ndcg@10")]
            lines.append(f"| {name} | {r['items_per_s']:,} | {r['x_naive']} | {r['p50_ms']} | {r['p99_ms']} | "
                         f"{quality[0]} | {quality[1]} |")
        lines += ["", f"Fast path dense NDCG@10 relative to the base model: {e['fast_dense_ndcg_vs_base']}.", ""]
    if "ann" in results:
        a = results["ann"]
        lines += ["## Approximate nearest neighbours (FAISS HNSW)", "",
                  f"M={a['m']}, efConstruction={a['ef_construction']}, efSearch swept (shoplm's default is "
                  f"{a['default_ef_search']}); {a['queries']} single queries each; exact = FAISS IndexFlatIP; "
                  "speed-up = exact p50 / HNSW p50.", "",
                  "| vectors | build s | exact p50 ms | efSearch | Recall@10 | HNSW p50 ms | HNSW p99 ms | speed-up |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in a["datasets"].items():
            for ef, x in r["ef_search"].items():
                lines.append(f"| {name} | {r['build_s']} | {r['exact']['p50_ms']} | {ef} | {x['recall@10']} | "
                             f"{x['hnsw']['p50_ms']} | {x['hnsw']['p99_ms']} | {x['speedup_p50']}x |")
        lines.append("")
    for key, title in (("service", "Service"), ("service_trained", "Service with a trained recommendation model")):
        if key not in results:
            continue
        v = results[key]
        if key == "service_trained":
            lines += [f"## {title}", "", "The same service and load with a `shoplm train recommend` model of Amazon "
                      "Scientific loaded, as the README's recommendation figures serve it (the model scores every "
                      "request; the item side of the model, the same for every visitor, is computed once per "
                      "loaded model). Next to the rows above, which serve the zero-shot text path."]
        else:
            lines += [f"## {title}"]
        lines += ["", f"`shoplm serve` on Amazon Scientific (SQLite; encoder backend "
                  f"{v['encoder_backend']}; recommendation model: {v['model'] or 'none (zero-shot text + popularity)'}); "
                  f"load from wrk (one thread, one connection per client) over loopback, "
                  f"{v['seconds_per_cell']:.0f} s per cell, each cell run {v.get('repeats', 1)} times with the cells "
                  "alternating" + (f", each run after a {v['warm_up_s']:g} s warm-up at its own load" if "warm_up_s" in v
                                   else "") + ": medians of the runs, requests and errors summed over them; "
                  "`shoplm serve --workers N`.", "",
                  "| route x clients | requests | req/s | p50 ms | p99 ms | p99 of each run, ms | errors |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in v["rows"].items():
            each = ", ".join(f"{x:g}" for x in r.get("p99_runs_ms", [r["p99_ms"]]))
            lines.append(f"| {name} | {r['requests']:,} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {each} "
                         f"| {r['errors']} |")
        lines.append("")
    if "service_search_trained" in results:
        lines += _search_models_lines(results["service_search_trained"])
    if "ingest" in results:
        lines += ["## Ingest", "", "From a file: each run into an empty store, the median run quoted.", "",
                  "| path | events | seconds | events/s | events/s of each run |", "|---|---|---|---|---|"]
        for name, r in results["ingest"]["rows"].items():
            each = ", ".join(f"{x:,}" for x in r.get("events_per_s_runs", [r["events_per_s"]]))
            lines.append(f"| {name} | {r['events']:,} | {r['seconds']} | {r['events_per_s']:,} | {each} |")
        lines.append("")
    if "ads" in results:
        d = results["ads"]
        where = d["run"]["machine"] if "machine" in d.get("run", {}) else m
        lines += ["## Ads ranking (`Engine.rank_ads`, /v1/ads/rank)", "",
                  f"{d['items']:,} synthetic items (title, category, price), every one with a sponsored_bid; memory:// "
                  f"store; k={d['k']}. `rank_ads(item_id=...)` (target: the context item's vector) and "
                  f"`rank_ads(session_id=...)` (target: the recency-weighted vectors of a session's 5 views), cycling "
                  f"through {d['targets']} items and {d['targets']} sessions after a warm-up: {d['rounds']} rounds of "
                  f"{d['calls_per_round']} calls per path and code version, the versions taking turns (each in a process "
                  f"of its own, BLAS/OpenMP at {d.get('threads', 1)} thread(s) and the engine frozen out of the garbage "
                  "collector's passes, as `shoplm serve` runs a request); p50/p99 over all calls. "
                  f"Machine of this section: {_machine_line(where)}.", "",
                  "| code | path | calls | p50 ms | p99 ms | p50 of each round, ms | ads per answer |",
                  "|---|---|---|---|---|---|---|"]
        for r in d["rows"].values():
            each = ", ".join(f"{x:g}" for x in r["p50_rounds_ms"])
            lines.append(f"| {r['code']} | {r['path']} | {r['calls']:,} | {r['p50_ms']} | {r['p99_ms']} | {each} | "
                         f"{r['ads_per_answer']} |")
        lines.append("")
        for label, info in d["children"].items():
            lines.append(f"- {label}: shoplm from `{info['shoplm']}` (engine `{info['engine']}`); engine opened in "
                         f"{info['open_s']} s, first `rank_ads` call after opening {info['first_call_ms']} ms.")
        if "p50_ratio_before_after" in d:
            ratio, match = d["p50_ratio_before_after"], d["match"]
            lines += ["", "p50 before / after: " + ", ".join(f"{path} {x}x" for path, x in ratio.items()) + ".",
                      "Same answers (item ids and order, scores within 1e-5): " + ", ".join(
                          f"{path} {'yes' if r['same'] else 'no'} ({r['answers'] - r['differing']}/{r['answers']}, "
                          f"largest score difference {r['max_score_diff']:.1e})" for path, r in match.items()) + "."]
        lines.append("")
    if "storefront" in results:
        lines += _storefront_lines(results["storefront"])
    if "facets_1m" in results:
        lines += _facets_lines(results["facets_1m"])
    if "impressions" in results:
        lines += _impressions_lines(results["impressions"])
    if "million" in results:
        from million import lines as million_lines

        lines += million_lines(results["million"])
    if "lists" in results:
        d = results["lists"]
        lines += ["## Lists, carts and re-ranking (Instacart)", "",
                  f"`shoplm serve` (one worker, bundled model, SQLite) over Instacart: {d['items']:,} items, "
                  f"{d['events']:,} purchases. One client, {d['calls']} sequential calls per route after 20 warm-up "
                  "calls, each with its own item, cart or user; the answer's time as the client sees it. The lists "
                  "and complements are built once in the background (`lists_refresh_s`), so these are their read "
                  "paths.", "", "| route | p50 ms | p99 ms |", "|---|---|---|"]
        lines += [f"| {name} | {r['p50_ms']} | {r['p99_ms']} |" for name, r in d["routes"].items()]
        lines.append("")
    if "hosts" in results and "delays" in results["hosts"]:
        d = results["hosts"]
        lines += ["## Two hosts on one PostgreSQL store", "",
                  f"Two `shoplm serve` processes (one worker each) on one PostgreSQL database of {d['items']:,} items, "
                  f"as two machines; {d['writes']} catalog writes through A (create, change the price, delete, in "
                  "turn), each timed from A's answer until B serves it (polled every 2 ms): what the change feed "
                  "(LISTEN/NOTIFY, then a re-read of the item and its indexing) costs. The one-second target of "
                  "docs/operations.md is on the p99.", "", "| write | p50 ms | p99 ms |", "|---|---|---|"]
        lines += [f"| {name} | {r['p50_ms']} | {r['p99_ms']} |" for name, r in {**d["delays"], "all": d["all"]}.items()]
        lines.append("")
    runs = [f"{name}: {r['run']['date']}, load average {', '.join(f'{x:.2f}' for x in r['run']['load_average'])}"
            + (f"; {_machine_line(r['run']['machine'])}" if "machine" in r["run"] else "")
            for name, r in results.items() if isinstance(r, dict) and "run" in r]
    if runs:
        lines += ["## When each section ran", "", *[f"- {line}" for line in runs], ""]
    (OUT / "RESULTS.md").write_text("\n".join(lines) + "\n")


def _storefront_lines(d: dict) -> list[str]:
    lines = ["## Storefront search and autocomplete", "",
             f"`shoplm serve --workers {d['workers']}` on the Home Depot catalog ({d['items']:,} items; SQLite; the "
             "encoder reads the title). The Home Depot files have titles only, so the fields counted are derived, "
             "seeded (`storefront_fields`): brand = the title's first word, category = one of "
             f"{sum(map(len, STOREFRONT_CATEGORIES.values()))} two-level paths, price log-normal around $35. Load from wrk "
             f"(one thread, {d['clients']} connections) over loopback: `/v1/search?q=Q&facets={STOREFRONT_FACETS}"
             f"&sort=price_asc`, the same without facets and sort, over the first {d['queries']} distinct judged queries, "
             f"and `/v1/suggest?q=PREFIX&k=5` over their {d['prefixes']:,} distinct prefixes of 1-8 characters; "
             f"{d['seconds_per_cell']:.0f} s per cell, each run {d['repeats']} times with the cells alternating after a "
             "3 s warm-up each: medians of the runs, requests and errors summed. Each encoder backend is a service of "
             f"its own, one after the other. Each worker remembers its last {d['query_memo']} query vectors: the paths "
             f"over all {d['judged_queries']:,} judged queries run the encoder for almost every search; a cell over the "
             f"{d['queries']} queries starts after one of those (so with none of its queries remembered) and skips the "
             f"encoder more often as it goes, at most {min(1.0, d['query_memo'] / d['queries']):.0%} of the time. "
             + _shared_machine(d), "",
             "| encoder | path | requests | req/s | p50 ms | p99 ms | p99 of each run, ms | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for backend, b in d["backends"].items():
        for name, r in b["rows"].items():
            each = ", ".join(f"{x:g}" for x in r["p99_runs_ms"])
            lines.append(f"| {backend} | {name} | {r['requests']:,} | {r['requests_per_s']} | {r['p50_ms']} | "
                         f"{r['p99_ms']} | {each} | {r['errors']} |")
    code = d["code"]
    lines += ["", f"Code served: commit {code['commit']}" + (f", with uncommitted changes to shoplm/ (diff digest "
                                                            f"{code['diff_digest']})" if code["shoplm_uncommitted"] else "")
              + "."]
    for backend, b in d["backends"].items():
        fingerprint = b["profile"].get("encoder")
        lines += ["", f"### Encoder {backend}" + (f" (model fingerprint {fingerprint})" if fingerprint else ""), "",
                  *_storefront_notes(b, d)]
        lines += _profile_lines(b["profile"])
    return lines


def _storefront_notes(b: dict, d: dict) -> list[str]:
    first = b["first_answers"]
    faceted = first.get("search, facets + sort", {})
    tracebacks = b.get("service_log_tracebacks")
    lines = [(f"The service logged {tracebacks} tracebacks (var/bench-storefront/service.log). " if tracebacks else "")
             + "Facets + sort over plain search: " + "; ".join(f"{q}: p50 {r['p50']}x, p99 {r['p99']}x"
                                                            for q, r in b["facets_over_plain"].items()) + ". "
             "Targets: " + "; ".join(f"{t}: {'met' if ok else 'missed'}" for t, ok in b["targets"].items()) + ". "
             f"Startup to {d['workers']} ready workers: {b['startup_s']} s. First answers after it: "
             + ", ".join(f"{name} {r['ms']} ms" for name, r in first.items()) + "."]
    if faceted.get("facet_values"):
        lines[-1] += (f" The first faceted page (`{faceted['path']}`): total {faceted['total']:,}, facet values "
                      + ", ".join(f"{f} {n}" for f, n in faceted["facet_values"].items()) + ".")
    for name, spy in (b.get("pyspy") or {}).items():
        if spy and "share" in spy:
            lines += ["", f"py-spy, 100 samples a second of one worker during one more {d['seconds_per_cell']:.0f} s "
                      f"run of `{name}` ({spy['requests']:,} requests, p99 {spy['p99_ms']} ms; not in the table): "
                      f"{spy['samples']:,} samples of its busy threads, by the innermost stage on the stack: "
                      + ", ".join(f"{stage} {share:.0%}" for stage, share in spy["share"].items() if share >= 0.005)
                      + ". Innermost functions: " + ", ".join(f"`{f}` {x:.0%}" for f, x in spy["top_functions"].items())
                      + "."]
        elif spy:
            lines += ["", f"py-spy failed on `{name}`: {spy['error']}"]
    return lines


def _profile_lines(p: dict) -> list[str]:
    if "error" in p:
        return ["", f"The in-process profile failed: {p['error']}", ""]
    paths = [name for name in p if isinstance(p[name], dict) and "share" in p[name]]
    stages = list(dict.fromkeys(stage for name in paths for stage in p[name]["share"]))
    lines = ["", f"Where a request's time goes, in one process: {p['queries']} queries (and their prefixes for suggest) "
             "one at a time through the service's app over ASGI (no sockets, no wrk), torch and BLAS at "
             f"{p['threads']} thread(s), the query-vector memo cleared before each request so every search runs the "
             "encoder. Exclusive time per stage: a timed function called from another counts for its own stage.", "",
             "| stage | " + " | ".join(paths) + " |", "|---|" + "---|" * len(paths),
             "| per request p50 / p99 ms | " + " | ".join(f"{p[n]['p50_ms']} / {p[n]['p99_ms']}" for n in paths) + " |"]
    for stage in stages:
        cells = []
        for name in paths:
            share = p[name]["share"].get(stage)
            ms = p[name]["ms_per_request"].get(stage)
            cells.append("-" if share is None else f"{share:.0%}" + (f" ({ms} ms)" if ms is not None else ""))
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return lines + [""]


def _shared_machine(d: dict) -> str:
    """What the load average at the section's start says about the figures."""
    run = d.get("run", {})
    if "load_average" not in run:
        return ""
    cores = run.get("machine", {}).get("cores", os.cpu_count())
    load = ", ".join(f"{x:.2f}" for x in run["load_average"])
    busy = run["load_average"][0] > 0.5 * cores
    return (f"Load average at the start: {load} on {cores} cores" + (": the machine was shared with other jobs, so the "
            "figures are medians and vary from run to run (compare the runs side by side)." if busy else "."))


def _facets_lines(d: dict) -> list[str]:
    mem = d["memory_mib"]
    lines = ["## Facets at 1M items (in-process)", "",
             f"{d['items']:,} synthetic items: each a real Home Depot title ({d['distinct_titles']:,} distinct drawn, with "
             f"replacement) plus one of {d['variants']} variant suffixes (\"(Chrome)\", \"(2-Pack)\"); brand = the real "
             f"title's first word ({d['brands']:,} brands), category and price as in the storefront section "
             f"({d['categories']} leaf categories); seed 0. Columns built as the engine builds them "
             f"(`FacetColumns.extended` over Item records): {d['build_s']} s; memory: Item records {mem['items (Item records)']:,}"
             f" MiB, columns {mem['columns (process RSS growth)']:,} MiB of process growth, of which their arrays "
             f"{mem['columns (their arrays)']} MiB. Each cell: {d['calls']} calls of "
             f"`FacetColumns.facets([{STOREFRONT_FACETS}])` (top {d['top']} values) over a random result set (5 masks taking "
             f"turns), with no filter or with `brand:{d['top_brand']}` (the most common brand; disjunctive: the brand "
             "facet leaves its own filter out); also the listing's filter mask (`FacetColumns.mask`) and sort=price_asc "
             "(`listing._sorted`) of the filtered set in a shuffled order. " + _shared_machine(d), "",
             "| result set, filter | rows in set | after filter | facets p50 ms | facets p99 ms | each facet alone, "
             "p50 ms | filter mask p50 ms | sort p50 ms | sort p99 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in d["rows"].items():
        each = ", ".join(f"{f} {x}" for f, x in r.get("each_facet_p50_ms", {}).items())
        lines.append(f"| {name} | {r['result_set']:,} | {r['after_filter']:,} | {r['facets']['p50_ms']} | "
                     f"{r['facets']['p99_ms']} | {each} | {r['filter_mask']['p50_ms']} | "
                     f"{r['sort_price_asc']['p50_ms']} | {r['sort_price_asc']['p99_ms']} |")
    return lines + [""]


MACHINE_KEYS = ("cpu", "cores", "memory_mib", "python", "torch")


def _machine_line(m: dict) -> str:
    return f"{m['cpu']}, {m['cores']} cores, {m['memory_mib']:,} MiB, Python {m['python']}, torch {m['torch']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="encoder,ann,service,service_trained,service_search_trained,ingest,ads,storefront,facets_1m,"
                                          "impressions,lists,hosts,million",
                        help="comma-separated sections")
    parser.add_argument("--encoder-items", type=int, default=2000)
    parser.add_argument("--encoder-queries", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ann-sizes", default="100000,1000000")
    parser.add_argument("--ann-queries", type=int, default=500)
    parser.add_argument("--ingest-events", type=int, default=300_000)
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from results.json")
    parser.add_argument("--service-clients", default="1,8,32")
    parser.add_argument("--service-seconds", type=float, default=10.0)
    parser.add_argument("--service-repeats", type=int, default=3, help="runs of each service cell (medians quoted)")
    parser.add_argument("--service-model", type=Path, default=None,
                        help="a `shoplm train recommend` directory of Amazon Scientific for service_trained (default: "
                             "var/models/bench-scientific, trained there once)")
    parser.add_argument("--search-model", type=Path, default=None,
                        help="a `shoplm train search` directory of Home Depot for service_search_trained (default: "
                             "var/models/hd, trained there once)")
    parser.add_argument("--service-train-minutes", type=float, default=12.0,
                        help="training budget of the model service_trained trains when it has none")
    parser.add_argument("--service-backend", default="onnx-int8", help="the served encoder: onnx-int8 or torch")
    parser.add_argument("--service-workers", default="1,2", help="comma-separated numbers of worker processes")
    parser.add_argument("--ads-items", type=int, default=50_000)
    parser.add_argument("--ads-calls", type=int, default=200, help="timed rank_ads calls per path and code version")
    parser.add_argument("--ads-rounds", type=int, default=5, help="rounds the calls are split into, the versions alternating")
    parser.add_argument("--ads-before", type=Path, default=None,
                        help="a checkout of earlier shoplm code (e.g. a git worktree) to measure too: before/after ratio")
    parser.add_argument("--ads-threads", type=int, default=1,
                        help="BLAS/OpenMP threads of the ads children (`shoplm serve` runs requests at serve_threads=1)")
    parser.add_argument("--ads-child", default=None, help=argparse.SUPPRESS)  # internal: one code version's process
    parser.add_argument("--storefront-clients", type=int, default=8)
    parser.add_argument("--storefront-workers", type=int, default=2)
    parser.add_argument("--storefront-seconds", type=float, default=10.0)
    parser.add_argument("--storefront-repeats", type=int, default=3, help="runs of each storefront cell (medians quoted)")
    parser.add_argument("--storefront-queries", type=int, default=500, help="distinct judged queries (from the first)")
    parser.add_argument("--storefront-profile", type=int, default=100, help="queries of the in-process profile")
    parser.add_argument("--storefront-backends", default="torch,onnx-int8",
                        help="encoder backends served in turn (torch reads the shared embedding cache)")
    parser.add_argument("--facets-items", type=int, default=1_000_000)
    parser.add_argument("--facets-calls", type=int, default=200, help="timed calls per facets_1m cell")
    parser.add_argument("--hosts-writes", type=int, default=150, help="catalog writes timed by the hosts section")
    parser.add_argument("--lists-calls", type=int, default=300, help="timed calls per route of the lists section")
    parser.add_argument("--million-items", type=int, default=1_000_000)
    parser.add_argument("--million-storage", default="sq8", help="SHOPLM_VECTOR_STORAGE of the million section")
    parser.add_argument("--million-matrix", default="float16", help="SHOPLM_VECTOR_MATRIX the million section serves with")
    parser.add_argument("--pg-url", default=os.environ.get("SHOPLM_BENCH_PG_URL", "postgresql://127.0.0.1:5432/test"))
    args = parser.parse_args()
    if args.ads_child:
        _ads_child(json.loads(args.ads_child))
        return
    if args.report_only:
        write_results(json.loads((OUT / "results.json").read_text()))
        return
    settings = Settings()
    previous = json.loads((OUT / "results.json").read_text()) if (OUT / "results.json").is_file() else {}
    results = {**previous, "machine": machine()}
    for section in previous.values():  # sections run before sections carried their machine: the header's then
        if isinstance(section, dict) and "run" in section and "machine" not in section["run"] and "machine" in previous:
            section["run"]["machine"] = {k: previous["machine"][k] for k in MACHINE_KEYS}
    sections = set(args.only.split(","))
    runs = {
        "encoder": lambda: bench_encoder(settings, args.encoder_items, args.encoder_queries, args.repeats),
        "ann": lambda: bench_ann(settings, [int(s) for s in args.ann_sizes.split(",") if s], args.ann_queries),
        "service": lambda: bench_service(settings, [int(c) for c in args.service_clients.split(",")],
                                         args.service_seconds, None, args.service_backend,
                                         [int(w) for w in args.service_workers.split(",")], args.service_repeats),
        "service_trained": lambda: bench_service(
            settings, [int(c) for c in args.service_clients.split(",")], args.service_seconds,
            args.service_model or trained_scientific(settings, args.service_train_minutes), args.service_backend,
            [int(w) for w in args.service_workers.split(",")], args.service_repeats, routes=("recommend",)),
        "service_search_trained": lambda: bench_search_models(
            settings, args.search_model or trained_homedepot(settings), [int(c) for c in args.service_clients.split(",")],
            [int(w) for w in args.service_workers.split(",")], args.service_seconds, args.service_repeats),
        "ingest": lambda: bench_ingest(settings, args.ingest_events, args.pg_url or None, args.repeats),
        "ads": lambda: bench_ads(args.ads_items, args.ads_calls, args.ads_rounds, args.ads_before, args.ads_threads),
        "storefront": lambda: bench_storefront(settings, args.storefront_clients, args.storefront_workers,
                                               args.storefront_seconds, args.storefront_repeats, args.storefront_queries,
                                               args.storefront_profile, args.storefront_backends.split(",")),
        "facets_1m": lambda: bench_facets_1m(settings, args.facets_items, args.facets_calls),
        "lists": lambda: bench_lists(settings, args.lists_calls),
        "hosts": lambda: bench_hosts(settings, args.pg_url or None, args.hosts_writes),
        "million": lambda: __import__("million").bench_million(settings, args.million_items, args.million_storage,
                                                        matrix=args.million_matrix),
        "impressions": lambda: bench_impressions(settings, args.storefront_clients, args.storefront_workers,
                                                 args.storefront_seconds, args.storefront_repeats,
                                                 args.storefront_queries),
    }
    for section, run in runs.items():
        if section in sections:
            print(f"{section} ...", flush=True)
            started = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average": os.getloadavg(),
                       "machine": {k: results["machine"][k] for k in MACHINE_KEYS}}
            results[section] = {**run(), "run": started}  # a section re-run alone keeps the others' runs
    write_results(results)
    print((OUT / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
