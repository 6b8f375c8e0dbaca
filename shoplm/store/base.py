"""The store protocol and what every backend shares: the schema version, event rows and frames.

Backends (`memory.py`, `sql.py`) import this module; only `shoplm.store` (`open_store`) imports the backends."""

from __future__ import annotations

import operator
from typing import Any, Iterable, Literal, NamedTuple, Protocol, Sequence, get_args

import polars as pl
from sqlalchemy.engine import make_url

from shoplm.data.records import EVENT_FIELDS, Event, Item, Judgment
from shoplm.data.experiments import Experiment
from shoplm.data.rules import Rule, Synonym
from shoplm.store.analytics import Aggregates

# 2: events.list_id and the impressions table; 3: the `changes` table, PostgreSQL's feed of
# catalog writes (shoplm/store/feed.py); 4: `impression_items`, each item a list showed (a
# click without a list_id is credited through it). An older store is upgraded in place; a
# newer one is refused, so no process that predates the feed can write the catalog without
# logging it, nor an impression without its items.
SCHEMA_VERSION = 4

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64,
    "timestamp": pl.Float64,
    "user_id": pl.String,
    "session_id": pl.String,
    "event_type": pl.String,
    "item_id": pl.String,
    "query": pl.String,
    "position": pl.Int64,
    "value": pl.Float64,
    "list_id": pl.String,
}


class Impression(NamedTuple):
    """One result list as it was shown: what `list_id` events point back to (attribution)."""

    list_id: str
    timestamp: float  # Unix seconds
    surface: str  # search, browse, recommend, similar, ads, suggest, ...
    item_ids: tuple[str, ...]  # in the order shown, position 0 first
    query: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    arm: str | None = None  # "experiment:arm" when the visitor is in an experiment


# What a change records: items upserted or deleted ({"item_ids": [...]}), a rule, synonym or
# experiment created/replaced or deleted ({"id": n}), a recommendation model swapped in
# ({"directory": path}), a visitor's events erased ({}: the feed keeps no personal data).
ChangeKind = Literal["items_upserted", "items_deleted", "rule_put", "rule_deleted", "synonym_put",
                     "synonym_deleted", "experiment_put", "experiment_deleted", "model_reloaded",
                     "events_erased"]
CHANGE_KINDS: tuple[str, ...] = get_args(ChangeKind)


class Change(NamedTuple):
    """One catalog write, as the change feed keeps it (shoplm/store/feed.py)."""

    id: int  # increases in commit order; gaps are rolled-back writes
    kind: str  # a ChangeKind
    payload: dict[str, Any]  # items_*: {"item_ids": [...]}; model_reloaded: {"directory": ...}; events_erased: {}; the others: {"id": n}
    created_at: float  # Unix seconds


