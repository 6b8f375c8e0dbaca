"""Vector indexes: one small protocol, `MemoryIndex` (numpy, the test double) and `FaissIndex`.

    index = FaissIndex(dim=384, hnsw_min_items=50_000)
    index.add(ids, vectors, metas)                 # add or update; searchable at once
    index.search(queries, k=10, filter=ItemFilter(category="Tools", max_price=50))  # -> Hits

Vectors are L2-normalised by the caller, so inner product = cosine. Removing an item
leaves a tombstone (HNSW graphs cannot delete); updating = tombstone + append. A filter
narrows the catalog to a subset and searches it exactly (one matmul over the subset,
~2 ms for 54k x 384), which guarantees k results whenever at least k items match; the
approximate graph is used for unfiltered search only.

`save(dir)` writes `ids.npy`, `vectors.npy`, `category.npy`, `price.npy`, `available.npy`,
`params.json` and, for HNSW, the serialised graph as `faiss.npy` (a uint8 array), each
through a temp file + fsync + os.replace. No pickle.

`matrix` is the dtype of the exact-scoring matrix `vectors` held in memory (re-scoring,
cosines of a result set, recommendation's text scores, similar items): float32, or float16
at half the memory (0.77 GB instead of 1.54 GB at a million items; cosines to about 1e-3).
Saved files are float32 either way. `matvec` scores a whole matrix in float32 by chunks, so
a float16 matrix is never copied whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple, Protocol, Sequence

import numpy as np

from shoplm.atomic import recover_dir, save_array, staged_dir
from shoplm.errors import IndexMismatch, IndexNotBuilt
from shoplm.data.records import CATEGORY_SEPARATOR, Item
from shoplm.lm.vectors import CHUNK_ROWS, MATRIX, rows_at

VERSION = 1


class Hits(NamedTuple):
    ids: np.ndarray  # object[n, k] item ids, "" where fewer than k items exist
    scores: np.ndarray  # float32[n, k], best first, -inf for padding


class ItemMeta(NamedTuple):
    category: str | None = None
    price: float | None = None
    available: bool = True

    @classmethod
    def of(cls, item: Item) -> "ItemMeta":
        return cls(item.category, item.price, item.available)


@dataclass(frozen=True)
class ItemFilter:
    """Category path prefix ("Tools > Saws" matches "Tools > Saws > Hand", not "Tools > Sawsets"),
    price range in the catalog's currency (items without a price never pass a price bound),
    and availability."""

    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    available_only: bool = False

    def mask(self, category: np.ndarray, price: np.ndarray, available: np.ndarray) -> np.ndarray:
        """bool[n] over the rows of the three column arrays."""
        keep = np.ones(len(category), dtype=bool)
        if self.category:
            prefix = CATEGORY_SEPARATOR.join(p.strip() for p in self.category.split(">") if p.strip())
            cats = category.astype(str)
            keep &= (cats == prefix) | np.char.startswith(cats, prefix + CATEGORY_SEPARATOR)
        if self.min_price is not None:
            keep &= price >= self.min_price  # NaN compares False
        if self.max_price is not None:
            keep &= price <= self.max_price
        if self.available_only:
            keep &= available
        return keep


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> Hits:
    """Best k columns per row of float32[n, m] scores (-inf = excluded), via argpartition."""
    n, m = scores.shape
    kk = min(k, m)
    out_ids = np.full((n, k), "", dtype=object)
    out_scores = np.full((n, k), -np.inf, dtype=np.float32)
    if kk == 0:
        return Hits(out_ids, out_scores)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]  # (n, kk), unordered
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    cols = np.take_along_axis(part, order, axis=1)  # (n, kk), best first
    best = np.take_along_axis(part_scores, order, axis=1)
    found = np.isfinite(best)
    out_ids[:, :kk] = np.where(found, ids[cols], "")
    out_scores[:, :kk] = np.where(found, best, -np.inf)
    return Hits(out_ids, out_scores)


class VectorIndex(Protocol):
    dim: int

    def __len__(self) -> int: ...

    def add(self, ids: Sequence[str], vectors: np.ndarray, metas: Sequence[ItemMeta] | None = None) -> None:
        """Add items, or update those whose id is already indexed; searchable at once."""

    def remove(self, ids: Sequence[str]) -> int:
        """Remove items by id; returns how many were indexed."""

    def search(self, queries: np.ndarray, k: int, filter: ItemFilter | None = None) -> Hits:
        """float32[n, dim] queries -> the k best items each."""

    def row(self, item_id: str) -> int | None:
        """The row of an indexed item (its entry in `ids`, `vectors`, ...), None if not indexed."""

    def rows(self, ids: Iterable[str]) -> np.ndarray:
        """int64[len(ids)]: the row of each id, -1 where it is not indexed."""

    def save(self, directory: Path) -> None: ...


class MemoryIndex:
    """Exact search with numpy; the reference the FAISS backend is tested against."""

    kind = "memory"

    ARRAYS = ("ids", "vectors", "category", "price", "available", "alive")

    def __init__(self, dim: int, matrix: str = "float32"):
        if matrix not in MATRIX:
            raise IndexMismatch(f"vector matrix {matrix!r}: expected one of {', '.join(MATRIX)}")
        self.dim, self.matrix = dim, matrix
        self._n = 0  # rows in use; the arrays below have room for more (`_reserve`)
        self._ids = np.zeros(0, dtype=object)  # (rows,), tombstoned rows keep their id
        self._vectors = np.zeros((0, dim), dtype=MATRIX[matrix])  # (rows, dim)
        self._category = np.zeros(0, dtype=object)
        self._price = np.zeros(0, dtype=np.float64)  # NaN = no price
        self._available = np.zeros(0, dtype=bool)
        self._alive = np.zeros(0, dtype=bool)
        self._row: dict[str, int] = {}

    # The arrays as callers see them: views of the rows in use (writes go through).
    ids = property(lambda self: self._ids[:self._n])
    vectors = property(lambda self: self._vectors[:self._n])
    category = property(lambda self: self._category[:self._n])
    price = property(lambda self: self._price[:self._n])
    available = property(lambda self: self._available[:self._n])
    alive = property(lambda self: self._alive[:self._n])

    def _reserve(self, extra: int) -> None:
        """Room for `extra` more rows. Concatenating on every write copied the whole vector
        matrix per added item (1.5 GB at a million items); the arrays now grow by
        `HEADROOM` of their size at once (at least 4,096 rows), and a bulk first add takes
        that headroom too, so a live catalog's writes copy nothing until it has grown by 5%.
        Views handed out earlier keep the old arrays alive and stay valid (numpy, no realloc)."""
        need = self._n + extra
        if need <= len(self._ids):
            return
        capacity = need + max(4_096, int(need * self.HEADROOM))
        for name in self.ARRAYS:
            old = getattr(self, "_" + name)
            new = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            new[:self._n] = old[:self._n]
            setattr(self, "_" + name, new)

    HEADROOM = 0.05

    def __len__(self) -> int:
        return len(self._row)

    def row(self, item_id: str) -> int | None:
        return self._row.get(item_id)

    def rows(self, ids: Iterable[str]) -> np.ndarray:
        get = self._row.get
        return np.fromiter((get(i, -1) for i in ids), dtype=np.int64)

    def add(self, ids: Sequence[str], vectors: np.ndarray, metas: Sequence[ItemMeta] | None = None) -> None:
        metas = list(metas) if metas is not None else [ItemMeta()] * len(ids)
        self._append(ids, vectors, [m.category or "" for m in metas],
                     [np.nan if m.price is None else m.price for m in metas], [m.available for m in metas])

    def _append(self, ids: Sequence[str], vectors: np.ndarray, category, price, available) -> None:
        """`add` by columns (what `load_index` reads): no ItemMeta per row."""
        vectors = np.asarray(vectors)
        if vectors.dtype != np.float32:
            vectors = vectors.astype(np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise IndexMismatch(f"got vectors of shape {vectors.shape} for {len(ids)} ids; expected ({len(ids)}, {self.dim})")
        if len(set(ids)) != len(ids):
            raise IndexMismatch("the same item id appears twice in one add(); pass each item once")
        self.remove([i for i in ids if i in self._row])
        start, end = self._n, self._n + len(ids)
        self._reserve(len(ids))
        self._ids[start:end] = list(ids)
        self._vectors[start:end] = vectors  # cast to the matrix's dtype
        self._category[start:end] = category
        self._price[start:end] = price
        self._available[start:end] = available
        self._alive[start:end] = True
        self._n = end
        self._row.update((item, start + i) for i, item in enumerate(ids))
        self._added(start, vectors)

    def _added(self, start: int, vectors: np.ndarray) -> None:
        """Hook for backends that keep a structure of their own."""

    def remove(self, ids: Sequence[str]) -> int:
        rows = [self._row.pop(i) for i in ids if i in self._row]
        self.alive[rows] = False
        return len(rows)

    def search(self, queries: np.ndarray, k: int, filter: ItemFilter | None = None) -> Hits:
        return self.search_rows(queries, k, self.allowed(filter))

    def allowed(self, filter: ItemFilter | None) -> np.ndarray:
        """bool[rows]: live rows that pass `filter`."""
        return self.alive if filter is None else self.alive & filter.mask(self.category, self.price, self.available)

    def search_rows(self, queries: np.ndarray, k: int, keep: np.ndarray) -> Hits:
        """Top-k among the rows where `keep` (bool[rows], from `allowed`) is true."""
        return self.exact(queries, k, keep)

    def exact(self, queries: np.ndarray, k: int, mask: np.ndarray) -> Hits:
        rows = np.flatnonzero(mask)  # (m,)
        scores = np.asarray(queries, dtype=np.float32) @ rows_at(self.vectors, rows).T  # (n, m)
        return top_k(scores, self.ids[rows], k)

    def save(self, directory: Path) -> None:
        """Live rows only, so a saved index never carries tombstones; written whole and swapped
        in (`shoplm.atomic.staged_dir`), so a crash leaves the old index or the new one."""
        live = self.alive
        arrays = {"ids": self.ids[live].astype(str), "vectors": rows_at(self.vectors, live),
                  "category": self.category[live].astype(str), "price": self.price[live],
                  "available": self.available[live], **self._extra_arrays()}
        params = {"version": VERSION, "kind": self.kind, "dim": self.dim, "count": int(live.sum()), **self._params()}
        with staged_dir(directory) as tmp:
            for name, array in arrays.items():
                save_array(tmp / f"{name}.npy", array)
            (tmp / "params.json").write_text(json.dumps(params, indent=2))

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _params(self) -> dict:
        return {}


STORAGE = {"float32": "", "float16": "SQfp16", "sq8": "SQ8"}  # SHOPLM_VECTOR_STORAGE -> FAISS codes
SQ8_MIN_TRAIN = 1_000  # a first add smaller than this gets float16 codes: 8-bit ranges need a sample
TRAIN_SAMPLE = 100_000  # vectors an IVF or 8-bit index is trained on at least (a seeded sample of the first add)


def ivf_lists(n: int) -> int:
    """Inverted lists of an IVF index over `n` vectors: 4 sqrt(n) (FAISS's guidelines give
    4-16 sqrt(n)), and at most n / 39 so that k-means has the 39 points per centroid it asks for."""
    return max(1, min(int(4 * np.sqrt(n)), n // 39))


class FaissIndex(MemoryIndex):
    """FAISS underneath, its kind chosen by the catalog size at build time: exact inner product
    below `hnsw_min_items` items, HNSW (Malkov & Yashunin, 2018) from there, and an inverted
    file (IVF, `ivf_lists` k-means lists, `nprobe` of them searched) at `ivf_min_items` and
    above, where an HNSW graph takes too long to build (a million items on 2 cores: tens of
    minutes against about two for IVF). M=32 and efSearch=128 keep HNSW's recall@10 above 0.98
    on 50k MiniLM vectors; efConstruction=80 keeps a 54k build under a minute on 2 cores.

    `storage` is what FAISS keeps per vector: "float32" (4 bytes a dimension), "float16" or
    "sq8" (FAISS scalar quantisation to 2 or 1 bytes; 8-bit ranges are trained on the first
    add). The float32 matrix `vectors` stays (the engine scores with it), so a quantised
    index returns exact scores: it fetches `REFINE` x k candidates and re-scores them from
    `vectors`. What it saves is FAISS's own copy: 1.5 GB -> 384 MB at a million items."""

    kind = "faiss"
    HNSW_FILTER_SHARE = 0.2
    REFINE = 2  # candidates per result a quantised index fetches for the exact re-scoring

    def __init__(self, dim: int, hnsw_min_items: int = 50_000, m: int = 32, ef_search: int = 128,
                 ef_construction: int = 80, storage: str = "float32", ivf_min_items: int = 500_000,
                 nprobe: int = 32, matrix: str = "float32"):
        super().__init__(dim, matrix)
        if storage not in STORAGE:
            raise IndexMismatch(f"vector storage {storage!r}: expected one of {', '.join(STORAGE)}")
        self.hnsw_min_items, self.m, self.ef_search, self.ef_construction = hnsw_min_items, m, ef_search, ef_construction
        self.storage, self.ivf_min_items, self.nprobe = storage, ivf_min_items, nprobe
        self.spec = ""  # the index_factory string built, e.g. "IVF4000,SQ8"
        self.faiss = None  # built on the first add, so its kind can depend on the catalog size

    @classmethod
    def from_settings(cls, dim: int, settings) -> "FaissIndex":
        return cls(dim, settings.hnsw_min_items, storage=settings.vector_storage,
                   ivf_min_items=settings.ivf_min_items, nprobe=settings.ivf_nprobe, matrix=settings.vector_matrix)

    @property
    def is_hnsw(self) -> bool:
        import faiss

        return isinstance(self.faiss, faiss.IndexHNSW)

    @property
    def is_ivf(self) -> bool:
        import faiss

        return isinstance(self.faiss, faiss.IndexIVF)

    @property
    def quantised(self) -> bool:
        return "SQ" in self.spec

    def _build(self, vectors: np.ndarray) -> None:
        import faiss

        n = len(vectors)
        codes = STORAGE[self.storage]
        if codes == "SQ8" and n < SQ8_MIN_TRAIN:
            codes = "SQfp16"
        if n >= self.ivf_min_items:
            self.spec = f"IVF{ivf_lists(n)},{codes or 'Flat'}"
        elif n >= self.hnsw_min_items:
            self.spec = f"HNSW{self.m}" + (f"_{codes}" if codes else "")
        else:
            self.spec = codes or "Flat"
        index = self.faiss = faiss.index_factory(self.dim, self.spec, faiss.METRIC_INNER_PRODUCT)
        if self.is_hnsw:
            index.hnsw.efConstruction = self.ef_construction
            index.hnsw.efSearch = self.ef_search
        if not index.is_trained:
            sample, size = vectors, max(TRAIN_SAMPLE, 40 * getattr(index, "nlist", 0))  # k-means asks 39 per list
            if n > size:
                sample = vectors[np.sort(np.random.default_rng(0).choice(n, size, replace=False))]
            try:
                index.train(np.ascontiguousarray(sample, dtype=np.float32))
            except BaseException:
                self.faiss = None  # the next add builds again
                raise

    def _added(self, start: int, vectors: np.ndarray) -> None:
        if self.faiss is None:
            self._build(vectors)
        if self.faiss.ntotal == start + len(vectors):
            return  # rows restored next to an index loaded from disk
        assert self.faiss.ntotal == start, "faiss rows must mirror the index rows"
        for at in range(0, len(vectors), CHUNK_ROWS):  # row numbers are faiss ids; chunks: `vectors` may be a memory map
            self.faiss.add(np.ascontiguousarray(vectors[at:at + CHUNK_ROWS], dtype=np.float32))

    def search(self, queries: np.ndarray, k: int, filter: ItemFilter | None = None) -> Hits:
        """Top-k live rows per query (under `filter`: k whenever k rows match). The graph search
        takes a broad filter as a bitmap of allowed rows; a narrow one (under `HNSW_FILTER_SHARE`
        of the catalog) would strand the walk among rejected rows, so that small subset is
        scanned exactly, as is any query the bitmap search leaves short of k."""
        if filter is None and self.faiss is not None:  # no O(rows) work: at 1M rows it doubled a query's latency
            queries = np.ascontiguousarray(queries, dtype=np.float32)
            return self._faiss_search(queries, k, None if len(self) == self._n else self.alive)
        return super().search(queries, k, filter)

    def search_rows(self, queries: np.ndarray, k: int, keep: np.ndarray) -> Hits:
        if self.faiss is None:
            return super().search_rows(queries, k, keep)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n_keep = int(keep.sum())
        approximate = self.is_hnsw or self.is_ivf
        if approximate and n_keep < self.HNSW_FILTER_SHARE * len(self):
            return self.exact(queries, k, keep)
        hits = self._faiss_search(queries, k, None if n_keep == len(keep) else keep)
        if approximate:
            short = np.flatnonzero((hits.ids != "").sum(axis=1) < min(k, n_keep))
            if len(short):
                exact = self.exact(queries[short], k, keep)
                hits.ids[short], hits.scores[short] = exact.ids, exact.scores
        return hits

    def _faiss_search(self, queries: np.ndarray, k: int, keep: np.ndarray | None) -> Hits:
        import faiss

        fetch = k * self.REFINE if self.quantised else k
        selector, bitmap = None, None
        if keep is not None:
            bitmap = np.packbits(keep, bitorder="little")  # a local: it must outlive the search call
            selector = faiss.IDSelectorBitmap(len(keep), faiss.swig_ptr(bitmap))
        if self.is_hnsw:
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.ef_search, fetch))
        elif self.is_ivf:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=self.nprobe)
        else:
            params = None if selector is None else faiss.SearchParameters(sel=selector)
        scores, rows = self.faiss.search(queries, fetch, params=params)  # (n, fetch) each, row -1 = none
        if self.quantised:  # exact scores from the float32 rows, then the best k of them
            scores = np.einsum("nkd,nd->nk", rows_at(self._vectors, np.maximum(rows, 0)), queries)
            scores = np.where(rows >= 0, scores, -np.inf).astype(np.float32)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            scores, rows = np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)
        found = rows >= 0
        ids = np.where(found, self._ids[np.maximum(rows, 0)], "")
        return Hits(ids.astype(object), np.where(found, scores, -np.inf).astype(np.float32))

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        """The whole FAISS index when it has no tombstones (an HNSW graph or IVF lists take
        minutes to rebuild); with tombstones, an index that needs training (IVF, 8-bit codes)
        is saved trained and empty, and refilled from vectors.npy on load; the others are
        rebuilt from vectors.npy."""
        import faiss

        if len(self) == self._n and (self.is_hnsw or self.is_ivf):
            return {"faiss": faiss.serialize_index(self.faiss)}
        if "SQ8" in self.spec or self.is_ivf:
            shell = faiss.clone_index(self.faiss)
            shell.reset()
            return {"faiss": faiss.serialize_index(shell)}
        return {}

    def _params(self) -> dict:
        return {"hnsw": self.is_hnsw, "ivf": self.is_ivf, "spec": self.spec, "storage": self.storage,
                "hnsw_min_items": self.hnsw_min_items, "ivf_min_items": self.ivf_min_items, "nprobe": self.nprobe,
                "m": self.m, "ef_search": self.ef_search, "ef_construction": self.ef_construction}


