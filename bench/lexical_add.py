"""Add an item to the BM25 index and find it, on the Home Depot titles: how long until a new
item is searchable (docs/experiments/2026-12-02-incremental-bm25.md).

    python bench/lexical_add.py [--before OLD/shoplm/search/lexical.py]

`--before` times another version of lexical.py in the same run (e.g. `git show
3eacdb2~:shoplm/search/lexical.py > /tmp/lexical_old.py`), for a ratio on one machine.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shoplm.config import Settings  # noqa: E402


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, default=None, help="another lexical.py to time in the same run")
    parser.add_argument("--adds", type=int, default=10)
    args = parser.parse_args()
    csv.field_size_limit(10**9)
    titles: dict[str, str] = {}
    with open(Settings().data_dir / "homedepot" / "products.csv", newline="", encoding="utf-8", errors="replace") as f:
        for row in csv.DictReader(f):
            titles.setdefault(row["product_uid"], row["title"])
    ids, texts = list(titles), list(titles.values())
    versions = ([("before", _module(args.before, "lexical_before"))] if args.before else []) + \
        [("after", _module(ROOT / "shoplm" / "search" / "lexical.py", "lexical_after"))]
    for label, module in versions:
        index = module.LexicalIndex(ids, texts)
        started = time.perf_counter()
        index.scores("cordless drill")
        build = time.perf_counter() - started
        adds = []
        for i in range(args.adds):
            started = time.perf_counter()
            index.add([f"new-{i}"], [f"zyxwv{i} garden sprinkler"])
            found = index.search([f"zyxwv{i}"], 1).ids[0][0]
            adds.append(time.perf_counter() - started)
            assert found == f"new-{i}", found
        queries = []
        for query in ["cordless drill", "deck screws", "white paint", "ceiling fan light"] * 5:
            started = time.perf_counter()
            index.scores(query)
            queries.append(time.perf_counter() - started)
        print(f"{label}: {len(ids):,} items; first search (build) {build:.2f} s; add + find p50 "
              f"{np.median(adds) * 1e3:.1f} ms, max {max(adds) * 1e3:.1f} ms; query after the adds p50 "
              f"{np.median(queries) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
