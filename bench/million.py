"""A synthetic catalog of a million products made from real titles, for the `million` section
of bench/bench.py (and `python bench/million.py catalog --out FILE`).

How it is made (seeded, so every run writes the same file): the 54,667 Home Depot titles and
the 49,688 Instacart product names are the base products. Each base product gets up to ten
variants, as a shop lists one product in several colours, sizes or packs: the title plus
" (A, B)", A one of `FINISHES` and B one of `SIZES` (24 x 16 = 384 pairs, ten drawn without
replacement per product), so every title is distinct and real words carry the search. The
1,043,550 variants are shuffled and the first `n` kept. Fields: brand = the title's first
word; category = "Department > Aisle" from Instacart's own tables, and for Home Depot a
two-level path drawn as in the storefront section (`storefront_fields`); price log-normal
around $35 (Home Depot) or $5 (Instacart), in cents. Ids: `hd-<uid>-<v>` and `ic-<id>-<v>`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

FINISHES = ("White", "Black", "Brushed Nickel", "Oil-Rubbed Bronze", "Chrome", "Matte Black", "Red", "Blue", "Green",
            "Gray", "Beige", "Walnut", "Oak", "Cherry", "Stainless Steel", "Brass", "Copper", "Ivory", "Navy", "Silver",
            "Natural", "Espresso", "Clear", "Gold")
SIZES = ("2-Pack", "4-Pack", "6-Pack", "10-Pack", "12 in.", "24 in.", "36 in.", "1/2 in.", "3/4 in.", "1 gal.",
         "5 gal.", "Small", "Medium", "Large", "12 oz", "32 oz")
VARIANTS = 10


def _data_dir() -> Path:
    return Path(os.environ.get("SHOPLM_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def _bases(data: Path) -> list[tuple[str, str, str, float]]:
    """(id prefix, title, category, price) per real product."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import storefront_fields  # the storefront section's derived fields, one definition

    rng = np.random.default_rng(0)
    with open(data / "homedepot" / "products.csv", encoding="latin-1", newline="") as f:
        hd = [(r["product_uid"], " ".join(r["title"].split())) for r in csv.DictReader(f)]
    _, hd_categories, hd_prices = storefront_fields([t for _, t in hd], rng)
    bases = [(f"hd-{uid}", title, c, float(p)) for (uid, title), c, p in zip(hd, hd_categories, hd_prices.tolist())]

    def names(file: str, key: str) -> dict[str, str]:
        with open(data / "instacart" / file, newline="") as f:
            return {r[f"{key}_id"]: r[key].title() for r in csv.DictReader(f)}

    aisles, departments = names("aisles.csv", "aisle"), names("departments.csv", "department")
    with open(data / "instacart" / "products.csv", newline="") as f:
        ic = list(csv.DictReader(f))
    ic_prices = np.round(np.clip(rng.lognormal(np.log(5.0), 0.7, len(ic)), 0.5, 200.0), 2)  # (n,)
    bases += [(f"ic-{r['product_id']}", " ".join(r["product_name"].split()),
               f"{departments[r['department_id']]} > {aisles[r['aisle_id']]}", float(p))
              for r, p in zip(ic, ic_prices.tolist())]
    return bases


def catalog(out: Path, n: int = 1_000_000, data: Path | None = None) -> int:
    """Writes `n` items (item_id,title,brand,category,price) to `out`; returns how many."""
    rng = np.random.default_rng(1)
    bases = _bases(data or _data_dir())
    pairs = len(FINISHES) * len(SIZES)
    picks = np.stack([rng.choice(pairs, VARIANTS, replace=False) for _ in bases])  # (bases, VARIANTS)
    order = rng.permutation(len(bases) * VARIANTS)[:n]  # (n,) flat (base, variant) indexes
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "title", "brand", "category", "price"])
        for flat in order.tolist():
            b, v = divmod(flat, VARIANTS)
            prefix, title, category, price = bases[b]
            finish, size = divmod(int(picks[b, v]), len(SIZES))
            words = title.split()
            writer.writerow([f"{prefix}-{v}", f"{title} ({FINISHES[finish]}, {SIZES[size]})",
                             words[0] if words else "", category, f"{price * (1 + 0.1 * v):.2f}"])
    tmp.replace(out)
    return len(order)


