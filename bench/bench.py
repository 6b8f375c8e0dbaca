"""shoplm benchmarks: `make bench` (or `python bench/bench.py [--only encoder,ann,ingest,ads]`).

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
- ingest: events/s from a file into SQLite and PostgreSQL, and through POST /v1/events in
  batches of 500 against a running `shoplm serve`.
- ads: p50/p99 ms of `Engine.rank_ads` (/v1/ads/rank) at 50,000 sponsored-capable items, for
  the item and the session (history) targets; with `--ads-before CHECKOUT` the same measured
  for an earlier checkout of shoplm in the same run (the two alternating), the p50 ratio
  before/after, and whether both return the same ads.
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
import time
from pathlib import Path

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

def bench_service(settings: Settings, clients: list[int], seconds: float, model: Path | None,
                  backend: str = "onnx-int8", workers: list[int] = (1,), repeats: int = 3) -> dict:
    """p50/p99 and errors of /v1/search and /v1/recommend against `shoplm serve` on the Amazon
    Scientific data, loaded by wrk (a separate process, C, epoll) over loopback: each request a
    random query (of 500 item titles) or user (of 2,000). For each number of worker processes;
    each cell `repeats` times, the routes alternating, medians reported (the machine is shared)."""
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
    for route, lines in paths.items():
        (work / f"{route}.paths").write_text("\n".join(lines) + "\n")
    env = {"SHOPLM_READ_KEY": "bench", "SHOPLM_RATE_LIMIT_PER_SECOND": "0", "SHOPLM_LOG_LEVEL": "warning",
           "SHOPLM_EMBEDDING_CACHE_DIR": str(settings.embedding_cache_dir.resolve()),
           "SHOPLM_ENCODER_BACKEND": backend, "SHOPLM_ONNX_CACHE_DIR": str(settings.onnx_cache_dir.resolve())}
    if model is not None:
        env["SHOPLM_RECOMMEND_MODEL"] = str(model.resolve())
    rows = {}
    for n_workers in workers:
        with ServiceProcess(store, work, env={**env, "SHOPLM_SERVE_WORKERS": str(n_workers)}) as service:
            cells = {(route, n): [] for route in paths for n in clients}
            for _ in range(repeats):
                for (route, n), runs in cells.items():
                    out = subprocess.run(
                        ["wrk", "-t1", f"-c{n}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(OUT / "wrk.lua"),
                         service.url, "--", str(work / f"{route}.paths"), str(n)],
                        capture_output=True, text=True, check=True, env={**os.environ, "BENCH_KEY": "bench"})
                    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            for (route, n), runs in cells.items():
                rows[f"/v1/{route} x{n}, {n_workers} worker{'s' if n_workers > 1 else ''}"] = {
                    "route": route, "clients": n, "workers": n_workers, "requests": sum(r["requests"] for r in runs),
                    "errors": sum(r["errors"] + r["non_2xx"] for r in runs),
                    "requests_per_s": round(statistics.median(r["requests"] / r["seconds"] for r in runs), 1),
                    "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                    "p99_ms": statistics.median(r["p99_ms"] for r in runs), "p99_runs_ms": [r["p99_ms"] for r in runs]}
    return {"seconds_per_cell": seconds, "repeats": repeats, "model": str(model) if model else None,
            "load": "wrk -t1", "encoder_backend": backend, "rows": rows}


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


# --- report -------------------------------------------------------------------------------

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
    if "service" in results:
        v = results["service"]
        lines += ["## Service", "", f"`shoplm serve` on Amazon Scientific (SQLite; encoder backend "
                  f"{v['encoder_backend']}; recommendation model: {v['model'] or 'none (zero-shot text + popularity)'}); "
                  f"load from wrk (one thread, one connection per client) over loopback, "
                  f"{v['seconds_per_cell']:.0f} s per cell, each cell run {v.get('repeats', 1)} times with the cells "
                  "alternating: medians of the runs, requests and errors summed over them; "
                  "`shoplm serve --workers N`.", "",
                  "| route x clients | requests | req/s | p50 ms | p99 ms | p99 of each run, ms | errors |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in v["rows"].items():
            each = ", ".join(f"{x:g}" for x in r.get("p99_runs_ms", [r["p99_ms"]]))
            lines.append(f"| {name} | {r['requests']:,} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {each} "
                         f"| {r['errors']} |")
        lines.append("")
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
    runs = [f"{name}: {r['run']['date']}, load average {', '.join(f'{x:.2f}' for x in r['run']['load_average'])}"
            + (f"; {_machine_line(r['run']['machine'])}" if "machine" in r["run"] else "")
            for name, r in results.items() if isinstance(r, dict) and "run" in r]
    if runs:
        lines += ["## When each section ran", "", *[f"- {line}" for line in runs], ""]
    (OUT / "RESULTS.md").write_text("\n".join(lines) + "\n")


MACHINE_KEYS = ("cpu", "cores", "memory_mib", "python", "torch")


def _machine_line(m: dict) -> str:
    return f"{m['cpu']}, {m['cores']} cores, {m['memory_mib']:,} MiB, Python {m['python']}, torch {m['torch']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="encoder,ann,service,ingest,ads", help="comma-separated sections")
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
    parser.add_argument("--service-model", type=Path, default=None, help="a `shoplm train recommend` directory")
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
                                         args.service_seconds, args.service_model, args.service_backend,
                                         [int(w) for w in args.service_workers.split(",")], args.service_repeats),
        "ingest": lambda: bench_ingest(settings, args.ingest_events, args.pg_url or None, args.repeats),
        "ads": lambda: bench_ads(args.ads_items, args.ads_calls, args.ads_rounds, args.ads_before, args.ads_threads),
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
