"""shoplm benchmarks: `make bench` (or `python bench/bench.py [--only encoder,ann,ingest]`).

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
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(ROOT))

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

    from shoplm.search.data import read_items
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
    runs = [f"{name}: {r['run']['date']}, load average {', '.join(f'{x:.2f}' for x in r['run']['load_average'])}"
            for name, r in results.items() if isinstance(r, dict) and "run" in r]
    if runs:
        lines += ["## When each section ran", "", *[f"- {line}" for line in runs], ""]
    (OUT / "RESULTS.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="encoder,ann,service,ingest", help="comma-separated sections")
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
    parser.add_argument("--pg-url", default=os.environ.get("SHOPLM_BENCH_PG_URL", "postgresql://127.0.0.1:5432/test"))
    args = parser.parse_args()
    if args.report_only:
        write_results(json.loads((OUT / "results.json").read_text()))
        return
    settings = Settings()
    previous = json.loads((OUT / "results.json").read_text()) if (OUT / "results.json").is_file() else {}
    results = {**previous, "machine": machine()}
    sections = set(args.only.split(","))
    runs = {
        "encoder": lambda: bench_encoder(settings, args.encoder_items, args.encoder_queries, args.repeats),
        "ann": lambda: bench_ann(settings, [int(s) for s in args.ann_sizes.split(",") if s], args.ann_queries),
        "service": lambda: bench_service(settings, [int(c) for c in args.service_clients.split(",")],
                                         args.service_seconds, args.service_model, args.service_backend,
                                         [int(w) for w in args.service_workers.split(",")], args.service_repeats),
        "ingest": lambda: bench_ingest(settings, args.ingest_events, args.pg_url or None, args.repeats),
    }
    for section, run in runs.items():
        if section in sections:
            print(f"{section} ...", flush=True)
            started = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average": os.getloadavg()}
            results[section] = {**run(), "run": started}  # a section re-run alone keeps the others' runs
    write_results(results)
    print((OUT / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