# --- the benchmark --------------------------------------------------------------------------

def bench_million(settings, n: int = 1_000_000, storage: str = "sq8", clients: int = 8, workers: int = 2,
                  seconds: float = 10.0, repeats: int = 3, posts: int = 40, n_queries: int = 500,
                  work: Path | None = None, matrix: str = "float16") -> dict:
    """The million-item shop end to end, through the CLI and the HTTP API, each step timed with
    its peak memory: the catalog file, `shoplm jobs embed --in-process` (resumable: a re-run
    reuses the Parquet parts and reports the first run's time), `shoplm ingest`, `shoplm index
    build --embeddings` with `storage` vectors, `shoplm serve --workers 2` with a `matrix`
    (SHOPLM_VECTOR_MATRIX) copy of the vectors in each worker (startup, resident
    memory per worker), `/v1/search` under wrk at `clients` connections (judged Home Depot
    queries), the time from `POST /v1/items` to the item being found by `/v1/search`, and
    in-process the Recall@10 of the served index against exact search over the same vectors."""
    import shutil

    sys.path.insert(0, str(ROOT))
    from bench import WARM_UP_S, _homedepot_texts, _service_env, _wait_for_workers, _wrk, _wrk_row
    from tests.service import ServiceProcess

    if shutil.which("wrk") is None:
        raise SystemExit("the million benchmark needs wrk: apt-get install wrk (or leave it out of --only)")
    work = work or ROOT / "var" / "bench-million"
    work.mkdir(parents=True, exist_ok=True)
    items = work / "items.csv"
    steps: dict[str, dict] = {}
    started = time.perf_counter()
    catalog(items, n)
    steps["catalog file"] = {"s": round(time.perf_counter() - started, 1)}

    embeddings = work / "embeddings"
    parts = -(-n // 50_000)  # jobs embed --in-process writes files of 50,000 items
    kept = len(list(embeddings.glob("part-*.parquet"))) if embeddings.is_dir() else 0
    embed = _timed(["jobs", "embed", "--items", str(items), "--out", str(embeddings), "--in-process"], work, {})
    steps["jobs embed --in-process"] = {**embed, "parts_kept": min(kept, parts), "parts": parts}
    rate = _encode_rate(items, settings)

    store_path = work / "shop.db"
    store_path.unlink(missing_ok=True)
    store = f"sqlite:///{store_path}"
    steps["ingest items"] = _timed(["ingest", "--items", str(items), "--store", store], work, {})
    env = {"SHOPLM_VECTOR_STORAGE": storage, "SHOPLM_EMBEDDING_CACHE_DIR": str(work / "cache"),
           "SHOPLM_SEARCH_INDEX_DIR": str(work / "index")}
    shutil.rmtree(work / "cache", ignore_errors=True)
    shutil.rmtree(work / "index", ignore_errors=True)
    steps["index build --embeddings"] = _timed(["index", "build", "--store", store, "--embeddings", str(embeddings)],
                                               work, env)

    _, queries = _homedepot_texts(settings, 0, n_queries)
    import urllib.parse

    paths = work / "search.paths"
    paths.write_text("".join(f"/v1/search?{urllib.parse.urlencode({'q': q})}\n" for q in queries))
    service = ServiceProcess(store, work, env={**_service_env(workers, {"vector_storage": storage,
                                                                        "vector_matrix": matrix}),
                                               "SHOPLM_ADMIN_KEY": "bench-admin"})
    service.log.unlink(missing_ok=True)
    begun = time.perf_counter()
    service.start(timeout=1800)
    try:
        _wait_for_workers(service.url, workers, timeout=1800)
        startup_s = time.perf_counter() - begun
        memory_started = _worker_rss_mib(service.process.pid)
        _wrk(service.url, paths, clients, WARM_UP_S)
        runs = [_wrk(service.url, paths, clients, seconds) for _ in range(repeats)]
        found = _post_to_found(service.url, posts)
        memory_after = _worker_rss_mib(service.process.pid)
        tracebacks = service.log.read_text(errors="replace").count("Traceback")
    finally:
        service.stop()
    recall = _recall(work / "index" / "vectors", embeddings, settings, queries, matrix=matrix)
    return {"items": n, "storage": storage, "matrix": matrix, "clients": clients, "workers": workers, "seconds_per_run": seconds,
            "repeats": repeats, "steps": steps, "encode_rate": rate, "startup_s": round(startup_s, 1),
            "worker_rss_mib": {"after start": memory_started, "after the load and the posts": memory_after},
            "search": _wrk_row(runs), "post_to_found": found, "recall": recall, "service_log_tracebacks": tracebacks}


def _encode_rate(items: Path, settings, n: int = 5_000) -> dict:
    """Items/s of the configured encoder on the first `n` catalog texts, here, so the figure
    holds even when `jobs embed` kept the files of an earlier (interrupted) run."""
    from shoplm.data.readers import read_items
    from shoplm.data.text import item_texts
    from shoplm.lm.encoder import Encoder

    with open(items, newline="") as f:
        head = "".join(line for _, line in zip(range(n + 1), f))
    sample = items.with_name("sample.csv")
    sample.write_text(head)
    texts = item_texts(read_items(sample), settings.item_text_template)
    encoder = Encoder.from_settings(settings)
    encoder.encode(texts[:256])
    started = time.perf_counter()
    encoder.encode(texts)
    per_s = len(texts) / (time.perf_counter() - started)
    return {"items": len(texts), "items_per_s": round(per_s, 1), "million_minutes": round(1e6 / per_s / 60, 1)}


def _timed(args: list[str], work: Path, env: dict) -> dict:
    """`shoplm ARGS` under GNU time: wall seconds and peak resident memory."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "shoplm.cli", *args],
                         capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT)
    (work / ("-".join(a for a in args[:2] if not a.startswith("-")) + ".log")).write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise SystemExit(f"shoplm {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    wall, peak_kib = out.stderr.strip().splitlines()[-1].split()
    return {"s": round(float(wall), 1), "peak_rss_mib": round(int(peak_kib) / 1024)}


def _worker_rss_mib(parent: int) -> list[float]:
    """Resident memory (MiB) of each `shoplm serve` worker: the serving process's descendants
    that hold an engine (over 200 MiB; the dispatcher and helpers hold far less)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,rss="], capture_output=True, text=True, check=True).stdout
    rows = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    family, grew = {parent}, True
    while grew:
        before = len(family)
        family |= {pid for pid, ppid, _ in rows if ppid in family}
        grew = len(family) > before
    return sorted(round(rss / 1024) for pid, _, rss in rows if pid in family and rss > 200 * 1024)


def _post_to_found(url: str, posts: int) -> dict:
    """For each of `posts` new items (a unique made-up word in a real-looking title): POST it
    on one connection, then ask /v1/search for that word every 10 ms on a second one, held
    open so that the dispatcher gave it to the other worker (a connection stays on its
    worker): the time until a worker that did not take the write serves the item, from the
    POST's answer. The same search on the POST's own connection is timed too."""
    import httpx

    read, admin = {"X-API-Key": "bench"}, {"X-API-Key": "bench-admin"}
    waits: dict[str, list[float]] = {"other worker": [], "same worker": []}
    with httpx.Client(base_url=url, timeout=60) as writer, httpx.Client(base_url=url, timeout=60) as reader:
        workers = {writer.get("/healthz").json()["worker"], reader.get("/healthz").json()["worker"]}
        for i in range(posts):
            word = f"zq{i:03d}x{int(time.time()) % 100000}"
            item = {"item_id": f"new-{word}", "title": f"Cordless {word} drill driver kit",
                    "category": "Tools > Power Tools", "brand": "Bench", "price": 99.0}
            writer.post("/v1/items", json={"items": [item]}, headers=admin).raise_for_status()
            posted = time.perf_counter()
            for name, http in (("other worker", reader), ("same worker", writer)):
                while True:
                    answer = http.get("/v1/search", params={"q": word}, headers=read)
                    answer.raise_for_status()  # an error is a finding, not a wait
                    if any(row["item_id"] == item["item_id"] for row in answer.json()["items"]):
                        waits[name].append((time.perf_counter() - posted) * 1e3)
                        break
                    if time.perf_counter() - posted > 30:
                        waits[name].append(float("inf"))
                        break
                    time.sleep(0.01)
    out = {"posts": posts, "two_workers_seen": len(workers) == 2}
    for name, values in waits.items():
        finite = sorted(w for w in values if w != float("inf"))
        out[name] = {"not_found_in_30s": len(values) - len(finite),
                     "p50_ms": round(statistics.median(finite), 1) if finite else None,
                     "max_ms": round(finite[-1], 1) if finite else None}
    return out


def _recall(index_dir: Path, embeddings: Path, settings, queries: list[str], k: int = 10,
            matrix: str = "float32") -> dict:
    """Recall@k of the saved index re-scoring from float32 rows, of the same index re-scoring
    from a `matrix` copy (as served), and of the same IVF lists with float32 codes, against an
    exact scan of the float32 vectors, for the benchmark's queries; and FAISS's own bytes."""
    import faiss

    from shoplm.lm.encoder import Encoder
    from shoplm.search.index import FaissIndex, load_index

    index = load_index(index_dir)
    q = Encoder.from_settings(settings).encode(queries)  # (m, dim)
    truth = []
    for start in range(0, len(q), 50):  # 50 queries x a million scores at a time (200 MB)
        scores = q[start:start + 50] @ index.vectors.T  # (50, rows)
        scores[:, ~index.alive] = -np.inf
        truth += [set(index.ids[r]) for r in np.argpartition(-scores, k, axis=1)[:, :k]]

    def recall_of(hits) -> float:
        return round(float(np.mean([len(truth[i] & set(row)) / k for i, row in enumerate(hits.ids)])), 4)

    def faiss_mib(built) -> float:
        return round(faiss.serialize_index(built.faiss).nbytes / 2**20, 1)

    def sweep(built) -> dict:
        """Recall@10 and one query's p50 ms at each nprobe (the served setting among them)."""
        served, rows = built.nprobe, {}
        for nprobe in sorted({16, 32, 64, 128, served}):
            built.nprobe = nprobe
            times = []
            for row in q:
                started = time.perf_counter()
                built.search(row[None], k)
                times.append((time.perf_counter() - started) * 1e3)
            rows[nprobe] = {"recall@10": recall_of(built.search(q, k)), "p50_ms": round(statistics.median(times), 3)}
        built.nprobe = served
        return rows

    out = {"nprobe": index.nprobe, "indexes": {index.spec: {"faiss_mib": faiss_mib(index), "sweep": sweep(index)}}}
    if matrix != "float32":
        served = load_index(index_dir, matrix=matrix)
        out["indexes"][f"{served.spec}, {matrix} matrix"] = {"faiss_mib": faiss_mib(served), "sweep": sweep(served),
                                                               "matrix_mib": round(served.vectors.nbytes / 2**20, 1)}
        del served
    other = FaissIndex(index.dim, storage="float32", ivf_min_items=index.ivf_min_items, nprobe=index.nprobe)
    started = time.perf_counter()
    other.add(index.ids.tolist(), index.vectors)
    out["indexes"][other.spec] = {"faiss_mib": faiss_mib(other), "build_s": round(time.perf_counter() - started, 1),
                                  "sweep": sweep(other)}
    times = []
    for row in q[:100]:
        started = time.perf_counter()
        np.argpartition(-(index.vectors @ row), k)[:k]
        times.append((time.perf_counter() - started) * 1e3)
    out["exact"] = {"matrix_mib": round(index.vectors.nbytes / 2**20, 1), "p50_ms": round(statistics.median(times), 2)}
    return out


def lines(d: dict) -> list[str]:
    """The RESULTS.md section."""
    def step(name: str, v: dict) -> str:
        note = f" ({v['parts_kept']} of {v['parts']} files kept from an earlier run)" if v.get("parts_kept") else ""
        peak = format(v["peak_rss_mib"], ",") if "peak_rss_mib" in v else "-"
        return f"| {name}{note} | {v['s']:,} | {peak} |"

    steps = "\n".join(step(name, v) for name, v in d["steps"].items())
    e = d["encode_rate"]
    r = d["recall"]
    recall = "\n".join(f"| {name} | {v['faiss_mib']:,} | {nprobe}{' (served)' if int(nprobe) == r['nprobe'] else ''} | "
                       f"{x['recall@10']} | {x['p50_ms']} |"
                       for name, v in r["indexes"].items() for nprobe, x in v["sweep"].items())
    s, f = d["search"], d["post_to_found"]
    return [
        "## A million items end to end", "",
        f"{d['items']:,} synthetic items from real titles (bench/million.py: the Home Depot and Instacart names, "
        f"up to ten variants each), `SHOPLM_VECTOR_STORAGE={d['storage']}`, "
        f"`SHOPLM_VECTOR_MATRIX={d.get('matrix', 'float32')}`, `shoplm serve --workers {d['workers']}` "
        f"on SQLite. Reproduce: `python bench/bench.py --only million`.", "",
        "| step | seconds | peak memory MiB |", "|---|---:|---:|", steps, "",
        f"The encoder (torch, as `jobs embed` runs it) does {e['items_per_s']:,} of these item texts a second here "
        f"({e['items']:,} timed): {e['million_minutes']} minutes for a million.", "",
        f"Service: ready with {d['workers']} workers in {d['startup_s']} s; resident memory per worker "
        f"{d['worker_rss_mib']['after start']} MiB after start, {d['worker_rss_mib']['after the load and the posts']} MiB "
        f"after the load and the posts.", "",
        f"| `/v1/search` x{d['clients']}, {d['workers']} workers | requests | errors | req/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
        f"| judged Home Depot queries | {s['requests']:,} | {s['errors']} | {s['requests_per_s']} | {s['p50_ms']} | "
        f"{s['p99_ms']} |", "",
        f"From `POST /v1/items` answered to the item on a `/v1/search` page ({f['posts']} new items, searched for every "
        f"10 ms): on the other worker (a second connection) p50 {f['other worker']['p50_ms']} ms, max "
        f"{f['other worker']['max_ms']} ms; on the worker that took the write p50 {f['same worker']['p50_ms']} ms "
        f"(timed from the same POST, after the other worker's); not found within 30 s: "
        f"{f['other worker']['not_found_in_30s'] + f['same worker']['not_found_in_30s']}"
        + ("." if f["two_workers_seen"] else " (both connections went to one worker: the figures are that worker's)."), "",
        f"Recall@10 against an exact scan of the float32 vectors ({r['exact']['matrix_mib']:,} MiB, "
        f"{r['exact']['p50_ms']} ms a query), for the same queries, in-process, one query at a time; every index "
        "re-scores its candidates from the float32 rows, except the one marked with the served matrix, which "
        "re-scores from that copy as a worker does.", "",
        "| FAISS index | FAISS MiB | nprobe | Recall@10 | p50 ms |", "|---|---:|---:|---:|---:|", recall, "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("catalog", help="write the synthetic catalog")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"{catalog(args.out, args.n):,} items in {args.out}")


if __name__ == "__main__":
    main()
