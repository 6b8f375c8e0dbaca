"""Cold users through the service: the served side of `shoplm eval recommend --cold-users`.

    python bench/cold_users.py --items var/data/scientific/items.csv --events var/data/scientific/events.csv \
        --model var/models/scientific-cold --offline var/eval/scientific-cold.json --out var/eval/cold-served.json

Stores every event of the users the model trained on (the held-out users' never), starts
`shoplm serve` with the model, and replays each held-out test user through `/v1/events`
and `/v1/recommend` (shoplm/engine/replay.py), erasing each one after its replay so the next
meets the same store. Compares NDCG@10 / Recall@10 per history length with the offline
"shoplm_served" row of the `--offline` report (run with the same model, --cold-users and
--exclude-history); prints both and their ratio, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shoplm.config import Settings  # noqa: E402
from shoplm.engine.replay import replay, visitors  # noqa: E402
from shoplm.recommend.sequences import COLD_USER_KS, build_sequences, hold_out_users, read_catalog  # noqa: E402
from tests.service import ServiceProcess, run_cli  # noqa: E402

ADMIN = "cold-users-bench-admin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=Path, required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="trained with `train recommend --cold-users F`")
    parser.add_argument("--cold-users", type=float, default=0.2)
    parser.add_argument("--offline", type=Path, help="the JSON of `eval recommend --cold-users F --model M --exclude-history`")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--users", type=int, default=None, help="replay only the first N held-out users")
    args = parser.parse_args()

    settings = Settings()
    catalog = read_catalog(args.items, args.events)
    seqs = build_sequences(catalog.events, catalog.item_ids, settings.event_weights, settings.recommend_sequences_by)
    _, held = hold_out_users(seqs, args.cold_users, settings.cold_users_seed)
    held_out = set(held.test.actors) | set(held.valid.actors)
    test = visitors(catalog.events, set(held.test.actors), settings.event_weights)
    if args.users:
        test = dict(list(test.items())[: args.users])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        events = pl.read_csv(args.events, infer_schema=False)
        actor = pl.coalesce(pl.col("user_id"), pl.lit("session:") + pl.col("session_id")) \
            if "session_id" in events.columns else pl.col("user_id")
        events.filter(~actor.is_in(list(held_out))).write_csv(work / "events.csv")
        store = f"sqlite:///{work / 'shop.db'}"
        started = time.perf_counter()
        run_cli("ingest", "--items", str(args.items), "--events", str(work / "events.csv"), "--store", store)
        env = {"SHOPLM_RECOMMEND_MODEL": str(args.model.resolve()), "SHOPLM_MAX_PER_CATEGORY": "0",
               "SHOPLM_ADMIN_KEY": ADMIN, "SHOPLM_EMBEDDING_CACHE_DIR": str(settings.embedding_cache_dir.resolve()),
               "SHOPLM_RATE_LIMIT_PER_SECOND": "100000", "SHOPLM_RATE_LIMIT_BURST": "100000"}
        with ServiceProcess(store, work, env=env) as service, httpx.Client(base_url=service.url, timeout=60) as client:
            ready = time.perf_counter() - started
            started = time.perf_counter()
            served = replay(client, test, COLD_USER_KS, exclude_seen=True, admin={"X-API-Key": ADMIN},
                            progress=lambda what, done, total, info=None: done % 200 == 0 and print(
                                f"{what}: {done}/{total}", flush=True))
            seconds = time.perf_counter() - started
    result = {"served": served, "users": len(test), "model": str(args.model), "cold_users": args.cold_users,
              "seconds": {"store_and_start": round(ready, 1), "replay": round(seconds, 1)}}
    if args.offline:
        offline = json.loads(args.offline.read_text())["slices"]["cold_users"]
        result["offline"] = {k: offline[k]["shoplm_served"] for k in served if k in offline}
        print(f"{'k':>3} {'cases':>6} {'served NDCG@10':>15} {'offline':>8} {'ratio':>6} "
              f"{'served R@10':>12} {'offline':>8} {'ratio':>6}")
        for k, figures in served.items():
            base = result["offline"].get(k, {})
            cells = []
            for metric in ("ndcg@10", "recall@10"):
                ratio = figures[metric] / base[metric] if base.get(metric) else float("nan")
                cells.append(f"{figures[metric]:>{15 if metric == 'ndcg@10' else 12}.4f} {base.get(metric, 0):>8.4f} "
                             f"{ratio:>6.3f}")
            print(f"{k:>3} {figures['cases']:>6} {' '.join(cells)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{len(test)} users replayed in {seconds:.0f} s; written to {args.out}")


if __name__ == "__main__":
    main()
