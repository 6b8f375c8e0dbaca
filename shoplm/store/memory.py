"""`MemoryStore`: the in-memory `Store`, the test double that pins the contract down."""

from __future__ import annotations

import threading
from typing import Sequence

import polars as pl

from shoplm.data.records import EVENT_FIELDS, Event, Item, Judgment
from shoplm.store.base import SCHEMA_VERSION, event_row, events_to_frame


def _belongs(row: tuple, user_id: str | None, session_id: str | None) -> bool:
    """row = (seq, timestamp, user_id, session_id, ...)"""
    if user_id is not None:
        return row[2] == user_id
    return session_id is not None and row[3] == session_id


class MemoryStore:
    url = "memory://"

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._events: dict[str, tuple] = {}  # key -> (seq, *EVENT_FIELDS); dicts keep insertion order
        self._judgments: dict[tuple[str, str], Judgment] = {}
        self._lock = threading.Lock()

    def upsert_items(self, items: Sequence[Item]) -> int:
        with self._lock:
            self._items.update((item.item_id, item) for item in items)
        return len(items)

    def delete_items(self, item_ids: Sequence[str]) -> int:
        with self._lock:
            return sum(self._items.pop(i, None) is not None for i in set(item_ids))

    def add_events(self, events: Sequence[Event]) -> int:
        new = 0
        with self._lock:
            for event in events:
                key = event.key
                if key not in self._events:
                    self._events[key] = (len(self._events) + 1, *event_row(event))
                    new += 1
        return new

    def upsert_judgments(self, judgments: Sequence[Judgment]) -> int:
        with self._lock:
            self._judgments.update(((j.query, j.item_id), j) for j in judgments)
        return len(judgments)

    def item_ids(self) -> set[str]:
        return set(self._items)

    def items(self, item_ids: Sequence[str] | None = None) -> list[Item]:
        if item_ids is None:
            return [self._items[i] for i in sorted(self._items)]
        return [self._items[i] for i in item_ids if i in self._items]

    def events_frame(self) -> pl.DataFrame:
        return events_to_frame(self._events.values())

    def judgments(self) -> list[Judgment]:
        return [self._judgments[k] for k in sorted(self._judgments)]

    def actor_events(self, user_id: str | None = None, session_id: str | None = None) -> list[Event]:
        rows = [r for r in self._events.values() if _belongs(r, user_id, session_id)]
        rows.sort(key=lambda r: (r[1], r[0]))  # (timestamp, seq)
        return [Event(**dict(zip(EVENT_FIELDS, r[1:]))) for r in rows]

    def delete_user(self, user_id: str) -> int:
        with self._lock:
            sessions = {r[3] for r in self._events.values() if r[2] == user_id and r[3] is not None}
            doomed = [k for k, r in self._events.items() if r[2] == user_id or (r[3] is not None and r[3] in sessions)]
            for key in doomed:
                del self._events[key]
        return len(doomed)

    def counts(self) -> dict[str, int]:
        return {"items": len(self._items), "events": len(self._events), "judgments": len(self._judgments)}

    def schema_version(self) -> int:
        return SCHEMA_VERSION

    def close(self) -> None:
        pass
