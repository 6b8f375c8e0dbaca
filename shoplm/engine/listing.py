"""Result pages: a search or a browse page with its total, facets, sort order and page.

    page = engine.search_page(PageRequest(query="drill", clauses=parse_filters(["brand:DeWalt"], schema),
                                          facets=("brand", "price"), sort="price_asc", offset=20, limit=20))
    page.hits, page.total, page.facets, page.corrected_query

**The result set** of a query is every servable item with a BM25 match (any query term in
its text) or among the query's `search_dense_depth` nearest text vectors at cosine >=
`search_dense_floor`, narrowed by the filters. `total` is its size (variants collapsed when
grouping): exact, unless even the last of those neighbours is above the floor
(`total_exact` false: a lower bound). **Relevance
order** is the engine's search ranking (fused BM25 + dense, re-ranked by the model and the
visitor's history; its first `hybrid_depth` results), then the rest of the set by cosine.
Browse (no query) ranks every item passing the filters by the visitor's personalised
popularity. Any other sort orders the whole set by its key (items without one last), the
relevance rank breaking ties; pages are cut from that one order, so they cover the set
exactly once. Facet counts are over the whole set, each leaving out its own field's
filters (disjunctive). Merchandising rules (shoplm/engine/rules.py) take hidden items out of
the set and pinned ones into it before anything is counted, then pin, boost and bury in the
relevance order, after grouping and before the page is cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol, Sequence

import numpy as np

from shoplm.config import Settings
from shoplm.engine.catalog import LiveCatalog
from shoplm.data.text import normalise
from shoplm.engine.pick import Rec
from shoplm.engine.rules import Merchandising, Plan, category_of
from shoplm.search.facets import Clause, FacetColumns
from shoplm.search.fusion import Fusion
from shoplm.search.index import ItemFilter
from shoplm.search.pipeline import SearchPipeline
from shoplm.search.spelling import Speller

Sort = Literal["relevance", "price_asc", "price_desc", "newest", "popular"]
SORTS: tuple[str, ...] = ("relevance", "price_asc", "price_desc", "newest", "popular")


class Ranker(Protocol):
    """What a page is computed from: the engine (shoplm/engine/engine.py)."""

    settings: Settings
    catalog: LiveCatalog
    search_pipeline: SearchPipeline
    merchandising: Merchandising

    @property
    def popularity(self) -> np.ndarray: ...

    def facet_columns(self) -> FacetColumns: ...

    def speller(self) -> Speller: ...

    def search(self, query: str, user_id: str | None = None, session_id: str | None = None,
               filter: ItemFilter | None = None, k: int = 10, keep: np.ndarray | None = None,
               fusion: Fusion | None = None, rerank: bool = True, pipeline: SearchPipeline | None = None) -> list[Rec]: ...

    def browse_scores(self, user_id: str | None, session_id: str | None) -> np.ndarray: ...

    def reasons_for(self, rows: Sequence[int], user_id: str | None, session_id: str | None) -> list[str]: ...


@dataclass(frozen=True)
class PageRequest:
    query: str = ""
    user_id: str | None = None
    session_id: str | None = None
    clauses: tuple[Clause, ...] = ()
    filter: ItemFilter | None = None  # category / min_price / max_price / available_only parameters
    facets: tuple[str, ...] = ()
    sort: Sort = "relevance"
    offset: int = 0
    limit: int = 10
    group: bool = True  # one hit per group_id (its best-ranked variant)
    correct: bool = True  # False: search the query as typed, even with a word no item has
    fusion: Fusion | None = None  # an experiment arm's fusion instead of the settings'
    rerank: bool = True  # False: an experiment arm without the fine-tuned model's re-ranker
    rules: bool = True  # False: no merchandising rule in force (the dashboard's preview; synonyms still act)
    pipeline: SearchPipeline | None = None  # an experiment arm's search model (Engine.arm_search) instead


@dataclass
class Page:
    hits: list[Rec]
    total: int
    facets: dict[str, dict[str, int]] = field(default_factory=dict)
    variants: dict[str, int] = field(default_factory=dict)  # item_id -> items of its group in the set
    corrected_query: str | None = None
    total_exact: bool = True


def search_page(engine: Ranker, request: PageRequest) -> Page:
    catalog, columns = engine.catalog, engine.facet_columns()
    n = columns.n_rows
    base = catalog.servable()[:n].copy()
    if request.filter is not None:
        index = catalog.index
        base &= request.filter.mask(index.category[:n], index.price[:n], index.available[:n])
    filtered = columns.mask(request.clauses)  # bool[rows]
    plan = Plan() if not request.rules else engine.merchandising.plan(
        "search" if request.query else "browse", catalog, normalise(request.query) or None,
        category_of(request.filter and request.filter.category, request.clauses),
        moves=request.sort == "relevance")  # shoplm/engine/rules.py
    base &= plan.visible(n)  # a hidden item leaves the set: shown nowhere, counted nowhere
    eligible = base.copy()
    corrected, exact = None, True
    if request.query:
        query, corrected, matches = _spelled(engine, request.query, request.correct, request.pipeline)
        # The ranking is the engine's, under the filters only (unfiltered: the plain ANN path),
        # and only then narrowed to the result set: so with no filter page 1 is exactly
        # `engine.search`'s list, less any item that matches the query neither way. Always the
        # same depth, whatever the page: every page is cut from one ranking.
        narrowed = request.filter is not None or bool(request.clauses)
        head = engine.search(query, user_id=request.user_id, session_id=request.session_id,
                             keep=base & filtered if narrowed else None, k=engine.settings.hybrid_depth,
                             fusion=request.fusion, rerank=request.rerank, pipeline=request.pipeline)
        base &= matches.mask[:n]
        base |= eligible & plan.pinned(n)  # an item pinned for the query joins its set, if the filters let it
        exact = matches.exact
        keep = base & filtered
        head_rows = catalog.rows([r.item_id for r in head])
        # The rest of the set is ordered by cosine only where that order can reach the page:
        # not when nothing re-sorts the set and the page ends inside the head, rule moves
        # included (a pin or bury shifts the rows by one at most, a boost by its amount)
        shifts = sum((rule.amount or 0) if rule.action == "boost" else 1 for rule, _ in plan.moves)
        reach = request.offset + request.limit + shifts if request.sort == "relevance" else None
        order, scores = _relevance(head, head_rows, keep, matches.cosines, reach,
                                   columns.group_codes() if request.group else None)
    else:
        keep = base & filtered
        scores = engine.browse_scores(request.user_id, request.session_id)[:n]
        rows = np.flatnonzero(keep)
        order = rows[np.argsort(-scores[rows], kind="stable")]
        head = None
    if request.sort != "relevance":
        order = _sorted(engine, request.sort, order)
    variants: dict[int, int] = {}
    if request.group:
        codes = columns.group_codes()
        order, variants = _grouped(codes, plan.lead(order, codes))
    order, placed = plan.arrange(order)  # pins, boosts, buries: {row: "pinned by rule 3: ..."}
    window = order[request.offset:request.offset + request.limit]
    reasons = {r.item_id: r.reason for r in head} if head else {}
    hits = []
    browse_reasons = iter(engine.reasons_for(window, request.user_id, request.session_id)) if head is None else None
    for row in window:
        item_id = catalog.id_at(int(row))
        reason = next(browse_reasons) if browse_reasons is not None else reasons.get(item_id, "matches your query")
        hits.append(Rec(item_id, float(scores[row]), placed.get(int(row), reason)))
    facets = columns.facets(request.facets, base, request.clauses, engine.settings.search_facet_values,
                            grouped=request.group)
    shown = set(window.tolist())
    return Page(hits, len(order), facets, {catalog.id_at(r): v for r, v in variants.items() if r in shown}, corrected,
                exact)


def _spelled(engine: Ranker, query: str, correct: bool = True, pipeline: SearchPipeline | None = None):
    """(query to search, the correction shown or None, its matches): a correction is used when
    its result set is larger than the query's as typed (a word no item has matches nothing).
    The set is `pipeline`'s (an experiment arm's search model) when given."""
    pipeline = pipeline or engine.search_pipeline
    floor, depth = engine.settings.search_dense_floor, engine.settings.search_dense_depth
    matches = pipeline.matches(query, floor, depth)
    fixed = engine.speller().correct(query) if correct else None
    if fixed is None:
        return query, None, matches
    fixed_matches = pipeline.matches(fixed, floor, depth)
    if fixed_matches.mask.sum() > matches.mask.sum():
        return fixed, fixed, fixed_matches
    return query, None, matches


def _relevance(head: Sequence[Rec], head_rows: np.ndarray, keep: np.ndarray,
               cosines: Callable[[np.ndarray], np.ndarray], reach: int | None = None,
               groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows in relevance order, float64[rows] scores): the engine's ranking of the set's
    first candidates, then the rest of the set by cosine (`cosines(rows)`), scored below the
    last of them. When the caller reads no further than `reach` rows (of variant groups when
    `groups`, the rows' group codes, is given) and the head holds that many, the rest is left
    in row order, scored just below the head: no cosine is computed. (A group's place is its
    best variant's, so a row below the head never moves a group the head already holds.)"""
    scores = np.full(len(keep), -np.inf)
    # a row indexed after this page's columns were read (an item another worker just added) is
    # not in this page's set: it shows from the next request on
    ok = (head_rows >= 0) & (head_rows < len(keep))
    ok[ok] = keep[head_rows[ok]]
    rows = head_rows[ok]
    scores[rows] = np.asarray([r.score for r in head], dtype=np.float64)[ok] if len(head) else []
    rest = keep.copy()
    rest[rows] = False
    tail = np.flatnonzero(rest)
    lowest = scores[rows].min() if len(rows) else 0.0
    held = len(rows) if groups is None else _count_groups(groups[rows])
    if reach is not None and reach <= held:
        scores[tail] = lowest - 3.0
    else:
        cosine = cosines(tail)
        by = np.argsort(-cosine, kind="stable")
        tail = tail[by]
        scores[tail] = lowest - 2.0 + cosine[by]  # cosine in [-1, 1]: below every head score, in cosine order
    return np.concatenate([rows, tail]).astype(np.int64), scores


