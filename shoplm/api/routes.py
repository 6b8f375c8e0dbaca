"""Routes: parse, call one engine method, return a schema."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import Field
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse

from shoplm.api.deps import AdminAccess, EngineDep, ReadAccess, require_admin
from shoplm.api.problems import Unprocessable, error_response
from shoplm.api.schemas import (
    PRINTABLE, Ad, AdList, AdRequest, Erased, ErrorBody, EventBatch, Hit, HitList, ItemBase, ItemBatch, ItemPublic,
    PageHit, ProfilePublic, RankedList, RankRequest, Reloaded, ReloadRequest, SearchPage, Suggestion, SuggestList, WriteResult,
)
from shoplm.engine.engine import Engine, Rec
from shoplm.engine.experiments import arm_fusion
from shoplm.engine.listing import Page, PageRequest, Sort
from shoplm.engine.lists import ListName
from shoplm.search.facets import FilterError, parse_filters
from shoplm.search.highlight import highlight
from shoplm.errors import InvalidRecords, NotFound
from shoplm.search.index import ItemFilter
from shoplm.data.records import DISPLAY_FIELDS, Event, Item, parse_event, parse_item

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 413, 422, 429, 503)
}
router = APIRouter(prefix="/v1", responses=ERRORS)
health = APIRouter()


def _to_items(payloads: list[dict[str, Any]], kind: str = "items") -> list[Item]:
    parsed, problems = [], {}
    for index, payload in enumerate(payloads):
        attributes = payload.pop("attributes", None) or {}
        result = parse_item({**attributes, **{k: v for k, v in payload.items() if v is not None}})
        if isinstance(result, list):
            problems[index] = result
        else:
            parsed.append(result)
    if problems:
        raise InvalidRecords(kind, problems)
    return parsed


def _to_events(batch: EventBatch) -> list[Event]:
    now = time.time()
    parsed, problems = [], {}
    for index, event in enumerate(batch.events):
        payload = event.model_dump()
        if payload["timestamp"] is None:
            payload["timestamp"] = now
        result = parse_event(payload)
        if isinstance(result, list):
            problems[index] = result
        else:
            parsed.append(result)
    if problems:
        raise InvalidRecords("events", problems)
    return parsed


def _public(item: Item) -> ItemPublic:
    display = {name: item.attributes[name] for name in DISPLAY_FIELDS if name in item.attributes}
    return ItemPublic(item_id=item.item_id, title=item.title, description=item.description,
                      category=item.category, brand=item.brand, price=item.price, available=item.available,
                      sponsored_bid=item.sponsored_bid, **display,
                      attributes={k: v for k, v in item.attributes.items() if k not in DISPLAY_FIELDS})


def _filter(category: str | None, min_price: float | None, max_price: float | None,
            available_only: bool) -> ItemFilter | None:
    if category is None and min_price is None and max_price is None and not available_only:
        return None
    return ItemFilter(category=category, min_price=min_price, max_price=max_price, available_only=available_only)


def _hits(engine: Engine, recs: list[Rec], surface: str, user_id: str | None = None,
          session_id: str | None = None, query: str | None = None) -> Response:
    """The HitList as a JSON response, serialised once: returned as a model, FastAPI would
    validate it against response_model again (about a fifth of a recommendation's time).
    Its `list_id` names the impression logged for it."""
    hits = _hit_list(engine, recs)
    assigned = engine.arm(user_id, session_id)
    hits.list_id = engine.shown(surface, [h.item_id for h in hits.items], query, user_id, session_id,
                                assigned[0] if assigned else None)
    return Response(hits.model_dump_json(), media_type="application/json")


def _hit_list(engine: Engine, recs: list[Rec]) -> HitList:
    hits = []
    for rec in recs:
        item = engine.items.get(rec.item_id)
        if item is not None:  # deleted between ranking and answering
            hits.append(Hit(item_id=item.item_id, title=item.title, category=item.category, brand=item.brand,
                            price=item.price, score=rec.score, reason=rec.reason, position=len(hits),
                            image_url=item.image_url, url=item.url))
    return HitList(items=hits)


async def _compute(request: Request, work: Callable[[], Response], short: bool = True) -> Response:
    """A read route's engine work. On the thread pool, `serve_concurrency` requests at once,
    in the order they came (their own limiter: health probes and writes are not queued
    behind them). A short one (recommend, similar: about a millisecond) runs in the event
    loop's own thread when the process computes one request at a time
    (`serve_concurrency` 1, as each of 2 workers on 2 cores does): the hop to the pool and
    back was about a fifth of its CPU time. Search stays on the pool: its encoder releases the
    GIL for milliseconds, and run inline it held the loop so long that at 32 clients some
    connections waited several turns (p99 430 ms against 120 ms on the pool)."""
    if short and request.app.state.inline:
        return work()
    return await anyio.to_thread.run_sync(work, limiter=request.app.state.limiter)  # None: the default pool


Text = Annotated[str | None, Query(max_length=256, pattern=PRINTABLE)]
Id = Annotated[str, PathParam(min_length=1, max_length=256, pattern=PRINTABLE)]
K = Annotated[int, Query(ge=1, le=100)]
Price = Annotated[float | None, Query(ge=0, allow_inf_nan=False)]


SEARCH_PARAMS = {"q", "user_id", "session_id", "category", "min_price", "max_price", "available_only", "k", "limit",
                 "offset", "sort", "facets", "filter", "attributes", "group", "correct", "rules", "preview"}


@router.get("/search", dependencies=[ReadAccess], response_model=SearchPage, tags=["search"])
async def search(request: Request, engine: EngineDep,
                 q: Annotated[str, Query(max_length=1_000, pattern=PRINTABLE,
                                         description="The query; empty = a browse page (filters and facets only).")] = "",
                 user_id: Text = None, session_id: Text = None, category: Text = None, min_price: Price = None,
                 max_price: Price = None, available_only: bool = False,
                 k: Annotated[int | None, Query(ge=1, le=100, description="Alias of limit.")] = None,
                 limit: Annotated[int | None, Query(ge=1, le=100, description="Hits per page (default 10).")] = None,
                 offset: Annotated[int, Query(ge=0, description="Hits to skip; offset + limit <= search_max_window.")] = 0,
                 sort: Annotated[Sort, Query(description="relevance (default), price_asc, price_desc, newest, popular; "
                                             "relevance breaks ties.")] = "relevance",
                 facets: Annotated[str | None, Query(max_length=1_000, pattern=PRINTABLE, description="Comma-separated "
                                                     "facets to count, e.g. brand,category,price.")] = None,
                 filter: Annotated[list[Annotated[str, Field(max_length=1_000, pattern=PRINTABLE)]], Query(
                     max_length=50, description="FIELD:VALUE, "
                                                    "FIELD:A|B, FIELD:LOW..HIGH, -FIELD:VALUE; repeat to AND "
                                                    "(docs/service.md).")] = [],  # noqa: B006 - FastAPI reads it
                 attributes: Annotated[str | None, Query(max_length=1_000, pattern=PRINTABLE, description="Comma-separated "
                                                         "item attributes each hit carries.")] = None,
                 group: Annotated[bool, Query(description="One hit per group_id (its best-ranked variant).")] = True,
                 correct: Annotated[bool, Query(description="false: search the spelling as typed (\"search "
                                                "instead for ...\").")] = True,
                 rules: Annotated[bool, Query(description="false (admin key only): the page without the merchandising "
                                              "rules, as the engine ranks it; a preview, never logged.")] = True,
                 preview: Annotated[bool, Query(description="true (admin key only): a preview for staff; no impression "
                                                "is logged and list_id is null.")] = False,
                 ) -> Response:
    """A results page: hybrid (BM25 + language-model) search personalised by the visitor's
    history, over the query's whole result set, with its total, facets, filters, sort order and
    page; `q` empty browses the catalog by personalised popularity. Misspelled words are
    corrected from the catalog's own words (`corrected_query`)."""
    if preview or not rules:
        await require_admin(request)  # staff only: 403 on the read key
    size = limit or k or 10
    window = request.app.state.settings.search_max_window
    if offset + size > window:
        raise _invalid("offset", f"offset + limit is {offset + size}; at most {window} (search_max_window): "
                                 "narrow the query or the filters instead of paging deeper")
    schema = engine.schema
    texts = list(filter)
    for name in request.query_params:
        if name in SEARCH_PARAMS or name.startswith("_"):
            continue
        if name not in schema.filterable:
            raise _invalid(name, f"unknown parameter {name!r}; filterable fields: {', '.join(schema.filterable)}; "
                                 f"other parameters: {', '.join(sorted(SEARCH_PARAMS))}")
        texts.append(f"{name}:" + "|".join(request.query_params.getlist(name)))
    try:
        clauses = tuple(parse_filters(texts, schema))
        wanted = tuple(schema.check_facets([f.strip() for f in (facets or "").split(",") if f.strip()]))
    except FilterError as error:
        raise _invalid(error.field, str(error)) from None
    assigned = engine.arm(user_id, session_id)
    fusion, rerank = (arm_fusion(assigned[1], engine.search_pipeline.fusion),
                      bool(assigned[1].settings.get("search_rerank", True))) if assigned else (None, True)
    page_request = PageRequest(q.strip(), user_id, session_id, clauses, _filter(category, min_price, max_price,
                                                                                 available_only),
                               wanted, sort, offset, size, group, correct, fusion, rerank, rules,
                               engine.arm_search(assigned[1]) if assigned else None)
    shown = [a.strip() for a in (attributes or "").split(",") if a.strip()]

    def work() -> Response:
        page = engine.search_page(page_request)
        return Response(_search_page(engine, page, page_request, shown, assigned[0] if assigned else None,
                                     log=rules and not preview).model_dump_json(), media_type="application/json")

    return await _compute(request, work, short=not q.strip())


@router.get("/suggest", dependencies=[ReadAccess], response_model=SuggestList, tags=["search"])
async def suggest(request: Request, engine: EngineDep,
                  q: Annotated[str, Query(max_length=256, pattern=PRINTABLE, description="What was typed so far.")] = "",
                  k: Annotated[int, Query(ge=1, le=20)] = 5,
                  items: Annotated[int, Query(ge=0, le=10, description="Product matches of the best suggestion.")] = 3,
                  user_id: Text = None, session_id: Text = None) -> Response:
    """Autocomplete: the shop's clicked queries and catalog phrases that start with (or have a
    word starting with) `q`, the visitor's brands and categories first, and top products."""
    def work() -> Response:
        suggestions, recs = engine.suggest(q, k, user_id=user_id, session_id=session_id, items=items)
        hits = _hit_list(engine, recs).items
        body = SuggestList(suggestions=[Suggestion(text=s.text, score=s.score) for s in suggestions], items=hits,
                           list_id=engine.shown("suggest", [h.item_id for h in hits], q, user_id, session_id)
                           if hits else None)
        return Response(body.model_dump_json(), media_type="application/json")

    return await _compute(request, work)


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("query", field), "msg": message, "type": "value_error"}])


