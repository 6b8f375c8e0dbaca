"""Search result pages on Home Depot, through the engine a service runs: does the result set
(`search_dense_floor`) leave relevance untouched, and what does typo tolerance do on the
dev queries with a word no item has?

    python bench/storefront_quality.py --items var/hd/items.csv --judgments var/hd/judgments.csv

Prints, for the dev split `eval search` scores, the NDCG@10 of the engine's plain ranking,
of page 1 of `search_page` (typo tolerance on and off), the slice of queries the speller
corrects, and how many relevant items the floor leaves out of the result set.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from shoplm.config import Settings
from shoplm.data.readers import read_items, read_judgments
from shoplm.engine.engine import Engine
from shoplm.engine.listing import PageRequest
from shoplm.metrics import per_query_metrics
from shoplm.search.data import qrels_by_query, split_queries
from shoplm.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=Path, required=True)
    parser.add_argument("--judgments", type=Path, required=True)
    parser.add_argument("--floors", default="0.3,0.4,0.45,0.5")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = Settings()
    items = read_items(args.items)
    judgments = read_judgments(args.judgments)
    qrels = qrels_by_query(judgments)
    dev = split_queries(qrels, settings.search_dev_fraction, settings.search_split_seed).dev
    with tempfile.TemporaryDirectory() as tmp:
        settings = replace_settings(settings, search_index_dir=Path(tmp) / "index")
        store = open_store("memory://")
        store.upsert_items(items)
        started = time.monotonic()
        engine = Engine.open(settings, store)
        print(f"engine open: {time.monotonic() - started:.0f} s, {len(items)} items, {len(dev)} dev queries")
        gold = [qrels[q] for q in dev]
        plain = [[r.item_id for r in engine.search(q, k=10)] for q in dev]
        out = {"n_dev": len(dev), "plain": ndcg(plain, gold)}
        print(f"engine.search (today's ranking)   NDCG@10 {out['plain']:.4f}")
        corrected = {q: engine.speller().correct(q) for q in dev}
        slice_ = [i for i, q in enumerate(dev) if corrected[q] is not None]
        out["typo_slice"] = len(slice_)
        pipeline = engine.search_pipeline
        relevant_cos = []
        for q in dev:  # the cosine of each relevant item without a BM25 match (9: it has one)
            bm25 = pipeline.matches(q, 1.0, 1).bm25
            rows = engine.catalog.rows([i for i, g in qrels[q].items() if g > 0])
            rows = rows[rows >= 0]
            cos = pipeline.vectors.vectors[rows] @ pipeline.query_vector(q)
            relevant_cos += [float(c) if bm25[r] <= 0 else 9.0 for c, r in zip(cos, rows)]
        relevant_cos = np.asarray(relevant_cos)
        for floor in [float(f) for f in args.floors.split(",")]:
            engine.settings = replace_settings(engine.settings, search_dense_floor=floor)
            pages, totals = [], []
            for q in dev:
                page = engine.search_page(PageRequest(query=q, limit=10))
                pages.append([h.item_id for h in page.hits])
                totals.append(page.total)
            lost = float((relevant_cos < floor).mean())  # an upper bound: the depth cut is not counted
            score = ndcg(pages, gold)
            sliced = ndcg([pages[i] for i in slice_], [gold[i] for i in slice_])
            out[f"floor_{floor}"] = {"ndcg": score, "slice_ndcg": sliced, "median_total": float(np.median(totals)),
                                     "relevant_outside_set": lost, "zero_results": int(sum(t == 0 for t in totals))}
            print(f"floor {floor:.2f}: page-1 NDCG@10 {score:.4f}, typo slice {sliced:.4f}, median total "
                  f"{np.median(totals):.0f}, zero-result queries {sum(t == 0 for t in totals)}, relevant items outside "
                  f"the set {lost:.2%}")
        plain_slice = ndcg([plain[i] for i in slice_], [gold[i] for i in slice_])
        out["plain_slice"] = plain_slice
        print(f"typo slice: {len(slice_)} of {len(dev)} dev queries; without correction NDCG@10 {plain_slice:.4f}")
        examples = [(dev[i], corrected[dev[i]]) for i in slice_[:15]]
        print("examples:", examples)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))


def ndcg(ranked, gold) -> float:
    return float(per_query_metrics(ranked, gold, ks=(10,))["ndcg@10"].mean()) if ranked else 0.0


def replace_settings(settings: Settings, **changes) -> Settings:
    return settings.model_copy(update=changes)


if __name__ == "__main__":
    main()
