"""Merchandising routes: rules and synonyms staff set with the admin key (docs/service.md).

    POST /v1/admin/rules     {"action": "pin", "item_id": "fan-7", "position": 0, "query": "fan", "name": "summer sale"}
    POST /v1/admin/synonyms  {"terms": ["sofa", "couch"]}  or  {"terms": ["tv"], "to": ["television"]}

Each collection answers GET (list), POST (create: the object with its `id`), and GET, PUT and
DELETE by id. A body is checked whole before anything is written (types here, the data
model's rules in shoplm/data/rules.py, the catalog by the engine), and a bad one is a 422
naming the field; a write is one transaction, and every worker answers by it from its next
request.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from shoplm.api.deps import AdminAccess, EngineDep
from shoplm.api.routes import ERRORS
from shoplm.api.schemas import PRINTABLE
from shoplm.data.rules import MAX_NAME_CHARS, MAX_POSITION, MAX_QUERY_CHARS, MAX_TERMS, RULE_ACTIONS, SURFACES, Rule, \
    Synonym, parse_rule, parse_synonym
from shoplm.errors import InvalidRecords

router = APIRouter(prefix="/v1/admin", dependencies=[AdminAccess], responses=ERRORS, tags=["merchandising"])

Action = Literal[RULE_ACTIONS]  # type: ignore[valid-type]
Surface = Literal[SURFACES]  # type: ignore[valid-type]
Text = Annotated[str, Field(max_length=MAX_QUERY_CHARS, pattern=PRINTABLE)]
Id = Annotated[int, Path(ge=1, le=2**53, description="The id the create answer gave.")]
TIME = "ISO-8601 or Unix seconds"


class RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action = Field(description="pin: show at `position`; boost / bury: move `amount` positions up / down; "
                                       "hide: never show.")
    item_id: str = Field(min_length=1, max_length=256, pattern=PRINTABLE, examples=["fan-7"])
    position: int | None = Field(None, ge=0, le=MAX_POSITION, description="pin: the 0-based position.")
    amount: int | None = Field(None, ge=1, le=MAX_POSITION, description="boost / bury: positions moved.")
    query: Text | None = Field(None, description="Acts on searches for exactly this query (case and spaces aside).")
    query_contains: list[Text] = Field(default_factory=list, max_length=MAX_TERMS,
                                       description="Acts on searches whose query has all these words.")
    category: Text | None = Field(None, description="Acts on pages filtered to exactly this category path.")
    name: str = Field("", max_length=MAX_NAME_CHARS, pattern=PRINTABLE,
                      description='Named in the hit\'s reason: "pinned by rule 3: summer sale".')


class RuleCreate(RuleBase):
    surfaces: list[Surface] | None = Field(None, description="Where it acts; default: search, browse, recommend, similar.")
    start: float | str | None = Field(None, description=f"Acts from then on ({TIME}).")
    end: float | str | None = Field(None, description=f"Acts until then, exclusive ({TIME}); after start.")


class RulePublic(RuleBase):
    id: int
    surfaces: list[Surface]
    start: float | None = Field(description="Unix seconds.")
    end: float | None = Field(description="Unix seconds.")
    created_at: float
    updated_at: float


class RuleList(BaseModel):
    rules: list[RulePublic]


Term = Annotated[str, Field(min_length=1, max_length=100, pattern=PRINTABLE)]


class SynonymBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    terms: list[Term] = Field(min_length=1, max_length=MAX_TERMS, examples=[["sofa", "couch"]],
                              description="Without `to`: each matches every other (two-way).")
    to: list[Term] = Field(default_factory=list, max_length=MAX_TERMS, description="One-way: each of `terms` also "
                           "matches these, not the reverse.")


class SynonymCreate(SynonymBase):
    pass


class SynonymPublic(SynonymBase):
    id: int
    created_at: float
    updated_at: float


class SynonymList(BaseModel):
    synonyms: list[SynonymPublic]


def _rule(body: RuleCreate, rule_id: int | None = None) -> Rule:
    parsed = parse_rule(body.model_dump(exclude_none=True))
    if isinstance(parsed, list):
        raise InvalidRecords("rule", {0: parsed})
    return dataclasses.replace(parsed, id=rule_id)


def _synonym(body: SynonymCreate, synonym_id: int | None = None) -> Synonym:
    parsed = parse_synonym(body.model_dump())
    if isinstance(parsed, list):
        raise InvalidRecords("synonym", {0: parsed})
    return dataclasses.replace(parsed, id=synonym_id)


def _public(record: Rule | Synonym) -> Any:
    kind = RulePublic if isinstance(record, Rule) else SynonymPublic
    return kind(**dataclasses.asdict(record))


@router.get("/rules", response_model=RuleList)
def list_rules(engine: EngineDep) -> RuleList:
    return RuleList(rules=[_public(r) for r in engine.merchandising.current()[0]])


@router.post("/rules", response_model=RulePublic, status_code=201)
def create_rule(body: RuleCreate, engine: EngineDep) -> RulePublic:
    """Create a rule; it acts from the next request on (inside its window)."""
    return _public(engine.put_rule(_rule(body)))


@router.get("/rules/{rule_id}", response_model=RulePublic)
def get_rule(rule_id: Id, engine: EngineDep) -> RulePublic:
    return _public(engine.merchandising.rule(rule_id))


@router.put("/rules/{rule_id}", response_model=RulePublic)
def replace_rule(rule_id: Id, body: RuleCreate, engine: EngineDep) -> RulePublic:
    """Replace a rule (404 if there is none with this id)."""
    return _public(engine.put_rule(_rule(body, rule_id)))


@router.delete("/rules/{rule_id}", status_code=204)
def delete_rule(rule_id: Id, engine: EngineDep) -> Response:
    engine.delete_rule(rule_id)
    return Response(status_code=204)


@router.get("/synonyms", response_model=SynonymList)
def list_synonyms(engine: EngineDep) -> SynonymList:
    return SynonymList(synonyms=[_public(s) for s in engine.merchandising.current()[1]])


@router.post("/synonyms", response_model=SynonymPublic, status_code=201)
def create_synonym(body: SynonymCreate, engine: EngineDep) -> SynonymPublic:
    """Create a synonym; the next search's BM25 terms are expanded by it (nothing is re-indexed)."""
    return _public(engine.put_synonym(_synonym(body)))


@router.get("/synonyms/{synonym_id}", response_model=SynonymPublic)
def get_synonym(synonym_id: Id, engine: EngineDep) -> SynonymPublic:
    return _public(engine.merchandising.synonym(synonym_id))


@router.put("/synonyms/{synonym_id}", response_model=SynonymPublic)
def replace_synonym(synonym_id: Id, body: SynonymCreate, engine: EngineDep) -> SynonymPublic:
    return _public(engine.put_synonym(_synonym(body, synonym_id)))


@router.delete("/synonyms/{synonym_id}", status_code=204)
def delete_synonym(synonym_id: Id, engine: EngineDep) -> Response:
    engine.delete_synonym(synonym_id)
    return Response(status_code=204)