def _search_page(engine: Engine, page: Page, request: PageRequest, shown: list[str], arm: str | None,
                 log: bool = True) -> SearchPage:
    lexical = engine.search_pipeline.lexical
    searched = page.corrected_query or request.query
    terms = set(lexical.query_terms(searched)) if searched else set()  # synonyms' terms marked too
    hits = []
    for position, rec in enumerate(page.hits, start=request.offset):
        item = engine.items.get(rec.item_id)
        if item is None:  # deleted between ranking and answering
            continue
        hits.append(PageHit(
            item_id=item.item_id, title=item.title, category=item.category, brand=item.brand, price=item.price,
            score=rec.score, reason=rec.reason, position=position, image_url=item.image_url, url=item.url,
            highlight=highlight(item.title, terms, lexical.stem_word),
            attributes={a: item.attributes[a] for a in shown if a in item.attributes},
            variants=page.variants.get(item.item_id)))
    surface = "search" if request.query else "browse"
    list_id = engine.shown(surface, [h.item_id for h in hits], searched or None, request.user_id, request.session_id,
                           arm) if log else None  # a preview: shown to staff, not to shoppers
    return SearchPage(items=hits, total=page.total, total_exact=page.total_exact, offset=request.offset,
                      limit=request.limit, facets=page.facets, query=request.query,
                      corrected_query=page.corrected_query, list_id=list_id)


