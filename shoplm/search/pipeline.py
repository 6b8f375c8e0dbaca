"""The search pipeline `shoplm search` runs: encoder + vector index + BM25, fused.

    build_indexes(store.items(), settings, out_dir)        # shoplm index build
    pipeline = SearchPipeline.open(out_dir, settings)
    pipeline.search(["cordless drill"], k=10, filter=ItemFilter(max_price=100))  # -> Hits

`out_dir` holds `vectors/` (FaissIndex), `lexical/` (LexicalIndex) and `params.json`
(which model encoded the items, so queries are encoded by the same one). Items added later
with `pipeline.add(items)` are searchable at once, in both indexes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from shoplm.atomic import recover_dir, staged_dir
from shoplm.config import Settings
from shoplm.lm.cache import EmbeddingCache
from shoplm.lm.encoder import RERANKER_DIR, Encoder, model_dir, model_fingerprint
from shoplm.errors import IndexMismatch, IndexNotBuilt
from shoplm.search.fusion import Fusion, fuse, rescore
from shoplm.lm.vectors import rows_at
from shoplm.search.index import FaissIndex, Hits, ItemFilter, ItemMeta, load_index
from shoplm.search.late import TokenStore
from shoplm.search.lexical import LexicalIndex
from shoplm.data.records import Item
from shoplm.progress import Counter, Progress, quiet
from shoplm.search.rerank import Reranker, candidate_features, load_reranker
from shoplm.data.text import item_texts

VERSION = 1
QUERY_MEMO = 256


class Matches(NamedTuple):
    """A query's result set (`SearchPipeline.matches`), over the vector index's rows."""

    mask: np.ndarray  # bool[rows]
    bm25: np.ndarray  # float32[rows], 0 = no term matches
    query: np.ndarray  # float32[dim]: the query's vector, for `cosines`
    vectors: np.ndarray  # the index's matrix (rows, dim) as of this call
    exact: bool  # False: items beyond the dense depth may be as close, the set is a lower bound

    def cosines(self, rows: np.ndarray) -> np.ndarray:
        """float32 cosines of `rows` to the query, computed when asked: a common word matches
        tens of thousands of items at a million, and gathering all their rows for every page
        cost a third of the page (most pages show the re-ranked head only)."""
        return rows_at(self.vectors, rows) @ self.query


def build_indexes(items: Sequence[Item], settings: Settings, out_dir: Path, model: Path | None = None,
                  progress: Progress = quiet, catalog: str | None = None) -> dict:
    """Encode (through the embedding cache) and index every item; returns params.json's content.
    `catalog`: the items' `catalog_key`, when the caller has it already."""
    out_dir = Path(out_dir)
    model = model or settings.encoder_model
    encoder = Encoder.from_settings(settings, model)
    texts = item_texts(items, settings.item_text_template)
    ids = [i.item_id for i in items]
    cache = EmbeddingCache(settings.embedding_cache_dir, encoder.fingerprint, encoder.dim)
    if model and (model_dir(model) / RERANKER_DIR / "ranker.json").is_file():
        # the re-ranker reads the items' token vectors too: one pass fills both stores
        TokenStore.of(cache).get(encoder, texts, cache, progress=Counter(progress, "encode item tokens", len(texts)))
    vectors = cache.encode(encoder, texts, progress=Counter(progress, "encode items", len(texts)))  # (n, dim)
    index = FaissIndex.from_settings(encoder.dim, settings)
    index.add(ids, vectors, [ItemMeta.of(i) for i in items])
    params = {"version": VERSION, "model": str(Path(model).resolve()) if model else None,
              "fingerprint": encoder.fingerprint, "template": settings.item_text_template, "count": len(ids),
              "hnsw": index.is_hnsw, "vectors": index.spec, "catalog": catalog or catalog_key(items, settings, model)}
    with staged_dir(out_dir) as tmp:  # vectors, lexical and params swap in together
        index.save(tmp / "vectors")
        LexicalIndex(ids, texts, language=settings.language).save(tmp / "lexical")
        (tmp / "params.json").write_text(json.dumps(params, indent=2))
    return params


