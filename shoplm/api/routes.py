"""Routes: parse, call one engine method, return a schema."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from shoplm.api.deps import AdminAccess, EngineDep, ReadAccess
from shoplm.api.problems import Unprocessable, error_response
from shoplm.api.schemas import (
    Erased, ErrorBody, EventBatch, ItemBase, ItemBatch, ItemPublic, ProfilePublic, WriteResult,
)
from shoplm.errors import InvalidRecords
from shoplm.records import Event, Item, parse_event, parse_item

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 413, 422, 429, 503)
}
router = APIRouter(prefix="/v1", responses=ERRORS)
health = APIRouter()


def _to_items(payloads: list[dict[str, Any]], kind: str = "items") -> list[Item]:
    parsed, problems = [], {}
    for index, payload in enumerate(payloads):
        attributes = payload.pop("attributes", None) or {}
        result = parse_item({**attributes, **payload})
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
    return ItemPublic(item_id=item.item_id, title=item.title, description=item.description,
                      category=item.category, brand=item.brand, price=item.price, available=item.available,
                      sponsored_bid=item.sponsored_bid, attributes=item.attributes)


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


@router.get("/items/{item_id}", dependencies=[ReadAccess], response_model=ItemPublic, tags=["items"])
def get_item(item_id: str, engine: EngineDep) -> ItemPublic:
    return _public(engine.get_item(item_id))


@router.put("/items/{item_id}", dependencies=[AdminAccess], response_model=ItemPublic, tags=["items"])
def put_item(item_id: str, body: ItemBase, engine: EngineDep) -> ItemPublic:
    """Create or replace one item."""
    (item,) = _to_items([{**body.model_dump(), "item_id": item_id}], kind="item")
    engine.upsert_items([item])
    return _public(item)


@router.delete("/items/{item_id}", dependencies=[AdminAccess], status_code=204, tags=["items"])
def delete_item(item_id: str, engine: EngineDep) -> Response:
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


@router.get("/users/{user_id}/profile", dependencies=[ReadAccess], response_model=ProfilePublic, tags=["users"])
def user_profile(user_id: str, engine: EngineDep) -> ProfilePublic:
    return ProfilePublic(**engine.profile(user_id=user_id).to_dict())


@router.get("/sessions/{session_id}/profile", dependencies=[ReadAccess], response_model=ProfilePublic,
            tags=["users"])
def session_profile(session_id: str, engine: EngineDep) -> ProfilePublic:
    return ProfilePublic(**engine.profile(session_id=session_id).to_dict())


@router.delete("/users/{user_id}", dependencies=[AdminAccess], response_model=Erased, tags=["users"])
def erase_user(user_id: str, engine: EngineDep) -> Erased:
    """Erase every trace of the user: their events and the events of their sessions."""
    return Erased(user_id=user_id, deleted_events=engine.delete_user(user_id))


@health.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


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