MAX_CART = 100
Cart = Annotated[str | None, Query(max_length=MAX_CART * 257, pattern=PRINTABLE, description=(
    "Comma-separated item ids: a cart (or any set of items) to complete with what is bought with it "
    f"(at most {MAX_CART}). Never returns one of them."))]
ListParam = Annotated[ListName | None, Query(alias="list", description=(
    "A shop list instead of next items: trending (growing traffic), new (newest created_at, else first "
    "event), best_sellers (purchases). With user_id/session_id in that visitor's order; category narrows it."))]


def _cart(engine: Engine, items: str) -> list[str]:
    """The ids of `items=` (comma-separated, repeats once), each in the catalog, else a 422 naming the field."""
    ids = list(dict.fromkeys(part.strip() for part in items.split(",") if part.strip()))
    if not ids:
        raise _invalid("items", "an empty cart: pass at least one item id, as items=ID1,ID2")
    if len(ids) > MAX_CART:
        raise _invalid("items", f"{len(ids)} items; a cart holds at most {MAX_CART}")
    unknown = [i for i in ids if i not in engine.items]
    if unknown:
        raise _invalid("items", f"not in the catalog: {', '.join(repr(i) for i in unknown[:10])}"
                                f"{' and more' if len(unknown) > 10 else ''}")
    return ids


