"""Merchandising records: the rules and synonyms staff set to steer results without retraining.

    parse_rule({"action": "pin", "item_id": "fan-7", "position": 0, "query": "fan", "name": "summer sale"})
    parse_synonym({"terms": ["sofa", "couch"]})                  # two-way
    parse_synonym({"terms": ["tv"], "to": ["television"]})       # one-way: "tv" also finds televisions

Like `shoplm.data.records`, a parse function returns the record or every `FieldProblem` that
made it bad, so the API and the CLI refuse bad input with the same message; whether `item_id`
names a catalog item is the engine's check (this module knows no catalog). Queries, words and
synonym terms are kept `normalise`d (case-folded, single spaces), as they are compared.
How rules act on a result list is shoplm/engine/rules.py; how synonyms reach BM25 is
shoplm/search/synonyms.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from shoplm.data.records import FieldProblem, _blank, _Checker, _normalise_category
from shoplm.data.text import normalise

RULE_ACTIONS: tuple[str, ...] = ("pin", "boost", "bury", "hide")
SURFACES: tuple[str, ...] = ("search", "browse", "recommend", "similar")
MAX_POSITION = 10_000  # positions and moves beyond any page a shopper reaches are input mistakes
MAX_TERMS = 50
MAX_TERM_CHARS = 100
MAX_NAME_CHARS = 200
MAX_QUERY_CHARS = 1_000
_STORED = ("id", "created_at", "updated_at")  # kept by the store beside the body, never in it


@dataclass(frozen=True)
class Rule:
    """One merchandising rule: do `action` to `item_id` wherever the scope matches.

    Scope: every condition given must hold. `query`: the shopper's query, normalised, equals
    it; `query_contains`: the query has all these words; `category`: the page's category
    filter is exactly this path; `surfaces`: where it acts; `start`/`end`: Unix seconds, the
    rule acts in [start, end)."""

    action: str  # pin, boost, bury or hide
    item_id: str
    position: int | None = None  # pin: the 0-based position the item is shown at
    amount: int | None = None  # boost / bury: how many positions the item moves up / down
    query: str | None = None
    query_contains: tuple[str, ...] = ()
    category: str | None = None
    surfaces: tuple[str, ...] = SURFACES
    start: float | None = None
    end: float | None = None
    name: str = ""  # shown in the hit's reason: "pinned by rule 3: summer sale"
    id: int | None = None
    created_at: float | None = None
    updated_at: float | None = None

    def body(self) -> dict[str, Any]:
        """What the store keeps as the rule's JSON (everything but id and times)."""
        return _body(self)

    @classmethod
    def from_body(cls, body: Mapping[str, Any], id: int, created_at: float, updated_at: float) -> "Rule":
        values = {**body, "query_contains": tuple(body.get("query_contains", ())),
                  "surfaces": tuple(body.get("surfaces", SURFACES))}
        return cls(**values, id=id, created_at=created_at, updated_at=updated_at)

    def live(self, now: float) -> bool:
        """Whether `now` (Unix seconds) is inside the rule's window."""
        return (self.start is None or now >= self.start) and (self.end is None or now < self.end)


@dataclass(frozen=True)
class Synonym:
    """Words shoppers use for the same thing. Without `to`, two-way: each of `terms` also
    matches every other. With `to`, one-way: each of `terms` also matches the `to` terms, not
    the reverse ("tv" -> "television": a search for television does not find every "TV")."""

    terms: tuple[str, ...]
    to: tuple[str, ...] = ()
    id: int | None = None
    created_at: float | None = None
    updated_at: float | None = None

    def body(self) -> dict[str, Any]:
        return _body(self)

    @classmethod
    def from_body(cls, body: Mapping[str, Any], id: int, created_at: float, updated_at: float) -> "Synonym":
        return cls(tuple(body["terms"]), tuple(body.get("to", ())), id=id, created_at=created_at, updated_at=updated_at)

    def expansions(self) -> list[tuple[str, tuple[str, ...]]]:
        """(term, the terms it also matches) for each of `terms`."""
        if self.to:
            return [(term, self.to) for term in self.terms]
        return [(term, tuple(t for t in self.terms if t != term)) for term in self.terms]


def _body(record: Rule | Synonym) -> dict[str, Any]:
    body = {}
    for f in dataclasses.fields(record):
        if f.name not in _STORED:
            value = getattr(record, f.name)
            body[f.name] = list(value) if isinstance(value, tuple) else value
    return body


