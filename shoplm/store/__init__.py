"""Where items, events and judgments live: one small protocol, the URL picks the backend.

- `memory://` — `MemoryStore`, a dict-backed test double with the same contract;
- `sqlite:///path.db` — the embedded default; `postgresql://user@host/db` — production.
  Both are `SqlStore` (SQLAlchemy Core, shoplm/store/sql.py).

Every write method is one transaction: a process killed mid-ingest leaves whole batches or
nothing. Events are idempotent on `Event.key`, items are upserted on `item_id`, judgments
on (query, item_id), so re-running an ingest completes the data without duplicates.
"""

from __future__ import annotations

from shoplm.errors import StoreError
from shoplm.store.base import Store

__all__ = ["Store", "open_store"]


def open_store(url: str) -> Store:
    """`memory://`, `sqlite:///path.db` or `postgresql://...` -> a ready `Store`."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "memory":
        from shoplm.store.memory import MemoryStore

        return MemoryStore()
    if scheme in ("sqlite", "postgresql", "postgres"):
        from shoplm.store.sql import SqlStore

        return SqlStore(url)
    raise StoreError(
        f"store URL {url!r}: unknown scheme {scheme!r}; expected memory://, "
        "sqlite:///path.db or postgresql://user@host:port/database"
    )