def catalog_key(items: Sequence[Item], settings: Settings, model: Path | None = None) -> str:
    """Hash of everything `build_indexes` reads: the items' ids, texts and filter fields, the
    model's weights, the text template, the HNSW threshold and the BM25 language."""
    digest = hashlib.blake2b(digest_size=16)
    weights = model_fingerprint(model_dir(model or settings.encoder_model))
    digest.update(json.dumps([VERSION, weights, settings.item_text_template, settings.hnsw_min_items,
                              settings.language, settings.vector_storage, settings.ivf_min_items]).encode())
    for item, text in zip(items, item_texts(items, settings.item_text_template)):
        digest.update(json.dumps([item.item_id, text, *ItemMeta.of(item)]).encode())
    return digest.hexdigest()


def ensure_indexes(items: Sequence[Item], settings: Settings, out_dir: Path) -> bool:
    """Builds the indexes into `out_dir` unless it already holds them for exactly these items
    and settings (`catalog_key`); returns whether it built. A restart of an unchanged shop
    then reads its indexes instead of rebuilding them. Call it under `atomic.dir_lock(out_dir)`
    where other processes may build or open the same directory."""
    params, key = Path(out_dir) / "params.json", catalog_key(items, settings)
    if params.is_file() and json.loads(params.read_text()).get("catalog") == key:
        return False
    build_indexes(items, settings, out_dir, catalog=key)
    return True


def _ranker_of(model: str | Path | None, settings: Settings, encoder: Encoder) -> Reranker | None:
    """The re-ranker a fine-tuned model directory carries (`shoplm train search`), with its
    cross-encoder when it was trained with one (on the query encoder's device and precision);
    the bundled model has none, and `SHOPLM_SEARCH_RERANK=false` turns it off."""
    if not (settings.search_rerank and model):
        return None
    return load_reranker(Path(model), device=encoder.device, bf16=encoder.bf16)