def parse_rule(raw: Mapping[str, Any]) -> Rule | list[FieldProblem]:
    """A rule as sent (API body, CLI options) -> `Rule`, or every problem found in it."""
    c = _Checker(raw)
    _unknown(c, raw, Rule)
    action = raw.get("action")
    if action not in RULE_ACTIONS:
        c.fail("action", "one of " + ", ".join(RULE_ACTIONS))
    item_id = c.ident("item_id", required=True)
    position = _whole(c, "position", action, ("pin",), minimum=0, why="the pinned 0-based position")
    amount = _whole(c, "amount", action, ("boost", "bury"), minimum=1,
                    why="how many positions the item moves (boost: up, bury: down)")
    query = _query(c, "query")
    words = _words(c, "query_contains")
    category = _normalise_category(c.text("category", required=False))
    surfaces = _surfaces(c, raw.get("surfaces"))
    start, end = c.timestamp("start", required=False), c.timestamp("end", required=False)
    if start is not None and end is not None and end <= start:
        c.fail("end", f"a time after start ({_iso(start)}): the rule would never act")
    if (query is not None or words) and surfaces is not None and "search" not in surfaces:
        c.fail("surfaces", "to include search: a rule with query or query_contains acts on search results only")
    if category is not None and surfaces is not None and not set(surfaces) - {"similar"}:
        c.fail("surfaces", "to include search, browse or recommend: similar items have no category page")
    name = c.text("name", required=False, limit=MAX_NAME_CHARS) or ""
    if c.problems:
        return c.problems
    return Rule(action, item_id, position, amount, query, words, category, surfaces or SURFACES,  # type: ignore[arg-type]
                start, end, name, raw.get("id"))


def parse_synonym(raw: Mapping[str, Any]) -> Synonym | list[FieldProblem]:
    """A synonym as sent -> `Synonym`, or every problem found in it."""
    c = _Checker(raw)
    _unknown(c, raw, Synonym)
    terms = _terms(c, "terms", required=True)
    to = _terms(c, "to", required=False)
    if terms is not None and not to and len(terms) < 2 and not any(p.field == "to" for p in c.problems):
        c.fail("terms", "at least two terms for a two-way synonym (or `to` for a one-way one: "
                        '{"terms": ["tv"], "to": ["television"]})')
    if c.problems:
        return c.problems
    return Synonym(terms, tuple(t for t in to if t not in terms), id=raw.get("id"))  # type: ignore[arg-type]


def _unknown(c: _Checker, raw: Mapping[str, Any], kind: type) -> None:
    fields = [f.name for f in dataclasses.fields(kind) if f.name not in _STORED[1:]]
    for name in raw:
        if name not in fields:
            c.fail(name, f"one of the {kind.__name__.lower()} fields: {', '.join(fields)}")


def _whole(c: _Checker, name: str, action: Any, actions: tuple[str, ...], *, minimum: int, why: str) -> int | None:
    """The whole number `name`, required for `actions` and refused for the other actions."""
    if action not in actions:
        if action in RULE_ACTIONS and not _blank(c.raw.get(name)):
            c.fail(name, f"nothing for {action}: {name} is for {' and '.join(actions)}")
        return None
    value = c.integer(name, minimum=minimum)
    if value is not None and value > MAX_POSITION:
        c.fail(name, f"{why}: a whole number from {minimum} to {MAX_POSITION}")
        return None
    if value is None and not any(p.field == name for p in c.problems):
        c.fail(name, f"{why}: a whole number >= {minimum}")
    return value


def _query(c: _Checker, name: str) -> str | None:
    text = c.text(name, required=False, limit=MAX_QUERY_CHARS)
    return normalise(text) if text is not None else None


def _words(c: _Checker, name: str) -> tuple[str, ...]:
    value = c.raw.get(name)
    if _blank(value) or value == []:
        return ()
    parts = [value] if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or not all(isinstance(p, str) for p in parts):
        c.fail(name, 'words: a string ("summer sale") or a list of strings')
        return ()
    words = tuple(dict.fromkeys(w for p in parts for w in normalise(p).split()))
    if not words or len(" ".join(words)) > MAX_QUERY_CHARS or any(_bad(w) for w in words):
        c.fail(name, f"words of printable text, {MAX_QUERY_CHARS} characters at most")
        return ()
    return words


def _surfaces(c: _Checker, value: Any) -> tuple[str, ...] | None:
    if _blank(value) or value == []:
        return None
    parts = [value] if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or any(p not in SURFACES for p in parts):
        c.fail("surfaces", "a list of " + ", ".join(SURFACES))
        return None
    return tuple(s for s in SURFACES if s in parts)


def _terms(c: _Checker, name: str, *, required: bool) -> tuple[str, ...] | None:
    value = c.raw.get(name)
    expected = f"a list of 1 to {MAX_TERMS} words or phrases, each at most {MAX_TERM_CHARS} characters"
    if _blank(value) or value == []:
        if required:
            c.fail(name, expected)
        return None if required else ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        c.fail(name, expected)
        return None
    terms = tuple(dict.fromkeys(normalise(t) for t in value if normalise(t)))
    if not terms or len(terms) > MAX_TERMS or any(len(t) > MAX_TERM_CHARS or _bad(t) for t in terms):
        c.fail(name, expected)
        return None
    return terms


def _bad(text: str) -> bool:
    return _Checker({"x": text}).text("x", required=True) is None


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")
