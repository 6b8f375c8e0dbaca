"""Does `shoplm eval search --test-judgments` score what `shoplm serve` answers? (`python bench/search_parity.py`)

Ingests the catalog into a temporary SQLite store, starts `shoplm serve` on a free port
(same environment, so the same settings and embedding cache as the evaluation), asks
GET /v1/search?q=...&k=10 (and k=100, for Recall@100) for every judged query of the test
file, and computes NDCG@10, Recall@100 and MRR@10 of the answers with `shoplm.metrics`.
With `--eval-json` (what `eval search --test-judgments ... --json` wrote) it prints the
evaluation's figures for the served system beside them and the relative differences.

    python bench/search_parity.py --split var/hd/judgments.csv --split-out var/hd-split   # train.csv, test.csv
    shoplm eval search --items var/hd/items.csv --judgments var/hd-split/train.csv \\
        --test-judgments var/hd-split/test.csv --json var/eval/hd_test.json
    python bench/search_parity.py --items var/hd/items.csv --test-judgments var/hd-split/test.csv \\
        --eval-json var/eval/hd_test.json --out var/eval/hd_test_service.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shoplm.config import Settings  # noqa: E402

KEY = "search-parity"


def ranked_answers(url: str, queries: list[str], k: int) -> tuple[list[list[str]], int]:
    """The item ids of each query's answer, best first, and how many queries were refused."""
    out, refused = [], 0
    for query in queries:
        request = urllib.request.Request(f"{url}/v1/search?" + urllib.parse.urlencode({"q": query, "k": k}),
                                         headers={"X-API-Key": KEY})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                out.append([hit["item_id"] for hit in json.load(response)["items"]])
        except urllib.error.HTTPError:  # a query the API refuses (422) answers nothing
            out.append([])
            refused += 1
    return out, refused


def service_metrics(items: Path, test_judgments: Path, model: Path | None, start_timeout: float) -> dict:
    from shoplm.data.readers import read_judgments
    from shoplm.metrics import ranking_metrics
    from shoplm.search.data import qrels_by_query
    from tests.service import ServiceProcess, run_cli

    qrels = qrels_by_query(read_judgments(test_judgments))
    queries = sorted(qrels)
    judged = [qrels[q] for q in queries]
    settings = Settings()
    env = {"SHOPLM_READ_KEY": KEY, "SHOPLM_RATE_LIMIT_PER_SECOND": "0", "SHOPLM_LOG_LEVEL": "warning",
           "SHOPLM_EMBEDDING_CACHE_DIR": str(settings.embedding_cache_dir.resolve())}
    if model is not None:
        env["SHOPLM_ENCODER_MODEL"] = str(model.resolve())
    with tempfile.TemporaryDirectory(prefix="shoplm-parity-") as tmp:
        store = f"sqlite:///{Path(tmp) / 'shop.db'}"
        started = time.monotonic()
        run_cli("ingest", "--items", str(items), "--store", store)
        service = ServiceProcess(store, Path(tmp), env=env)
        try:
            service.start(timeout=start_timeout)  # builds the indexes: the catalog's vectors come from the cache
            ready = time.monotonic() - started
            top10, refused = ranked_answers(service.url, queries, 10)
            top100, _ = ranked_answers(service.url, queries, 100)
        finally:
            service.stop()
    at10 = ranking_metrics(top10, judged, ks=(10,), recall_ks=(10,), mrr_k=10)
    at100 = ranking_metrics(top100, judged, ks=(10,), recall_ks=(100,), mrr_k=10)
    return {"n_queries": len(queries), "refused": refused, "seconds_to_ready": round(ready, 1),
            "metrics": {"ndcg@10": at10["ndcg@10"], "recall@100": at100["recall@100"], "mrr@10": at10["mrr@10"]}}


def write_split(judgments: Path, out_dir: Path) -> dict[str, int]:
    """train.csv and test.csv in `out_dir`: the judgments of the seeded split's train and dev
    queries (`split_queries` with settings.search_dev_fraction and _split_seed, as `train search` splits)."""
    import csv

    from shoplm.data.readers import read_judgments
    from shoplm.search.data import split_queries

    settings, rows = Settings(), read_judgments(judgments)
    split = split_queries({j.query for j in rows}, settings.search_dev_fraction, settings.search_split_seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, queries in (("train", set(split.train)), ("test", set(split.dev))):
        with open(out_dir / f"{name}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["query", "item_id", "relevance"])
            writer.writerows((j.query, j.item_id, j.relevance) for j in rows if j.query in queries)
    return {"train_queries": len(split.train), "test_queries": len(split.dev)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", type=Path, metavar="JUDGMENTS",
                        help="only write DIR/train.csv and DIR/test.csv (--split-out) from the seeded split of JUDGMENTS")
    parser.add_argument("--split-out", type=Path, metavar="DIR")
    parser.add_argument("--items", type=Path)
    parser.add_argument("--test-judgments", type=Path)
    parser.add_argument("--model", type=Path, help="served as SHOPLM_ENCODER_MODEL (compare with hybrid_ft_served)")
    parser.add_argument("--eval-json", type=Path, help="the JSON of `eval search --test-judgments`, to compare with")
    parser.add_argument("--out", type=Path, help="write the result here as JSON")
    parser.add_argument("--start-timeout", type=float, default=1800, help="seconds the service may take to be ready")
    args = parser.parse_args()
    if args.split:
        print(json.dumps(write_split(args.split, args.split_out or Path("var/split")), indent=2))
        return
    if not (args.items and args.test_judgments):
        parser.error("give --items and --test-judgments (or --split)")
    result = service_metrics(args.items, args.test_judgments, args.model, args.start_timeout)
    if args.eval_json:
        system = "hybrid_ft_served" if args.model else "hybrid_served"
        evaluated = json.loads(args.eval_json.read_text())
        result |= {"system": system, "eval": evaluated["models"][system], "eval_n_queries": evaluated["n_queries"],
                   "relative_difference": {m: v / evaluated["models"][system][m] - 1
                                           for m, v in result["metrics"].items()}}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
