"""Request and response bodies. Families: `...Base` (shared fields), `...Create` (what a
client sends), `...Public` (what the service returns).

Types are checked here; the data model's rules (non-empty title, price >= 0, finite
numbers, no control characters, ...) are checked once, by shoplm.data.records, so the API and
file ingestion can never disagree on what a valid record is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shoplm.data.records import EVENT_TYPES

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


# No control characters, as in files (PostgreSQL cannot even compare a NUL).
PRINTABLE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$"

class ItemBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(..., examples=["Cordless drill 18V"])
    description: str | None = None
    category: str | None = Field(None, examples=["Tools > Power Tools > Drills"])
    brand: str | None = None
    price: float | None = Field(None, ge=0)
    available: bool = True
    sponsored_bid: float | None = Field(None, ge=0)
    image_url: str | None = Field(None, examples=["https://shop.example/img/drill-1.jpg"])
    url: str | None = Field(None, examples=["/p/drill-1"], description="The product page: an http(s) URL or a path.")
    created_at: float | str | None = Field(None, description="When the shop first offered it: ISO-8601 or Unix "
                                           "seconds (sort=newest).")
    group_id: str | None = Field(None, max_length=256, description="Variants of one product share it; search "
                                 "shows one hit per group.")
    attributes: dict[str, Any] = Field(default_factory=dict)


class ItemCreate(ItemBase):
    item_id: str = Field(..., min_length=1, max_length=256, examples=["drill-1"])


class ItemPublic(ItemCreate):
    pass


class ItemBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ItemCreate]


class EventCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timestamp: float | str | None = Field(
        None, description="ISO-8601 or Unix seconds; omitted = the time the service receives it.",
        examples=["2024-05-01T12:00:00Z"],
    )
    user_id: str | None = Field(None, max_length=256)
    session_id: str | None = Field(None, max_length=256)
    event_type: EventType
    item_id: str | None = Field(None, max_length=256)
    query: str | None = None
    position: int | None = Field(None, ge=0, description="The item's 0-based position in the list it was picked from.")
    value: float | None = Field(None, description="A purchase's value (revenue), in the catalog's currency.")
    list_id: str | None = Field(None, max_length=64, description="The `list_id` of the answer the item was picked "
                                "from: credits the click/cart/purchase to that search or recommendation list.")


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventCreate]


class WriteResult(BaseModel):
    accepted: int
    stored: int = Field(description="Newly stored; the rest were already there (idempotent re-sends).")
    duplicates: int


class ProfilePublic(BaseModel):
    user_id: str | None
    session_id: str | None
    is_new: bool
    event_counts: dict[str, int]
    first_seen: float | None
    last_seen: float | None
    top_categories: list[tuple[str, float]]
    top_brands: list[tuple[str, float]]
    price_band: dict[str, float] | None
    recent_items: list[str]
    recent_queries: list[str]
    nearest_categories: list[tuple[str, float]]


class Erased(BaseModel):
    user_id: str
    deleted_events: int


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str


class ErrorInfo(BaseModel):
    status: int
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorBody(BaseModel):
    error: ErrorInfo


class Hit(BaseModel):
    item_id: str
    title: str
    category: str | None
    brand: str | None
    price: float | None
    score: float
    reason: str
    position: int = Field(0, description="0-based rank in the list (send it back with the click).")
    image_url: str | None = None
    url: str | None = None


LIST_ID = Field(None, description="This answer's id: send it with the events of items picked from it (attribution).")


class HitList(BaseModel):
    items: list[Hit]
    list_id: str | None = LIST_ID


class PageHit(Hit):
    position: int = Field(description="0-based rank in the whole result list (offset included).")
    highlight: str = Field(description="The title, HTML-escaped, with the matched query words in <mark>.")
    attributes: dict[str, Any] = Field(default_factory=dict, description="The attributes asked for with `attributes=`.")
    variants: int | None = Field(None, description="Items of this hit's group_id in the result set (when several).")


class SearchPage(BaseModel):
    items: list[PageHit]
    total: int = Field(description="Items (groups, when grouping) in the whole result set.")
    total_exact: bool = Field(description="Whether `total` is exact (always, today) or a lower bound.")
    offset: int
    limit: int
    facets: dict[str, dict[str, int]] = Field(default_factory=dict, description="facet -> value -> count, over "
                                              "the whole result set, each without its own field's filters.")
    query: str
    corrected_query: str | None = Field(None, description="The spelling searched instead of `query`, when one was.")
    list_id: str | None = LIST_ID


class Suggestion(BaseModel):
    text: str
    score: float


class SuggestList(BaseModel):
    suggestions: list[Suggestion]
    items: list[Hit]
    list_id: str | None = LIST_ID


class AdRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, max_length=256, pattern=PRINTABLE)
    session_id: str | None = Field(None, max_length=256, pattern=PRINTABLE)
    query: str | None = Field(None, max_length=1_000, pattern=PRINTABLE)
    item_id: str | None = Field(None, max_length=256, pattern=PRINTABLE,
                                description="The page's item, when there is no query.")
    k: int = Field(3, ge=1, le=50)


class Ad(BaseModel):
    item_id: str
    title: str
    score: float = Field(description="relevance x bid")
    relevance: float
    bid: float


class AdList(BaseModel):
    ads: list[Ad]
    list_id: str | None = LIST_ID


class RankRequest(BaseModel):
    """POST /v1/rank: a list the shop supplies (a category page, a campaign), re-ranked for a visitor."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, max_length=256, pattern=PRINTABLE)
    session_id: str | None = Field(None, max_length=256, pattern=PRINTABLE)
    items: list[Annotated[str, Field(min_length=1, max_length=256, pattern=PRINTABLE)]] = Field(
        ..., min_length=1, max_length=1_000, description="The item ids to rank (1 to 1,000, no repeats).")


class RankedList(BaseModel):
    items: list[Hit] = Field(description="Every supplied id that is in the catalog, best first for this visitor.")
    unknown: list[str] = Field(description="The supplied ids that are not in the catalog, in their order.")
    list_id: str | None = LIST_ID


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recommend_model: str = Field(..., min_length=1, max_length=1_000, pattern=r"^[^\x00-\x1f\x7f]+$",
                                 description="A directory written by `shoplm train recommend`, relative to the "
                                 "service's models_dir (SHOPLM_MODELS_DIR).", examples=["scientific"])


class Reloaded(BaseModel):
    recommend_model: str