class Store(Protocol):
    url: str
    change_feed: bool  # whether catalog writes are logged for other hosts to follow (PostgreSQL)

    def upsert_items(self, items: Sequence[Item]) -> int:
        """Insert or replace items by `item_id`; returns how many were written."""

    def delete_items(self, item_ids: Sequence[str]) -> int:
        """Remove items (their events stay: history is history); returns how many existed."""

    def add_events(self, events: Sequence[Event]) -> int:
        """Store events not already present (by `Event.key`); returns how many were new."""

    def upsert_judgments(self, judgments: Sequence[Judgment]) -> int:
        """Insert or replace judgments by (query, item_id); returns how many were written."""

    def item_ids(self) -> set[str]:
        """Every item_id in the catalog."""

    def items(self, item_ids: Sequence[str] | None = None) -> list[Item]:
        """The given items (unknown ids are left out), or the whole catalog ordered by id."""

    def events_frame(self) -> pl.DataFrame:
        """All events as a DataFrame with `EVENT_SCHEMA`, in insertion order (`seq`)."""

    def judgments(self) -> list[Judgment]:
        """All judgments, ordered by (query, item_id)."""

    def actor_events(self, user_id: str | None = None, session_id: str | None = None) -> list[Event]:
        """The events of one user (all their sessions) or, without a user, of one session;
        oldest first, ties in insertion order. The real-time path reads histories here."""

    def delete_user(self, user_id: str) -> int:
        """Erase the user: their events and every event of their sessions, and the impressions
        of the lists shown to them or their sessions; returns how many events."""

    def counts(self) -> dict[str, int]:
        """{"items": n, "events": n, "judgments": n}."""

    def schema_version(self) -> int:
        """The schema version the store was created with (`SCHEMA_VERSION` when current)."""

    def add_impressions(self, impressions: Sequence[Impression]) -> int:
        """Store result lists not already present (by `list_id`); returns how many were new."""

    def impressions_frame(self, since: float | None = None, until: float | None = None) -> pl.DataFrame:
        """Impressions with timestamp in [since, until) as a DataFrame with `IMPRESSION_SCHEMA`
        (`item_ids` a list column), oldest first."""

    def aggregates(self, since: float | None, until: float | None, window_s: float) -> Aggregates:
        """Impressions and credited events in [since, until) summed per surface, query and arm
        (shoplm/store/analytics.py says what is counted; SQL backends aggregate in the database)."""

    def secret(self, name: str) -> str:
        """A random secret kept with the store (created on first use): every process serving
        the store gets the same one (list ids are signed with it)."""

    def rules(self) -> list[Rule]:
        """Every merchandising rule, ordered by id (shoplm/data/rules.py)."""

    def put_rule(self, rule: Rule) -> Rule:
        """Create the rule (`id` None: a new id) or replace the one with its id (NotFound if
        none); returns it as stored, with id, created_at and updated_at (Unix seconds)."""

    def delete_rule(self, rule_id: int) -> bool:
        """Remove the rule; returns whether it existed."""

    def synonyms(self) -> list[Synonym]:
        """Every synonym, ordered by id."""

    def put_synonym(self, synonym: Synonym) -> Synonym:
        """`put_rule` for a synonym."""

    def delete_synonym(self, synonym_id: int) -> bool:
        """Remove the synonym; returns whether it existed."""

    def experiments(self) -> list[Experiment]:
        """Every experiment, ordered by id (shoplm/data/experiments.py)."""

    def put_experiment(self, experiment: Experiment) -> Experiment:
        """`put_rule` for an experiment."""

    def delete_experiment(self, experiment_id: int) -> bool:
        """Remove the experiment; returns whether it existed."""

    def merchandising_version(self) -> str:
        """A token that changes with every write of a rule or synonym (in the same transaction):
        an engine that saw another re-reads them."""

    def changes_after(self, after_id: int, limit: int = 1_000) -> list[Change]:
        """The catalog writes committed after change `after_id`, oldest first, at most `limit`;
        [] on a store without a feed. A reader that has applied every change up to an id has
        missed none below it (ids follow commit order)."""

    def last_change_id(self) -> int:
        """The newest change's id (0: none, or no feed). A process reads it before it loads the
        catalog and follows the changes after it, so no write falls in between."""

    def announce(self, kind: str, payload: dict[str, Any]) -> int:
        """Log a change that writes nothing in the store (a model swapped in) for the other
        hosts to follow; returns its id (0 without a feed)."""

    def note_host(self, host: str) -> list[str]:
        """Record that `host` serves this store now; returns the other hosts that did in the
        last day (for a store without a feed, a warning: their catalog writes are not seen here)."""

    def prune_changes(self, before: float) -> int:
        """Delete the changes logged before Unix time `before`; returns how many. A host that
        was away longer than that reloads its catalog instead of catching up (see feed.py)."""

    def close(self) -> None: ...


IMPRESSION_SCHEMA: dict[str, pl.DataType] = {
    "list_id": pl.String, "timestamp": pl.Float64, "surface": pl.String, "item_ids": pl.List(pl.String),
    "query": pl.String, "user_id": pl.String, "session_id": pl.String, "arm": pl.String,
}


def impressions_to_frame(rows: Iterable[Impression]) -> pl.DataFrame:
    return pl.DataFrame([tuple(r._replace(item_ids=list(r.item_ids))) for r in rows], schema=IMPRESSION_SCHEMA,
                        orient="row")


def events_to_frame(rows: Iterable[Sequence]) -> pl.DataFrame:
    """Rows of (seq, *EVENT_FIELDS) -> a DataFrame with `EVENT_SCHEMA`."""
    return pl.DataFrame(list(rows), schema=EVENT_SCHEMA, orient="row")


_EVENT_FIELDS_OF = operator.attrgetter(*EVENT_FIELDS)  # one C call: a quarter of the time of a getattr loop


def event_row(event: Event) -> tuple:
    """The event's fields in `EVENT_FIELDS` order (what the stores write)."""
    return _EVENT_FIELDS_OF(event)


def without_password(url: str) -> str:
    """The URL with any password masked: store URLs end up in error messages and logs."""
    return make_url(url).render_as_string(hide_password=True)
