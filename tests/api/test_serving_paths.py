"""The fast paths of the request path give the answers of the plain ones: top-k by partition,
the filtered search that skips a filter leaving nothing out. (`serve --workers`: test_workers.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from shoplm.config import Settings
from shoplm.engine.engine import Engine
from shoplm.search.index import FaissIndex, ItemFilter, ItemMeta
from shoplm.store import open_store
from tests.reliability.conftest import catalog


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine")
    settings = Settings(search_index_dir=tmp / "index", embedding_cache_dir=tmp / "cache", max_per_category=3)
    store = open_store("memory://")
    store.upsert_items(catalog(150))
    return Engine.open(settings, store)


@pytest.mark.parametrize("seed", range(6))
def test_partitioned_pick_equals_the_full_sort(engine, seed):
    """`_pick` partitions before sorting; with heavy ties, a per-category limit and masked rows
    it must still return exactly what a stable sort of every candidate gives."""
    rng = np.random.default_rng(seed)
    n = engine.catalog.n_rows
    scores = rng.integers(0, 4 if seed % 2 else 40, n).astype(np.float64)  # many ties at every level
    mask = rng.random(n) > 0.2
    for k in (1, 5, 10, 40):
        candidates = np.flatnonzero(mask)
        full = candidates[np.argsort(-scores[candidates], kind="stable")]
        expected = engine._pick_from(full, scores, k, engine.settings.max_per_category, [])
        assert len(candidates) > 8 * k or k == 40  # the partition path is the one under test
        assert engine._pick(scores, mask, k, []) == expected


def test_a_filter_that_leaves_out_nothing_answers_as_no_filter(engine):
    """Search always asks for available items; when all are, the unfiltered path answers, alike."""
    pipeline = engine.search_pipeline
    for query in ("drill", "glue gun", "model 42"):
        plain = pipeline.search([query], 10)
        filtered = pipeline.search([query], 10, ItemFilter(available_only=True))
        assert plain.ids.tolist() == filtered.ids.tolist()
        narrowed = pipeline.search([query], 10, ItemFilter(max_price=60.0))
        kept = {i.item_id for i in catalog(150) if i.price <= 60.0}
        assert set(narrowed.ids[0]) - {""} <= kept


def test_hnsw_broad_filter_gets_k_matching_results():
    """A broad filter goes through the graph with a bitmap; every answer matches it and k come
    back; a narrow one (under HNSW_FILTER_SHARE) is scanned exactly: the true top k."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = FaissIndex(32, hnsw_min_items=1)
    prices = rng.uniform(0, 100, 3000)
    index.add([f"i{i}" for i in range(3000)], vectors, [ItemMeta("c", float(p), True) for p in prices])
    queries = vectors[:20] + rng.normal(0, 0.1, (20, 32)).astype(np.float32)
    for bound in (80.0, 5.0):  # 80% of the catalog, then 5%
        hits = index.search(queries, 10, ItemFilter(max_price=bound))
        for row, q in zip(hits.ids, queries):
            rows = [int(i[1:]) for i in row if i]
            assert len(rows) == 10 and all(prices[r] <= bound for r in rows)
            if bound == 5.0:
                allowed = np.flatnonzero(prices <= bound)
                best = allowed[np.argsort(-(vectors[allowed] @ q))[:10]]
                assert set(rows) == set(best.tolist())
