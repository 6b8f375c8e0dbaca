"""The change feed: every catalog write a PostgreSQL store commits, in commit order, for the
`shoplm serve` processes on other machines to follow.

A write of items, rules, synonyms or experiments (`SqlStore.upsert_items`, `delete_items`,
`put_rule`, `delete_rule`, ... ) appends one row to `changes` and calls
`pg_notify('shoplm_changes', id)` in its own transaction, so a change is visible, and
notified, exactly when the write is. Ids are taken under a transaction-level advisory lock
held until commit, so they increase in commit order: a reader that has applied every change
up to id N has missed none below N, and "the changes after my last id" is all it ever asks.
(Without the lock a write could take id 5, another id 6 and commit first; a reader at 6
would never see 5.) The lock is taken as a write's last statement, so catalog writes queue
only for the moment of their commit.

`ChangeListener` follows the feed on a thread: LISTEN on a connection of its own wakes it at
each commit, it reads the changes after the last one it applied and hands them to a
callback, in order and each once; after a lost connection it reconnects and catches up from
that id. SQLite and `memory://` serve one host and keep no feed (`follow_changes` says so).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from shoplm.errors import StoreError
from shoplm.store.base import CHANGE_KINDS, Change, Store, without_password

log = logging.getLogger(__name__)

CHANNEL = "shoplm_changes"  # the NOTIFY channel; the payload is the change's id
_ORDER_LOCK = 0x73686F706C6D  # "shoplm" in ASCII: the advisory lock that orders change ids by commit
_WAKE_S = 0.5  # how often the listener looks up from LISTEN, so that `stop` takes effect

feed_metadata = sa.MetaData()  # PostgreSQL only: SQLite keeps no feed
changes_table = sa.Table(
    "changes", feed_metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),  # bigserial
    sa.Column("kind", sa.String(32), nullable=False),  # a ChangeKind
    sa.Column("payload", postgresql.JSONB, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),  # Unix seconds
)
pruned_table = sa.Table(  # one row: the newest id `prune_changes` deleted (a reader behind it has a gap)
    "changes_pruned", feed_metadata,
    sa.Column("one", sa.Integer, primary_key=True),  # always 1
    sa.Column("through", sa.BigInteger, nullable=False),
)


class ChangesPruned(StoreError):
    """The changes after the reader's id were pruned: it can only reload everything."""

    def __init__(self, after_id: int, through: int):
        super().__init__(f"the changes after {after_id} up to {through} were pruned (SHOPLM_CHANGES_RETENTION_DAYS); "
                         "a host that was away that long reloads its catalog")
        self.after_id, self.through = after_id, through


def append_change(conn: sa.Connection, kind: str, payload: dict[str, Any]) -> int:
    """Log one catalog write in the caller's transaction (its last statement); returns the id."""
    assert kind in CHANGE_KINDS, kind
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ORDER_LOCK)))  # held until this commits
    change_id = conn.execute(sa.insert(changes_table).values(kind=kind, payload=payload, created_at=time.time())
                             .returning(changes_table.c.id)).scalar_one()
    conn.execute(sa.select(sa.func.pg_notify(CHANNEL, str(change_id))))  # delivered at commit, not before
    return change_id


def read_changes(conn: sa.Connection, after_id: int, limit: int) -> list[Change]:
    """The changes after `after_id`; ChangesPruned if some of them are gone."""
    through = conn.execute(sa.select(pruned_table.c.through)).scalar() or 0
    if after_id < through:
        raise ChangesPruned(after_id, through)
    t = changes_table
    query = (sa.select(t.c.id, t.c.kind, t.c.payload, t.c.created_at)
             .where(t.c.id > after_id).order_by(t.c.id).limit(limit))
    return [Change(*row) for row in conn.execute(query)]


def prune_changes(conn: sa.Connection, before: float) -> int:
    """Delete the changes logged before `before` (Unix time), always keeping the newest (so ids
    never restart), and remember the newest id deleted."""
    t = changes_table
    newest = newest_change_id(conn)
    deleted = conn.execute(sa.delete(t).where(t.c.created_at < before, t.c.id < newest).returning(t.c.id)).scalars().all()
    if deleted:
        stmt = postgresql.insert(pruned_table).values(one=1, through=max(deleted))
        conn.execute(stmt.on_conflict_do_update(index_elements=["one"],
                                                set_={"through": sa.func.greatest(pruned_table.c.through, max(deleted))}))
    return len(deleted)


def newest_change_id(conn: sa.Connection) -> int:
    return conn.execute(sa.select(sa.func.coalesce(sa.func.max(changes_table.c.id), 0))).scalar_one()