class SearchPipeline:
    def __init__(self, encoder: Encoder, vectors: FaissIndex, lexical: LexicalIndex, settings: Settings,
                 template: str, rescorer: Encoder | None = None, ranker: Reranker | None = None):
        self.encoder, self.vectors, self.lexical, self.settings = encoder, vectors, lexical, settings
        self.template, self.rescorer, self.ranker = template, rescorer, ranker
        self._tokens: TokenStore | None = None  # see tokens()
        self._positions_key, self._positions = None, {}
        self.fusion = Fusion(settings.hybrid_method, settings.hybrid_dense_weight, settings.rrf_k)
        self._rows_key, self._rows, self._rows_shifts = None, np.zeros(0, dtype=np.int64), 0
        self._query_memo: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}  # see _encoded()

    @classmethod
    def open(cls, directory: Path, settings: Settings, rescore_model: Path | None = None) -> "SearchPipeline":
        directory = recover_dir(directory)
        if not (directory / "params.json").is_file():
            raise IndexNotBuilt(f"no search index in {directory} (params.json missing); "
                                f"run `shoplm index build --out {directory}` first")
        params = json.loads((directory / "params.json").read_text())
        encoder = Encoder.from_settings(settings, params["model"])
        if encoder.fingerprint.removesuffix("-bf16") != params["fingerprint"].removesuffix("-bf16"):
            raise IndexMismatch(f"{directory} was built with another model or precision than {encoder.path} now is; "
                                "rebuild it with `shoplm index build`")
        rescorer = Encoder.from_settings(settings, rescore_model) if rescore_model else None
        ranker = _ranker_of(params["model"], settings, encoder) if rescorer is None else None
        lexical = LexicalIndex.load(directory / "lexical", settings.language)
        if ranker is not None:
            lexical.terms(())  # tokenize the catalog now, not in the first query
        pipeline = cls(encoder, load_index(directory / "vectors", settings.ivf_nprobe, settings.vector_matrix), lexical, settings, params["template"], rescorer, ranker)
        if ranker is not None:
            pipeline.tokens()  # and read the items' token vectors
        return pipeline

    @classmethod
    def empty(cls, settings: Settings) -> "SearchPipeline":
        """No items yet: everything added later is searchable at once."""
        encoder = Encoder.from_settings(settings)
        lexical = LexicalIndex([], [], language=settings.language)
        return cls(encoder, FaissIndex.from_settings(encoder.dim, settings), lexical, settings,
                   settings.item_text_template, ranker=_ranker_of(settings.encoder_model, settings, encoder))

    def with_model(self, model: Path, progress: Progress = quiet) -> "SearchPipeline":
        """The same catalog searched with another model (an experiment arm's): its own encoder,
        vectors and re-ranker (if the model has one), this pipeline's BM25 index. The vectors
        are encoded through the embedding cache into exactly this pipeline's rows, tombstones
        included, so a mask over rows (filters, facets, result sets) means the same in both.
        Keep it in step by passing every later `add`/`remove` to it as well (the engine does)."""
        encoder = Encoder.from_settings(self.settings, model)
        main, n = self.vectors, len(self.vectors.ids)
        texts = dict(zip(self.lexical.ids, self.lexical.texts))
        live = np.flatnonzero(main.alive)
        vectors = np.zeros((n, encoder.dim), dtype=np.float32)
        if len(live):
            cache = EmbeddingCache(self.settings.embedding_cache_dir, encoder.fingerprint, encoder.dim)
            vectors[live] = cache.encode(encoder, [texts[i] for i in main.ids[live]],
                                         progress=Counter(progress, f"encode items with {Path(model).name}", len(live)))
        # a tombstone keeps its row under a placeholder id (its item may live on in a later row)
        ids = [str(main.ids[r]) if main.alive[r] else f"\x00{r}" for r in range(n)]
        metas = [ItemMeta(main.category[r] or None, None if np.isnan(main.price[r]) else float(main.price[r]),
                          bool(main.available[r])) for r in range(n)]
        index = FaissIndex.from_settings(encoder.dim, self.settings)
        index.add(ids, vectors, metas)
        index.remove([i for i in ids if i.startswith("\x00")])
        sibling = SearchPipeline(encoder, index, self.lexical, self.settings, self.template,
                                 ranker=_ranker_of(model, self.settings, encoder))
        sibling.owns_lexical = False
        return sibling

    owns_lexical = True  # False for a `with_model` sibling: its BM25 index is another pipeline's

    def add(self, items: Sequence[Item]) -> None:
        """Add or update items in both indexes; searchable at once, no rebuild."""
        texts = item_texts(items, self.template)
        ids = [i.item_id for i in items]
        self.vectors.add(ids, self.encoder.encode(texts), [ItemMeta.of(i) for i in items])
        if self.owns_lexical:
            self.lexical.add(ids, texts)

    def remove(self, item_ids: Sequence[str]) -> None:
        self.vectors.remove(item_ids)
        if self.owns_lexical:
            self.lexical.remove(item_ids)

    def query_vector(self, text: str) -> np.ndarray:
        """float32[dim]: the query's vector, remembered for the last `QUERY_MEMO` queries (a
        results page asks for it again for its facets, the next page again for its ranking)."""
        return self._encoded(text)[0]

    def _encoded(self, text: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(the query's vector, its token vectors for the re-ranker's MaxSim, None without a
        re-ranker), remembered for the last `QUERY_MEMO` queries. With a re-ranker both come
        from one forward pass, whichever part of a page asks first: the result set's vector
        alone was a second encoder run per re-ranked page."""
        encoded = self._query_memo.get(text)
        if encoded is None or (encoded[1] is None and self.ranker is not None):  # (a re-ranker set since)
            if len(self._query_memo) >= QUERY_MEMO:
                self._query_memo.pop(next(iter(self._query_memo)), None)
            if self.ranker is not None:
                vectors, tokens = self.encoder.encode_tokens([text])
                encoded = (vectors[0], tokens[0])
            else:
                encoded = (self.encoder.encode_query(text), None)
            self._query_memo[text] = encoded
        return encoded

    def matches(self, query: str, floor: float, depth: int, tokens: Sequence[str] | None = None) -> "Matches":
        """The query's result set over the vector index's rows: items with a BM25 match (of
        `tokens` when given) or among the query's `depth` nearest text vectors at cosine >=
        `floor`. Exact unless the depth-th neighbour is still above the floor (then more
        items may be that close: `exact` is False). Cosines are computed on demand (`Matches.cosines`)."""
        q = self.query_vector(query)
        # Reads take no lock: an item added meanwhile (another thread's POST) may grow the
        # index under this call, so everything is cut to the rows there were at its start.
        alive = self.vectors.alive
        n = len(alive)
        mask, bm25 = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.float32)
        if len(self.lexical):
            scores = self.lexical.token_scores(self.lexical.tokenize([query])[0] if tokens is None else tokens)
            rows = self.lexical_rows()
            if len(rows) != len(scores):  # BM25 changed between the two reads: its current rows
                rows = self.vectors.rows(self.lexical.ids[:len(scores)])
            found = (rows >= 0) & (rows < n)
            bm25[rows[found]] = scores[found]
            mask[rows[found & (scores > 0)]] = True
        exact = True
        if len(self.vectors):
            near = self.vectors.search(q[None], depth)
            close = near.scores[0] >= floor
            rows = self.vectors.rows(near.ids[0][close])
            mask[rows[(rows >= 0) & (rows < n)]] = True
            exact = not (close.all() and len(self.vectors) > depth)
        mask &= alive
        return Matches(mask, bm25, q, self.vectors.vectors[:n], exact)

    def search(self, queries: Sequence[str], k: int = 10, filter: ItemFilter | None = None,
               keep: np.ndarray | None = None, fusion: Fusion | None = None, rerank: bool = True) -> Hits:
        """Fused top-k per query; with a filter (and/or `keep`, bool[rows] of the vector index)
        every result passes it, and k come back whenever k do. `fusion` and `rerank=False`
        replace the settings' fusion and turn the re-ranker off for this call (an experiment arm)."""
        ranker = self.ranker if rerank else None
        depth = max(k, self.settings.hybrid_depth)
        encoded = [self._encoded(text) for text in queries]  # with a re-ranker, token vectors too
        q = np.stack([vector for vector, _ in encoded])  # (n, dim)
        allowed = self.vectors.allowed(filter)  # (rows,)
        keep = allowed if keep is None else allowed & keep
        if (filter is None and keep is allowed) or np.array_equal(keep, self.vectors.alive):
            # no filter, or one that leaves out no live item (say, available_only when all are)
            dense, mask = self.vectors.search(q, depth), None
        else:
            dense = self.vectors.search_rows(q, depth, keep)
            rows = self.lexical_rows()
            inside = (rows >= 0) & (rows < len(keep))  # rows added since `keep` was taken are not in it
            mask = np.where(inside, keep[np.clip(rows, 0, max(len(keep) - 1, 0))], False)  # (n_lexical,)
        if ranker is not None:  # the re-ranker reads the BM25 scores as well as the top-k
            tokens = self.lexical.tokenize(queries)  # once per query: BM25, its correction and the features
            bm25 = np.stack([self.lexical.token_scores(t) for t in tokens])  # (n, n_lexical)
            fixed = [self.lexical.corrected(t) for t in tokens]  # None: nothing to correct
            spelled = [() if f is None else self.lexical.top(self.lexical.token_scores(f)[None], depth, mask).ids[0]
                       for f in fixed]
            fused = self._rerank(queries, tokens, q, dense, self.lexical.top(bm25, depth, mask), spelled, bm25, depth,
                                 [words for _, words in encoded])
        else:
            fused = fuse(dense, self.lexical.search(list(queries), depth, mask), fusion or self.fusion, depth)
        if self.rescorer is not None:
            fused = self._rescore(queries, fused)
        return Hits(fused.ids[:, :k], fused.scores[:, :k])

    def _rerank(self, queries: Sequence[str], tokens: Sequence[Sequence[str]], q: np.ndarray, dense: Hits,
                lexical: Hits, spelled: Sequence[Sequence[str]], bm25_scores: np.ndarray, k: int,
                query_tokens: Sequence[np.ndarray]) -> Hits:
        """The union of the systems' candidates (`dense`, `lexical` and per query the top of
        its spelling-corrected BM25, `spelled`; each already filtered), ordered by the re-ranker
        from exact BM25 (`bm25_scores` (n, n_lexical), unfiltered) and cosine scores, as
        `shoplm eval search` scores hybrid_ft. `tokens`: each query's BM25 tokens; `query_tokens`:
        each query's token vectors (`_encoded`)."""
        if self._positions_key != self.lexical.version:
            self._positions = {item: p for p, item in enumerate(self.lexical.ids)}
            self._positions_key = self.lexical.version
        out = Hits(np.full((len(tokens), k), "", dtype=object), np.full((len(tokens), k), -np.inf, dtype=np.float32))
        for i, query_terms in enumerate(tokens):
            ids = list(dict.fromkeys(x for x in (*dense.ids[i], *lexical.ids[i], *spelled[i]) if x))
            if not ids:
                continue
            # in catalog order, as the evaluation's candidate rows: rank features break ties by it
            ids.sort(key=lambda x: self._positions.get(x, len(self._positions)))
            positions = np.array([self._positions.get(x, -1) for x in ids])  # (m,) -1: not in BM25
            bm25 = np.where(positions >= 0, bm25_scores[i][np.maximum(positions, 0)], 0.0)  # (m,)
            cosine = rows_at(self.vectors.vectors, self.vectors.rows(ids)) @ q[i]  # (m,)
            texts = [self.lexical.texts[p] if p >= 0 else "" for p in positions]
            x = candidate_features(
                self.lexical, queries[i], query_terms, positions, bm25, cosine, self.ranker.cross, self.ranker.cross_depth,
                query_tokens[i],
                self.tokens().get(self.encoder, texts, save=False))
            scores = self.ranker.scores(x)
            order = np.argsort(-scores, kind="stable")[:k]
            out.ids[i, :len(order)] = [ids[j] for j in order]
            out.scores[i, :len(order)] = scores[order]
        return out

    def tokens(self) -> TokenStore:
        """The items' token vectors for the re-ranker's MaxSim features: those `index build` or
        `train search` stored beside the embedding cache; a new item's are encoded when it is
        first a candidate and kept in memory."""
        if self._tokens is None:
            self._tokens = TokenStore.beside(self.settings.embedding_cache_dir, self.encoder)
        return self._tokens

    def lexical_rows(self) -> np.ndarray:
        """int64[n_lexical]: the vector-index row of each lexical position (-1 if none); cached
        until either index changes (rows only grow, so their count keys the vector side). After
        items were only added, just their rows are looked up: the whole map is a second at a
        million items, and the first search after every POST /v1/items would wait for it."""
        key = (self.lexical.version, len(self.vectors.ids))
        if self._rows_key != key:
            ids, old = self.lexical.ids, self._rows
            if self._rows_key is not None and self._rows_shifts == self.lexical.shifts and len(old) <= len(ids):
                rows = np.concatenate([old, self.vectors.rows(ids[len(old):])])
                missing = np.flatnonzero(old < 0)  # indexed in BM25 before their vectors came (an arm's sibling)
                if len(missing):
                    rows[missing] = self.vectors.rows([ids[i] for i in missing])
                self._rows = rows
            else:
                self._rows = self.vectors.rows(ids)
            self._rows_key, self._rows_shifts = key, self.lexical.shifts
        return self._rows

    def _rescore(self, queries: Sequence[str], fused: Hits) -> Hits:
        texts = dict(zip(self.lexical.ids, self.lexical.texts))
        q = np.stack([self.rescorer.encode_query(text) for text in queries])  # (n, dim)
        return rescore(fused, q, lambda ids: self.rescorer.encode([texts[i] for i in ids]))
