"""One contract suite for every vector index backend: MemoryIndex, FaissIndex exact, HNSW and IVF,
with float32 and quantised FAISS codes."""

from __future__ import annotations

import numpy as np
import pytest

from shoplm.errors import IndexMismatch
from shoplm.search.index import FaissIndex, ItemFilter, ItemMeta, MemoryIndex, load_index

DIM = 16
BACKENDS = {
    "memory": lambda: MemoryIndex(DIM),
    "faiss-exact": lambda: FaissIndex(DIM, hnsw_min_items=10_000),
    "faiss-hnsw": lambda: FaissIndex(DIM, hnsw_min_items=1),
    "faiss-ivf": lambda: FaissIndex(DIM, ivf_min_items=1),
    # quantised FAISS codes, re-scored exactly from the float32 rows
    "faiss-exact-sq8": lambda: FaissIndex(DIM, hnsw_min_items=10_000, storage="sq8"),
    "faiss-hnsw-fp16": lambda: FaissIndex(DIM, hnsw_min_items=1, storage="float16"),
    "faiss-ivf-sq8": lambda: FaissIndex(DIM, ivf_min_items=1, storage="sq8"),
}
CATEGORIES = ["Tools > Saws", "Tools > Saws > Hand", "Tools > Sawsets", "Paint", "Tools > Drills"]


@pytest.fixture(params=list(BACKENDS))
def make(request):
    return BACKENDS[request.param]


def unit(rows: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def catalog():
    n = 300
    ids = [f"i{i}" for i in range(n)]
    metas = [ItemMeta(CATEGORIES[i % len(CATEGORIES)], None if i % 17 == 0 else float(i % 100), i % 4 != 0)
             for i in range(n)]
    return ids, unit(n), metas


@pytest.fixture
def index(make, catalog):
    built = make()
    built.add(*catalog)
    return built


def test_finds_each_item_by_its_own_vector(index, catalog):
    ids, vectors, _ = catalog
    hits = index.search(vectors[:50], k=3)
    assert list(hits.ids[:, 0]) == ids[:50]
    assert np.allclose(hits.scores[:, 0], 1.0, atol=1e-5)
    assert np.all(np.diff(hits.scores, axis=1) <= 1e-6)  # best first


def test_matches_exact_search(index, catalog):
    ids, vectors, _ = catalog
    queries = unit(20, seed=1)
    exact = np.asarray(ids)[np.argsort(-(queries @ vectors.T), axis=1)[:, :10]]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(index.search(queries, 10).ids, exact)])
    assert overlap >= 0.95


def test_new_item_is_found_without_rebuild_and_removed_is_gone(index):
    vector = unit(1, seed=7)
    index.add(["new"], vector, [ItemMeta("Paint", 5.0, True)])
    assert index.search(vector, 1).ids[0, 0] == "new"
    assert index.remove(["new"]) == 1
    assert "new" not in index.search(vector, 10).ids[0]
    assert index.remove(["new"]) == 0


def test_update_replaces_vector_and_meta(index, catalog):
    ids, vectors, _ = catalog
    before = len(index)
    index.add([ids[0]], vectors[1:2], [ItemMeta("Paint", 1.0, True)])
    assert len(index) == before
    top = index.search(vectors[1:2], 2).ids[0]
    assert set(top) == {ids[0], ids[1]}
    assert ids[0] in index.search(vectors[1:2], 2, ItemFilter(category="Paint", max_price=1.0)).ids[0]


@pytest.mark.parametrize("k", [1, 10, 40])
def test_filter_returns_k_matching_items_whenever_k_match(index, catalog, k):
    ids, vectors, metas = catalog
    flt = ItemFilter(category="Tools > Saws", min_price=10, max_price=60, available_only=True)
    matching = {i for i, m in zip(ids, metas) if m.category in ("Tools > Saws", "Tools > Saws > Hand")
                and m.price is not None and 10 <= m.price <= 60 and m.available}
    assert len(matching) >= 40  # the fixture has enough matches for every k
    hits = index.search(unit(5, seed=3), k, flt)
    for row in hits.ids:
        assert len([i for i in row if i]) == k
        assert set(row) <= matching  # "Tools > Sawsets" shares the string prefix but is another category


def test_filter_with_fewer_matches_returns_all_of_them(index, catalog):
    ids, _, metas = catalog
    flt = ItemFilter(category="Paint", max_price=8)
    matching = {i for i, m in zip(ids, metas) if m.category == "Paint" and m.price is not None and m.price <= 8}
    hits = index.search(unit(2, seed=4), 50, flt)
    for row in hits.ids:
        assert {i for i in row if i} == matching


def test_save_load_round_trip(index, catalog, tmp_path):
    ids, vectors, _ = catalog
    index.remove([ids[5]])
    index.save(tmp_path / "idx")
    loaded = load_index(tmp_path / "idx")
    assert type(loaded) is type(index) and len(loaded) == len(index)
    queries = unit(10, seed=5)
    assert (loaded.search(queries, 5).ids == index.search(queries, 5).ids).all()
    flt = ItemFilter(category="Tools", min_price=20)
    assert (loaded.search(queries, 5, flt).ids == index.search(queries, 5, flt).ids).all()
    assert sorted(p.name for p in (tmp_path / "idx").iterdir() if p.suffix not in (".npy", ".json")) == []


