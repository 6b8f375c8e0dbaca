"""Merchandising rules on result lists, and the engine's copy of the shop's rules and synonyms.

    plan = engine.merchandising.plan("search", engine.catalog, query="fan", category=None)
    order, reasons = plan.arrange(order)  # rows in rank order -> rows as shown, {row: "pinned by rule 3: summer sale"}

A rule (shoplm/data/rules.py) acts where its scope matches: the surface (search, browse,
recommend, similar), the query (`query`: equal after normalising; `query_contains`: has all
these words), the page's category filter (`category`: exactly that path) and its time window
[start, end). The rules of one answer act after ranking, always in this order:

1. **hide**: the item is left out of the result set, so `total` and facets do not count it.
2. **boost / bury**, by rule id: the item moves `amount` positions up (at most to the top) or
   down (at most to the end) of the ranked list. Positions, not a score change, so the same
   rule means the same on every surface whatever its score scale (z-scores for search,
   popularity for browse), and staff can predict it.
3. **pin**, by position (a tie: the lower rule id first, the other right after it): the item
   is shown at that 0-based position of the list (or last, when the list is shorter). An item
   pinned for a query is shown even when it does not match the query (it joins the result set
   and is counted in `total` and facets), but never when it is unavailable, hidden, or fails
   the page's filters: a rule never shows what a filter, the catalog or a hide rule keeps out.

Pins, boosts and buries reorder the relevance order (a page's own order or a recommendation
list); when the shopper sorts by price, newness or popularity that sort is theirs and only
hide acts. With variant groups, a rule naming a variant shows that variant for its group.
A pinned or boosted hit's reason names the rule: "pinned by rule 3: summer sale".

Changes reach every engine of the store: this engine reloads after its own write and peers
after the change it publishes (`Engine.apply`), and any engine re-reads when the store's
merchandising version moved (checked at most every `rules_refresh_s`: writes from the CLI or
from another host).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Sequence

import numpy as np

from shoplm.data.records import CATEGORY_SEPARATOR
from shoplm.data.rules import Rule, Synonym
from shoplm.engine.catalog import LiveCatalog
from shoplm.errors import NotFound
from shoplm.search.facets import Clause
from shoplm.search.lexical import LexicalIndex
from shoplm.search.synonyms import SynonymMap
from shoplm.store.base import Store

log = logging.getLogger(__name__)


def reason_of(rule: Rule) -> str:
    verb = "pinned" if rule.action == "pin" else "boosted"
    return f"{verb} by rule {rule.id}" + (f": {rule.name}" if rule.name else "")


class Plan:
    """The rules in force for one answer, resolved to catalog rows (int64; rules whose item
    is not indexed any more do nothing)."""

    def __init__(self, rules: Sequence[Rule] = (), rows: Sequence[int] = (), moves: bool = True):
        ranked = sorted(zip(rules, (int(r) for r in rows)), key=lambda pair: (pair[0].id is None, pair[0].id or 0))
        self.hidden = sorted({row for rule, row in ranked if rule.action == "hide" and row >= 0})
        hidden = set(self.hidden)
        self.moves = [(rule, row) for rule, row in ranked if rule.action != "hide" and row >= 0 and row not in hidden]
        self.reorders = moves  # False under an explicit sort: pins still join the set, nothing moves

    @classmethod
    def of(cls, rules: Sequence[Rule], catalog: LiveCatalog, moves: bool = True) -> "Plan":
        return cls(rules, catalog.rows([r.item_id for r in rules]) if rules else (), moves)

    def __bool__(self) -> bool:
        return bool(self.hidden or self.moves)

    @property
    def depth(self) -> int:
        """Candidates a top-k list needs beyond k, so a boost can lift one into it."""
        return max((rule.amount for rule, _ in self.moves if rule.action == "boost"), default=0)

    def visible(self, n: int) -> np.ndarray:
        """bool[n]: False on the hidden rows."""
        keep = np.ones(n, dtype=bool)
        keep[[r for r in self.hidden if r < n]] = False
        return keep

    def pinned(self, n: int) -> np.ndarray:
        """bool[n]: True on the pinned rows (which join a query's result set when they pass its filters)."""
        out = np.zeros(n, dtype=bool)
        out[[row for rule, row in self.moves if rule.action == "pin" and row < n]] = True
        return out

    def lead(self, order: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """`order` with each row a rule names moved up to its variant group's first place, so
        grouping (one row per group_id, the first) shows that variant."""
        for _, row in self.moves if self.reorders else ():
            at = np.flatnonzero(order == row)
            if not len(at) or row >= len(codes) or codes[row] < 0:
                continue
            first = int(np.flatnonzero(codes[order] == codes[row])[0])
            if first < at[0]:
                order = np.insert(np.delete(order, at[0]), first, row)
        return order

    def arrange(self, order: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
        """(rows as shown, {row: reason} of the pinned and boosted ones): `order` (rows in rank
        order, hidden ones already out) with the boosts and buries, then the pins, applied. A
        row not in `order` is not added: it failed the filters (or is not servable)."""
        reasons: dict[int, str] = {}
        if not (self.moves and self.reorders):
            return order, reasons
        order = np.asarray(order, dtype=np.int64)
        for rule, row in self.moves:
            at = np.flatnonzero(order == row) if rule.action != "pin" else ()
            if len(at):
                p = int(at[0])
                to = max(0, p - rule.amount) if rule.action == "boost" else min(len(order) - 1, p + rule.amount)
                order = np.insert(np.delete(order, p), to, row)
                if rule.action == "boost":
                    reasons[row] = reason_of(rule)
        pins: dict[int, Rule] = {}  # row -> its first pin by (position, id)
        for rule, row in sorted((m for m in self.moves if m[0].action == "pin"), key=lambda m: m[0].position):
            pins.setdefault(row, rule)
        listed = [row for row in pins if (order == row).any()]
        order = order[~np.isin(order, listed)]
        last = -1
        for row in listed:  # ascending positions: each insert leaves the pins before it in place
            last = min(max(pins[row].position, last + 1), len(order))
            order = np.insert(order, last, row)
            reasons[row] = reason_of(pins[row])
        return order, reasons

    def top(self, rows: Sequence[int], mask: np.ndarray, k: int) -> tuple[list[int], dict[int, str]]:
        """A top-k list merchandised: `rows` (k + `depth` candidates, best first) with the
        pinned rows that pass `mask` (bool[rows]: what the list may show) added, arranged, cut to k."""
        listed = set(rows)
        extra = [row for rule, row in self.moves if rule.action == "pin" and row not in listed
                 and row < len(mask) and mask[row]]
        order, reasons = self.arrange(np.asarray([*rows, *dict.fromkeys(extra)], dtype=np.int64))
        shown = order[:k].tolist()
        return shown, {row: reasons[row] for row in shown if row in reasons}


def applies(rule: Rule, surface: str, query: str | None, category: str | None, now: float) -> bool:
    """Whether the rule's scope holds for an answer (`query` normalised)."""
    return (surface in rule.surfaces and rule.live(now)
            and (rule.query is None or rule.query == query)
            and (not rule.query_contains or (query is not None and set(rule.query_contains) <= set(query.split())))
            and (rule.category is None or rule.category == category))


def category_of(category: str | None, clauses: Sequence[Clause]) -> str | None:
    """A page's category: its `category` parameter, else its one `category:PATH` filter clause."""
    if category:
        return CATEGORY_SEPARATOR.join(p.strip() for p in category.split(">") if p.strip()) or None
    paths = [c.values[0] for c in clauses if c.field == "category" and not c.negate and len(c.values) == 1]
    return paths[0] if len(paths) == 1 else None


class Merchandising:
    """The shop's rules and synonyms as this engine serves them (see the module docstring for
    when they are re-read); the synonyms are installed on the BM25 index (`lexical.synonyms`)."""

    def __init__(self, store: Store, lexical: LexicalIndex | None, refresh_s: float):
        self.store, self.lexical, self.refresh_s = store, lexical, refresh_s
        self.rules: tuple[Rule, ...] = ()
        self.synonyms: tuple[Synonym, ...] = ()
        self._version: str | None = None
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        """Read the rules and synonyms from the store (the version first: a write landing in
        between is read again at the next check)."""
        with self._lock:
            version = self.store.merchandising_version()
            rules, synonyms = tuple(self.store.rules()), tuple(self.store.synonyms())
            if self.lexical is not None:
                self.lexical.synonyms = SynonymMap.build(synonyms, self.lexical.tokenize)
            self.rules, self.synonyms, self._version = rules, synonyms, version
            self._checked = time.monotonic()

    def check(self) -> None:
        """Re-read the rules and synonyms if the store's version moved; asks at most every `refresh_s`."""
        if time.monotonic() - self._checked < self.refresh_s:
            return
        self._checked = time.monotonic()  # first: concurrent requests do not all ask the store
        try:
            if self.store.merchandising_version() != self._version:
                self.reload()
        except Exception:  # noqa: BLE001 - the store is down: answer with the rules we have, retry later
            log.warning("could not check the store for merchandising changes", exc_info=True)

    def current(self) -> tuple[tuple[Rule, ...], tuple[Synonym, ...]]:
        """The rules and synonyms as stored now (re-read if the store's version moved), for
        the admin API: what every engine serves within `rules_refresh_s`."""
        if self.store.merchandising_version() != self._version:
            self.reload()
        return self.rules, self.synonyms

    def rule(self, rule_id: int) -> Rule:
        found = next((r for r in self.current()[0] if r.id == rule_id), None)
        if found is None:
            raise NotFound(f"no rule with id {rule_id}; list them with GET /v1/admin/rules")
        return found

    def synonym(self, synonym_id: int) -> Synonym:
        found = next((s for s in self.current()[1] if s.id == synonym_id), None)
        if found is None:
            raise NotFound(f"no synonym with id {synonym_id}; list them with GET /v1/admin/synonyms")
        return found

    def plan(self, surface: str, catalog: LiveCatalog, query: str | None = None, category: str | None = None,
             moves: bool = True, now: float | None = None) -> Plan:
        """The rules in force for one answer (`query` normalised; `now`: Unix seconds, the clock by default)."""
        self.check()
        rules = self.rules
        if not rules:
            return Plan()
        now = time.time() if now is None else now
        return Plan.of([r for r in rules if applies(r, surface, query, category, now)], catalog, moves)