def load_index(directory: Path, nprobe: int | None = None, matrix: str = "float32") -> MemoryIndex:
    """A `MemoryIndex` or `FaissIndex` from what `save` wrote; `nprobe` (SHOPLM_IVF_NPROBE) is a
    search-time setting of an IVF index, so it may differ from the build's, and so is `matrix`
    (SHOPLM_VECTOR_MATRIX: the files are float32 whatever a process holds)."""
    directory = recover_dir(directory)
    if not (directory / "params.json").is_file():
        raise IndexNotBuilt(f"no vector index in {directory} (params.json missing); run `shoplm index build` first")
    params = json.loads((directory / "params.json").read_text())
    if params.get("version") != VERSION:
        raise IndexMismatch(f"{directory} holds index version {params.get('version')}, this shoplm reads {VERSION}; "
                            "rebuild it with `shoplm index build`")
    # vectors through a memory map: copied once into the index's own array, never held twice
    arrays = {n: np.load(directory / f"{n}.npy", allow_pickle=False, mmap_mode="r" if n == "vectors" else None)
              for n in ("ids", "vectors", "category", "price", "available")}
    names, codes = np.unique(arrays["category"], return_inverse=True)  # one str object per distinct category
    columns = (arrays["ids"].tolist(), arrays["vectors"], names.astype(object)[codes], arrays["price"],
               arrays["available"])
    if params["kind"] == "memory":
        index = MemoryIndex(params["dim"], matrix)
        index._append(*columns)
        return index
    index = FaissIndex(params["dim"], params["hnsw_min_items"], params["m"], params["ef_search"],
                       params["ef_construction"], params.get("storage", "float32"),
                       params.get("ivf_min_items", 500_000), nprobe or params.get("nprobe", 32), matrix)
    if (directory / "faiss.npy").is_file():
        import faiss

        index.faiss = faiss.deserialize_index(np.load(directory / "faiss.npy", allow_pickle=False))
        index.spec = params.get("spec", "")
        if index.is_hnsw:
            index.faiss.hnsw.efSearch = index.ef_search
    index._append(*columns)
    return index
