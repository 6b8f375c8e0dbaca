"""The engine: the one Python API the HTTP service and the CLI share.

It owns the store and an in-memory copy of the catalog (the hot read path never goes to
the database for an item). Every write goes to the store first, in one transaction, and
only then into memory, so an acknowledged write is durable and the very next request
sees it (read-your-writes, no batching window).
"""

from __future__ import annotations

import threading
from typing import Sequence

from shoplm.config import Settings
from shoplm.errors import InvalidRecords, NotFound
from shoplm.profile import Profile, build_profile
from shoplm.records import Event, FieldProblem, Item
from shoplm.store import Store

UNKNOWN_ITEM = "an item_id in the catalog (unknown item: create it with POST /v1/items first)"


class Engine:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self._lock = threading.RLock()  # guards the in-memory catalog against concurrent writers
        self.items: dict[str, Item] = {item.item_id: item for item in store.items()}

    # --- catalog -------------------------------------------------------------------------
    def get_item(self, item_id: str) -> Item:
        item = self.items.get(item_id)
        if item is None:
            raise NotFound(f"no item with item_id {item_id!r}; create it with POST /v1/items first")
        return item

    def upsert_items(self, items: Sequence[Item]) -> int:
        with self._lock:
            written = self.store.upsert_items(items)
            self.items.update((item.item_id, item) for item in items)
        return written

    def delete_item(self, item_id: str) -> None:
        with self._lock:
            if not self.store.delete_items([item_id]):
                raise NotFound(f"no item with item_id {item_id!r}")
            self.items.pop(item_id, None)

    # --- behaviour -----------------------------------------------------------------------
    def add_events(self, events: Sequence[Event]) -> int:
        """Store the batch (all or nothing) and return how many were new. Events for items
        not in the catalog are refused, naming the position of each in the batch."""
        problems = {
            i: [FieldProblem("item_id", e.item_id, UNKNOWN_ITEM)]
            for i, e in enumerate(events) if e.item_id is not None and e.item_id not in self.items
        }
        if problems:
            raise InvalidRecords("events", problems)
        return self.store.add_events(events)

    def history(self, user_id: str | None = None, session_id: str | None = None) -> list[Event]:
        """The actor's events, oldest first, straight from the store (so always current)."""
        return self.store.actor_events(user_id=user_id, session_id=session_id)

    # --- users ---------------------------------------------------------------------------
    def profile(self, user_id: str | None = None, session_id: str | None = None) -> Profile:
        events = self.history(user_id=user_id, session_id=session_id)
        return build_profile(events, self.items, self.settings.event_weights, user_id=user_id, session_id=session_id)

    def delete_user(self, user_id: str) -> int:
        """Erase every event of the user and of their sessions; returns how many."""
        return self.store.delete_user(user_id)

    # --- health --------------------------------------------------------------------------
    def ready(self) -> bool:
        """The store answers."""
        try:
            self.store.counts()
        except Exception:  # noqa: BLE001 - any failure means not ready; /readyz reports it
            return False
        return True