def test_wrong_shape_is_refused(make):
    from shoplm.errors import IndexMismatch

    with pytest.raises(IndexMismatch):
        make().add(["a", "b"], unit(3))


def test_hnsw_chosen_at_threshold():
    small, large = FaissIndex(DIM, hnsw_min_items=100), FaissIndex(DIM, hnsw_min_items=100)
    small.add([str(i) for i in range(99)], unit(99))
    large.add([str(i) for i in range(100)], unit(100))
    assert not small.is_hnsw and large.is_hnsw


def test_ivf_chosen_at_its_threshold_and_nprobe_is_a_search_time_setting(tmp_path):
    small, large = FaissIndex(DIM, hnsw_min_items=50, ivf_min_items=100), FaissIndex(DIM, ivf_min_items=100)
    small.add([str(i) for i in range(99)], unit(99))
    large.add([str(i) for i in range(100)], unit(100))
    assert small.is_hnsw and not small.is_ivf and large.is_ivf and not large.is_hnsw
    large.save(tmp_path / "idx")
    assert load_index(tmp_path / "idx", nprobe=3).nprobe == 3 and load_index(tmp_path / "idx").nprobe == 32


@pytest.mark.parametrize("spec", [dict(hnsw_min_items=10_000), dict(hnsw_min_items=1), dict(ivf_min_items=1)])
def test_sq8_codes_cost_little_recall_and_scores_stay_exact(spec, tmp_path):
    n = 2_000
    ids, vectors = [f"i{i}" for i in range(n)], unit(n, seed=11)
    index = FaissIndex(DIM, storage="sq8", **spec)
    index.add(ids, vectors)
    assert "SQ8" in index.spec
    queries = unit(50, seed=12)
    exact = np.asarray(ids)[np.argsort(-(queries @ vectors.T), axis=1)[:, :10]]
    hits = index.search(queries, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hits.ids, exact)]) >= 0.9
    rows = index.rows(hits.ids[0])
    assert np.allclose(hits.scores[0], vectors[rows] @ queries[0], atol=1e-6)  # re-scored from float32
    index.remove(ids[:3])  # a tombstone: saved as the trained, empty index and refilled on load
    index.save(tmp_path / "idx")
    loaded = load_index(tmp_path / "idx")
    assert "SQ8" in loaded.spec and len(loaded) == n - 3
    assert (loaded.search(queries, 10).ids == index.search(queries, 10).ids).mean() >= 0.95


def test_sq8_needs_a_sample_so_a_small_first_add_gets_float16():
    index = FaissIndex(DIM, storage="sq8")
    index.add(["a", "b"], unit(2))
    assert index.spec == "SQfp16"


@pytest.mark.parametrize("name", ["memory", "faiss-ivf-sq8"])
def test_one_item_at_a_time_past_the_headroom_keeps_every_row(name):
    index = BACKENDS[name]()
    index.add([f"b{i}" for i in range(300)], unit(300, seed=1))
    before = index.vectors  # a view handed out before the arrays grow stays what it was
    vectors = unit(4_500, seed=2)
    for i in range(4_500):
        index.add([f"n{i}"], vectors[i:i + 1], [ItemMeta("Paint", float(i), True)])
    assert len(index) == 4_800 and before.shape == (300, DIM)
    for i in (0, 4_095, 4_499):
        assert index.search(vectors[i:i + 1], 1).ids[0, 0] == f"n{i}"
        row = index.row(f"n{i}")
        assert index.price[row] == i and np.array_equal(index.vectors[row], vectors[i])


@pytest.mark.parametrize("spec", [dict(hnsw_min_items=10_000), dict(ivf_min_items=1, storage="sq8")])
def test_a_float16_matrix_halves_the_memory_and_keeps_scores_to_1e_3(spec, tmp_path):
    n = 2_000
    ids, vectors = [f"i{i}" for i in range(n)], unit(n, seed=21)
    full, half = FaissIndex(DIM, **spec), FaissIndex(DIM, matrix="float16", **spec)
    full.add(ids, vectors)
    half.add(ids, vectors)
    assert half.vectors.dtype == np.float16 and half.vectors.nbytes * 2 == full.vectors.nbytes
    queries = unit(50, seed=22)
    a, b = full.search(queries, 10), half.search(queries, 10)
    assert np.abs(a.scores - b.scores).max() < 2e-3 and b.scores.dtype == np.float32
    assert np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a.ids, b.ids)]) >= 0.95
    half.save(tmp_path / "idx")  # files are float32 whatever a process holds
    assert np.load(tmp_path / "idx" / "vectors.npy").dtype == np.float32
    assert load_index(tmp_path / "idx", matrix="float16").vectors.dtype == np.float16
    assert load_index(tmp_path / "idx").vectors.dtype == np.float32
    with pytest.raises(IndexMismatch):
        FaissIndex(DIM, matrix="int4")


def test_matvec_scores_a_float16_matrix_in_float32_by_chunks(monkeypatch):
    import shoplm.lm.vectors

    monkeypatch.setattr(shoplm.lm.vectors, "CHUNK_ROWS", 7)  # several chunks and a short last one
    matrix, q = unit(50, seed=3), unit(1, seed=4)[0]
    got = shoplm.lm.vectors.matvec(matrix.astype(np.float16), q)
    assert got.dtype == np.float32 and got.shape == (50,) and np.abs(got - matrix @ q).max() < 2e-3
    assert np.array_equal(shoplm.lm.vectors.matvec(matrix, q), matrix @ q)
