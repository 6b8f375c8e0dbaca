"""The store protocol and what every backend shares: the schema version, event rows and frames.

Backends (`memory.py`, `sql.py`) import this module; only `shoplm.store` (`open_store`) imports the backends."""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence

import polars as pl
from sqlalchemy.engine import make_url

from shoplm.data.records import EVENT_FIELDS, Event, Item, Judgment

SCHEMA_VERSION = 1

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
}


class Store(Protocol):
    url: str

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
        """Erase the user: their events and every event of their sessions; returns how many."""

    def counts(self) -> dict[str, int]:
        """{"items": n, "events": n, "judgments": n}."""

    def schema_version(self) -> int:
        """The schema version the store was created with (`SCHEMA_VERSION` when current)."""

    def close(self) -> None: ...


def events_to_frame(rows: Iterable[Sequence]) -> pl.DataFrame:
    """Rows of (seq, *EVENT_FIELDS) -> a DataFrame with `EVENT_SCHEMA`."""
    return pl.DataFrame(list(rows), schema=EVENT_SCHEMA, orient="row")


def event_row(event: Event) -> tuple:
    return tuple(getattr(event, name) for name in EVENT_FIELDS)


def without_password(url: str) -> str:
    """The URL with any password masked: store URLs end up in error messages and logs."""
    return make_url(url).render_as_string(hide_password=True)