def _count_groups(codes: np.ndarray) -> int:
    """Entries of a grouped list made from rows with these group codes (-1: a row of its own)."""
    return int((codes < 0).sum() + len(np.unique(codes[codes >= 0])))


def _sorted(engine: Ranker, sort: str, order: np.ndarray) -> np.ndarray:
    """`order` (relevance order) re-sorted by the key of `sort`; ties keep relevance order,
    rows without a key go last."""
    columns = engine.facet_columns()
    if sort in ("price_asc", "price_desc"):
        key = columns.numbers["price"][order]
        key = key if sort == "price_asc" else -key
    elif sort == "newest":
        key = -columns.numbers["created_at"][order]
    else:  # popular
        key = -engine.popularity[order]
    missing = np.isnan(key)
    rank = np.arange(len(order))
    return order[np.lexsort((rank, np.where(missing, 0.0, key), missing))]


def _grouped(codes: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """`order` with only the first row of each group (code >= 0; -1 = no group); and for each
    kept row of a group of several, how many rows of the group were in `order`."""
    group = codes[order]
    grouped = group >= 0
    if not grouped.any():
        return order, {}
    _, first, counts = np.unique(group[grouped], return_index=True, return_counts=True)
    positions = np.flatnonzero(grouped)
    keep = ~grouped
    keep[positions[first]] = True
    variants = {int(order[positions[f]]): int(c) for f, c in zip(first, counts) if c > 1}
    return order[keep], variants