@router.get("/recommend", dependencies=[ReadAccess], response_model=HitList, tags=["recommend"])
async def recommend(request: Request, engine: EngineDep, user_id: Text = None, session_id: Text = None, item_id: Text = None,
              category: Text = None, min_price: Price = None, max_price: Price = None, available_only: bool = False,
              exclude_seen: bool = False, k: K = 10, items: Cart = None, list_name: ListParam = None) -> Response:
    """Next items for a user or session, optionally on an item page (item_id) or in a category.
    A visitor with no history gets popular items (of the category, or like the page's item).
    `items=a,b,c` completes a cart (complements first, then next items after it); `list=`
    answers a shop list (trending, new, best_sellers) instead."""
    given = [name for name, value in (("item_id", item_id), ("items", items), ("list", list_name)) if value is not None]
    if len(given) > 1:
        raise _invalid(given[1], f"{given[1]} cannot be combined with {given[0]}: pass one of item_id, items, list")
    flt = _filter(category, min_price, max_price, available_only)
    assigned = engine.arm(user_id, session_id)
    model = engine.arm_model(assigned[1]) if assigned else None
    if items is not None:
        cart = _cart(engine, items)
        return await _compute(request, lambda: _hits(engine, engine.bought_together(
            cart, k=k, user_id=user_id, session_id=session_id, fill=True, model=model), "cart", user_id, session_id))
    if list_name is not None:
        return await _compute(request, lambda: _hits(engine, engine.shop_list(
            list_name, user_id=user_id, session_id=session_id, filter=flt, k=k, model=model), list_name,
            user_id, session_id))
    return await _compute(request, lambda: _hits(engine, engine.recommend(
        user_id=user_id, session_id=session_id, item_id=item_id, filter=flt, k=k, exclude_seen=exclude_seen,
        model=model), "recommend", user_id, session_id))


@router.get("/items/{item_id:path}/similar", dependencies=[ReadAccess], response_model=HitList, tags=["items"])
async def similar(request: Request, item_id: Id, engine: EngineDep, k: K = 10) -> Response:
    return await _compute(request, lambda: _hits(engine, engine.similar(item_id, k=k), "similar"))