class ChangeListener:
    """Hands every change of `store` after `after_id` to `apply`, in id order and each once,
    from a thread of its own (`start`, `stop`).

    `apply(changes)` gets a list, oldest first; `last_id` moves past them only when it returns,
    so a change whose apply raised is offered again (after `retry_s`, doubling up to
    `max_retry_s`). Keep `last_id` with what was applied and pass it as `after_id` next time:
    a listener that was down then catches up from there. Besides LISTEN it reads the feed every
    `poll_s` seconds: a connection that died without a word (a network partition) delays a
    change by at most that long (TCP keepalives end such a connection within about 25 s).
    When the changes it needs were pruned (`prune_changes`: it was away longer than their
    retention) it calls `resync()`, which must reload everything, and goes on from there."""

    def __init__(self, store: Store, apply: Callable[[list[Change]], None], *, after_id: int,
                 resync: Callable[[], None] | None = None, poll_s: float = 5.0, retry_s: float = 0.5,
                 max_retry_s: float = 30.0, batch: int = 1_000):
        self.store, self.apply, self.resync = store, apply, resync
        self.last_id = after_id
        self.poll_s, self.retry_s, self.max_retry_s, self.batch = poll_s, retry_s, max_retry_s, batch
        self.connections = 0  # LISTEN connections made so far (more than 1: it reconnected)
        self.listening = threading.Event()  # set while LISTEN is in place
        self._stopping = threading.Event()
        self._applying = threading.Lock()  # the thread and direct callers of catch_up take turns
        self._thread: threading.Thread | None = None

    def catch_up(self) -> int:
        """Read and apply every change after `last_id` now; returns how many were applied."""
        applied = 0
        with self._applying:
            while True:
                try:
                    changes = self.store.changes_after(self.last_id, self.batch)
                except ChangesPruned as gap:
                    if self.resync is None:
                        raise
                    log.warning("%s; reloading", gap)
                    newest = self.store.last_change_id()  # first: a write during the reload is applied after it
                    self.resync()
                    self.last_id = max(newest, gap.through)
                    continue
                if not changes:
                    return applied
                self.apply(changes)
                self.last_id = changes[-1].id
                applied += len(changes)

    def notified(self, change_id: int) -> int:
        """Take a notification of change `change_id`: a catch-up, unless that change is already
        applied (a repeated or late notification: the catch-up it would start finds nothing)."""
        return 0 if change_id <= self.last_id else self.catch_up()

    def start(self) -> ChangeListener:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="shoplm-change-listener", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        delay = self.retry_s
        while not self._stopping.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connections += 1
                    self.listening.set()
                    self.catch_up()  # after LISTEN: whatever commits from now on is notified
                    delay = self.retry_s
                    self._follow(conn)
            except Exception as exc:  # noqa: BLE001 - the server went away, a read failed or apply raised
                if self._stopping.is_set():
                    break
                log.warning("change feed of %s: %s: %s; retrying from change %d in %.1f s",
                            without_password(self.store.url), exc.__class__.__name__, exc, self.last_id, delay)
                self._stopping.wait(delay)
                delay = min(2 * delay, self.max_retry_s)
            finally:
                self.listening.clear()

    def _follow(self, conn: Any) -> None:
        polled = time.monotonic()
        while not self._stopping.is_set():
            for notify in conn.notifies(timeout=_WAKE_S):
                self.notified(int(notify.payload) if notify.payload.isdigit() else self.last_id + 1)
                polled = time.monotonic()
            if time.monotonic() - polled >= self.poll_s:
                self.catch_up()
                polled = time.monotonic()

    def _connect(self) -> Any:
        import psycopg

        url = make_url(self.store.url).set(drivername="postgresql")  # a libpq URI, whatever the driver named
        return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True, connect_timeout=5,
                               application_name="shoplm-change-listener",
                               keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)


def follow_changes(store: Store, apply: Callable[[list[Change]], None], *, after_id: int,
                   **options: Any) -> ChangeListener | None:
    """A started `ChangeListener` on `store`, or None where the store keeps no feed: SQLite
    and memory:// serve one host, whose own writes need no feed. Such a store remembers the
    hosts that serve it, and a second one gets a warning."""
    if not store.change_feed:
        others = store.note_host(socket.gethostname())
        (log.warning if others else log.info)(
            "store %s keeps no change feed: it serves one host (any number of workers)%s. To serve one catalog "
            "from several machines, use PostgreSQL (SHOPLM_STORE_URL=postgresql://...)", without_password(store.url),
            f"; hosts {', '.join(others)} served it in the last day, and their catalog writes reach this host only "
            "when it restarts" if others else "")
        return None
    return ChangeListener(store, apply, after_id=after_id, **options).start()
