"""`MemoryStore`: the in-memory `Store`, the test double that pins the contract down."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Sequence

import polars as pl

from shoplm.data.records import EVENT_FIELDS, Event, Item, Judgment
from shoplm.data.experiments import Experiment
from shoplm.data.rules import Rule, Synonym
from shoplm.errors import NotFound
import secrets

from shoplm.store.analytics import Aggregates, aggregate_frames
from shoplm.store.base import SCHEMA_VERSION, Change, Impression, event_row, events_to_frame, impressions_to_frame


def _belongs(row: tuple, user_id: str | None, session_id: str | None) -> bool:
    """row = (seq, timestamp, user_id, session_id, ...)"""
    if user_id is not None:
        return row[2] == user_id
    return session_id is not None and row[3] == session_id


class MemoryStore:
    url = "memory://"
    change_feed = False  # one process: nothing to follow

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._events: dict[str, tuple] = {}  # key -> (seq, *EVENT_FIELDS); dicts keep insertion order
        self._judgments: dict[tuple[str, str], Judgment] = {}
        self._impressions: dict[str, Impression] = {}
        self._secrets: dict[str, str] = {}
        self._lock = threading.Lock()
        self._merchandising: dict[str, dict[int, Rule | Synonym | Experiment]] = {
            "rule": {}, "synonym": {}, "experiment": {}}  # kind -> id -> record
        self._merchandising_writes = 0  # the version token; ids are never reused, as in the SQL tables
        self._next_id = {"rule": 1, "synonym": 1, "experiment": 1}

    def add_impressions(self, impressions: Sequence[Impression]) -> int:
        new = 0
        with self._lock:
            for impression in impressions:
                if impression.list_id not in self._impressions:
                    self._impressions[impression.list_id] = impression
                    new += 1
        return new

    def impressions_frame(self, since: float | None = None, until: float | None = None) -> pl.DataFrame:
        rows = [i for i in self._impressions.values()
                if (since is None or i.timestamp >= since) and (until is None or i.timestamp < until)]
        return impressions_to_frame(sorted(rows, key=lambda i: i.timestamp))

    def aggregates(self, since: float | None, until: float | None, window_s: float) -> Aggregates:
        events = self.events_frame()
        if since is not None:
            events = events.filter(pl.col("timestamp") >= since)
        if until is not None:
            events = events.filter(pl.col("timestamp") < until)
        return aggregate_frames(events, self.impressions_frame(since, until), window_s)

    def secret(self, name: str) -> str:
        with self._lock:
            return self._secrets.setdefault(name, secrets.token_hex(16))

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
            for list_id in [k for k, i in self._impressions.items() if i.user_id == user_id or i.session_id in sessions]:
                del self._impressions[list_id]  # the lists shown to them name the visitor and the query
        return len(doomed)

    def counts(self) -> dict[str, int]:
        return {"items": len(self._items), "events": len(self._events), "judgments": len(self._judgments)}

    def schema_version(self) -> int:
        return SCHEMA_VERSION

    def rules(self) -> list[Rule]:
        return self._records("rule")

    def put_rule(self, rule: Rule) -> Rule:
        return self._put("rule", rule)

    def delete_rule(self, rule_id: int) -> bool:
        return self._delete("rule", rule_id)

    def synonyms(self) -> list[Synonym]:
        return self._records("synonym")

    def put_synonym(self, synonym: Synonym) -> Synonym:
        return self._put("synonym", synonym)

    def delete_synonym(self, synonym_id: int) -> bool:
        return self._delete("synonym", synonym_id)

    def experiments(self) -> list[Experiment]:
        return self._records("experiment")

    def put_experiment(self, experiment: Experiment) -> Experiment:
        return self._put("experiment", experiment)

    def delete_experiment(self, experiment_id: int) -> bool:
        return self._delete("experiment", experiment_id)

    def merchandising_version(self) -> str:
        return str(self._merchandising_writes)

    def _records(self, kind: str) -> list:
        records = self._merchandising[kind]
        return [records[i] for i in sorted(records)]

    def _put(self, kind: str, record):
        now = time.time()
        with self._lock:
            records = self._merchandising[kind]
            if record.id is None:
                record = replace(record, id=self._next_id[kind], created_at=now, updated_at=now)
                self._next_id[kind] += 1
            elif record.id in records:
                record = replace(record, created_at=records[record.id].created_at, updated_at=now)
            else:
                raise NotFound(f"no {kind} with id {record.id}")
            records[record.id] = record
            self._merchandising_writes += 1
        return record

    def _delete(self, kind: str, record_id: int) -> bool:
        with self._lock:
            found = self._merchandising[kind].pop(record_id, None) is not None
            self._merchandising_writes += found
        return found

    def changes_after(self, after_id: int, limit: int = 1_000) -> list[Change]:
        return []

    def last_change_id(self) -> int:
        return 0

    def announce(self, kind: str, payload: dict[str, Any]) -> int:
        return 0

    def prune_changes(self, before: float) -> int:
        return 0

    def note_host(self, host: str) -> list[str]:
        return []  # one process

    def close(self) -> None:
        pass