@router.get("/items/{item_id:path}/bought-together", dependencies=[ReadAccess], response_model=HitList, tags=["items"])
async def bought_together(request: Request, item_id: Id, engine: EngineDep, k: K = 10) -> Response:
    """Items bought in the same baskets as this one (complements, not look-alikes); an item
    never bought yet borrows those of its nearest items by text. Only items with co-purchase
    evidence: the list may be shorter than k."""
    return await _compute(request, lambda: _hits(engine, engine.bought_together([item_id], k=k),
                                                 "bought_together"))


@router.post("/rank", dependencies=[ReadAccess], response_model=RankedList, tags=["recommend"])
async def rank(request: Request, body: RankRequest, engine: EngineDep) -> Response:
    """Re-rank a list the shop supplies (up to 1,000 ids: its category page, a campaign) for a
    visitor: every supplied id in the catalog comes back, best first; the others are named in
    `unknown`. Nothing is added or left out."""
    seen: set[str] = set()
    repeated = [i for i, item_id in enumerate(body.items) if item_id in seen or seen.add(item_id)]
    if repeated:
        raise RequestValidationError([{"loc": ("body", "items", repeated[0]), "type": "value_error",
                                       "msg": f"{body.items[repeated[0]]!r} is listed twice"}])
    assigned = engine.arm(body.user_id, body.session_id)
    model = engine.arm_model(assigned[1]) if assigned else None

    def work() -> Response:
        recs, unknown = engine.rank(body.items, body.user_id, body.session_id, model)
        hits = _hit_list(engine, recs)
        answer = RankedList(items=hits.items, unknown=unknown, list_id=engine.shown(
            "rank", [h.item_id for h in hits.items], None, body.user_id, body.session_id,
            assigned[0] if assigned else None))
        return Response(answer.model_dump_json(), media_type="application/json")

    return await _compute(request, work)


@router.post("/ads/rank", dependencies=[ReadAccess], response_model=AdList, tags=["ads"])
def rank_ads(body: AdRequest, engine: EngineDep) -> AdList:
    """Sponsored items ordered by relevance x bid; an irrelevant ad never wins on bid alone."""
    ranked = engine.rank_ads(user_id=body.user_id, session_id=body.session_id, query=body.query,
                             item_id=body.item_id, k=body.k)
    ads = [Ad(item_id=i, title=engine.items[i].title, score=s, relevance=r, bid=b) for i, s, r, b in ranked
           if i in engine.items]
    return AdList(ads=ads, list_id=engine.shown("ads", [a.item_id for a in ads], body.query, body.user_id,
                                                body.session_id))


@router.post("/admin/reload", dependencies=[AdminAccess], response_model=Reloaded, tags=["admin"])
def reload_model(body: ReloadRequest, engine: EngineDep, request: Request) -> Reloaded:
    """Swap in a newly trained recommendation model; requests in flight finish on the old one.
    The directory is named relative to the service's models_dir (an absolute path must lie
    inside it too): the API never reads files elsewhere."""
    root = request.app.state.settings.models_dir.resolve()
    directory = (root / body.recommend_model).resolve()
    if not directory.is_relative_to(root):
        raise Unprocessable(f"recommend_model {body.recommend_model!r} is outside the models directory {root}; "
                            "put the model there (SHOPLM_MODELS_DIR) and name it relative to it")
    if not (directory / "params.json").is_file():
        raise NotFound(f"no trained model in {body.recommend_model} (params.json missing); "
                       "train one with `shoplm train recommend --out DIR`")
    engine.reload_model(directory)
    return Reloaded(recommend_model=str(directory))


When = Annotated[float | None, Query(ge=0, lt=7_258_118_400, allow_inf_nan=False, description="Unix seconds.")]


@router.get("/admin/analytics", dependencies=[AdminAccess], tags=["admin"])
def admin_analytics(engine: EngineDep, since: When = None, until: When = None) -> dict[str, Any]:
    """Top queries, zero-result and low-click-through queries, and per surface and experiment
    arm the impressions, clicks, carts, purchases, revenue, CTR and conversion in [since,
    until), with CTR by position; aggregated by the store (shoplm/store/analytics.py)."""
    if since is not None and until is not None and until <= since:
        raise _invalid("until", f"until ({until:g}) must be after since ({since:g})")
    return engine.analytics(since, until)


@router.post("/items", dependencies=[AdminAccess], response_model=WriteResult, tags=["items"])
def upsert_items(batch: ItemBatch, engine: EngineDep, request: Request) -> WriteResult:
    """Create or replace items (by item_id); the catalog is updated before the answer."""
    limit = request.app.state.settings.max_items_per_request
    if len(batch.items) > limit:
        raise Unprocessable(f"{len(batch.items)} items in one request; send at most {limit} per request")
    items = _to_items([item.model_dump() for item in batch.items])
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.item_id in seen:
            raise Unprocessable(f"items[{index}].item_id {item.item_id!r} repeats items[{seen[item.item_id]}]")
        seen[item.item_id] = index
    written = engine.upsert_items(items)
    return WriteResult(accepted=len(items), stored=written, duplicates=0)


@router.get("/items/{item_id:path}", dependencies=[ReadAccess], response_model=ItemPublic, tags=["items"])
def get_item(item_id: Id, engine: EngineDep) -> ItemPublic:
    return _public(engine.get_item(item_id))


@router.put("/items/{item_id:path}", dependencies=[AdminAccess], response_model=ItemPublic, tags=["items"])
def put_item(item_id: Id, body: ItemBase, engine: EngineDep) -> ItemPublic:
    """Create or replace one item."""
    (item,) = _to_items([{**body.model_dump(), "item_id": item_id}], kind="item")
    engine.upsert_items([item])
    return _public(item)


@router.delete("/items/{item_id:path}", dependencies=[AdminAccess], status_code=204, tags=["items"])
def delete_item(item_id: Id, engine: EngineDep) -> Response:
    engine.delete_item(item_id)
    return Response(status_code=204)


@router.post("/events", dependencies=[ReadAccess], response_model=WriteResult, tags=["events"])
def post_events(batch: EventBatch, engine: EngineDep, request: Request) -> WriteResult:
    """Store a batch of behaviour events, all or nothing. The answer comes only after the
    batch is committed; re-sending it stores nothing twice. Storefronts post here with
    the read key, as with an analytics write key."""
    limit = request.app.state.settings.max_events_per_request
    if len(batch.events) > limit:
        raise Unprocessable(f"{len(batch.events)} events in one request; send at most {limit} per request")
    events = _to_events(batch)
    stored = engine.add_events(events)
    return WriteResult(accepted=len(events), stored=stored, duplicates=len(events) - stored)


@router.get("/users/{user_id:path}/profile", dependencies=[ReadAccess], response_model=ProfilePublic, tags=["users"])
def user_profile(user_id: Id, engine: EngineDep) -> ProfilePublic:
    return ProfilePublic(**engine.profile(user_id=user_id).to_dict())


@router.get("/sessions/{session_id:path}/profile", dependencies=[ReadAccess], response_model=ProfilePublic,
            tags=["users"])
def session_profile(session_id: Id, engine: EngineDep) -> ProfilePublic:
    return ProfilePublic(**engine.profile(session_id=session_id).to_dict())


@router.delete("/users/{user_id:path}", dependencies=[AdminAccess], response_model=Erased, tags=["users"])
def erase_user(user_id: Id, engine: EngineDep) -> Erased:
    """Erase every trace of the user: their events and the events of their sessions."""
    return Erased(user_id=user_id, deleted_events=engine.delete_user(user_id))


@health.get("/healthz", tags=["health"])
def healthz() -> dict[str, Any]:
    """The process is up; `worker` is its process id (which of `serve --workers N` answered)."""
    return {"status": "ok", "worker": os.getpid()}


@health.get("/readyz", tags=["health"])
def readyz(engine: EngineDep) -> Any:
    """The process can answer: its store is reachable."""
    if engine.ready():
        return {"status": "ready"}
    return error_response(503, "not ready: the store is not reachable", headers={"Retry-After": "1"})


@health.get("/metrics", tags=["health"], response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return PlainTextResponse(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
