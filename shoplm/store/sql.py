"""`SqlStore`: the `Store` on SQLite (embedded default) or PostgreSQL, via SQLAlchemy Core.

Idempotency comes from unique keys plus `INSERT ... ON CONFLICT`, which both dialects
speak; each write method runs in one transaction. The schema carries a version in
`shoplm_meta` so an old store is refused with a clear message instead of misread.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from shoplm.errors import SchemaVersionMismatch, StoreError
from shoplm.data.records import EVENT_FIELDS, Event, Item, Judgment
from shoplm.store.base import SCHEMA_VERSION, event_row, events_to_frame, without_password

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()
meta_table = sa.Table(
    "shoplm_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
items_table = sa.Table(
    "items", metadata,
    sa.Column("item_id", sa.String(256), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("category", sa.Text),
    sa.Column("brand", sa.Text),
    sa.Column("price", sa.Double),
    sa.Column("available", sa.Boolean, nullable=False),
    sa.Column("sponsored_bid", sa.Double),
    sa.Column("attributes", sa.Text, nullable=False),  # JSON object
)
events_table = sa.Table(
    "events", metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("event_key", sa.String(32), nullable=False, unique=True),
    sa.Column("timestamp", sa.Double, nullable=False),
    sa.Column("user_id", sa.String(256), index=True),
    sa.Column("session_id", sa.String(256), index=True),
    sa.Column("event_type", sa.String(16), nullable=False),
    sa.Column("item_id", sa.String(256), index=True),
    sa.Column("query", sa.Text),
    sa.Column("position", sa.Integer),
    sa.Column("value", sa.Double),
)
judgments_table = sa.Table(
    "judgments", metadata,
    sa.Column("query", sa.Text, primary_key=True),
    sa.Column("item_id", sa.String(256), primary_key=True),
    sa.Column("relevance", sa.Double, nullable=False),
)
_ITEM_COLUMNS = [c.name for c in items_table.columns]


def _engine_for(url: str) -> sa.Engine:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, not psycopg2
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # pre_ping: a connection that died with a database restart is replaced, not handed out,
    # so the service recovers by itself; connect_timeout: an unreachable server fails fast (503).
    return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers never block the writer. synchronous=FULL: every commit is fsynced before
    # it returns, so an acknowledged write survives a power cut too, not only a killed
    # process (NORMAL would lose the last commits then); writes come in batches, so the one
    # fsync per commit costs little.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache: index inserts stay in memory longer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_EVENT_COLUMNS = [events_table.c[f.name] for f in dataclasses.fields(Event)]  # in Event's field order


class SqlStore:
    def __init__(self, url: str):
        self.url = url
        try:
            self.engine = _engine_for(url)
            self._insert = (postgresql if self.engine.dialect.name == "postgresql" else sqlite).insert
            with self.engine.begin() as conn:
                metadata.create_all(conn)
                self._check_version(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot open store {without_password(url)}: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}; "
                             "check that the server runs and the URL is right") from exc

    def _check_version(self, conn: sa.Connection) -> None:
        found = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
        if found is None:
            stmt = self._insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION))
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
        elif int(found) != SCHEMA_VERSION:
            raise SchemaVersionMismatch(
                f"store {without_password(self.url)} has schema version {found}, this shoplm expects {SCHEMA_VERSION}; "
                "ingest into a new store or upgrade shoplm to the version that wrote it"
            )

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar_one())

    def upsert_items(self, items: Sequence[Item]) -> int:
        if not items:
            return 0
        rows = [_item_row(item) for item in items]
        stmt = self._insert(items_table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["item_id"],
            set_={name: stmt.excluded[name] for name in _ITEM_COLUMNS if name != "item_id"},
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, rows)
        return len(rows)

    def delete_items(self, item_ids: Sequence[str]) -> int:
        with self.engine.begin() as conn:
            return conn.execute(sa.delete(items_table).where(items_table.c.item_id.in_(set(item_ids)))).rowcount

    def add_events(self, events: Sequence[Event]) -> int:
        return self.add_event_rows([(e.key, *event_row(e)) for e in events])

    def add_event_rows(self, rows: Sequence[tuple]) -> int:
        """`add_events` for rows already flattened to (event key, *EVENT_FIELDS): what the ingest
        writer process receives, as plain tuples pickle several times faster than Events."""
        if not rows:
            return 0
        if self.engine.dialect.name == "sqlite":
            return self._add_events_sqlite(rows)
        rows = [dict(zip(EVENT_FIELDS, row[1:]), event_key=row[0]) for row in rows]
        stmt = (
            self._insert(events_table)
            .on_conflict_do_nothing(index_elements=["event_key"])
            .returning(events_table.c.seq)
        )
        with self.engine.begin() as conn:
            # RETURNING yields one row per event actually inserted: an exact count of
            # new events on both dialects, where executemany's rowcount is not reliable.
            return len(conn.execute(stmt, rows).all())

    def _add_events_sqlite(self, rows: Sequence[tuple]) -> int:
        """The same insert through sqlite3's executemany (C, one prepared statement): about 4x
        the rows/s of SQLAlchemy's multi-VALUES RETURNING path. INSERT OR IGNORE skips events
        already stored; total_changes counts exactly the rows inserted."""
        columns = ("event_key", *EVENT_FIELDS)
        sql = (f"INSERT OR IGNORE INTO {events_table.name} ({', '.join(columns)}) "
               f"VALUES ({', '.join('?' * len(columns))})")
        with self.engine.begin() as conn:
            raw = conn.connection.driver_connection  # the sqlite3.Connection of this transaction
            before = raw.total_changes
            raw.executemany(sql, rows)
            return raw.total_changes - before

    def upsert_judgments(self, judgments: Sequence[Judgment]) -> int:
        if not judgments:
            return 0
        rows = [{"query": j.query, "item_id": j.item_id, "relevance": j.relevance} for j in judgments]
        stmt = self._insert(judgments_table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["query", "item_id"], set_={"relevance": stmt.excluded.relevance}
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, rows)
        return len(rows)

    def item_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(items_table.c.item_id)).scalars())

    def items(self, item_ids: Sequence[str] | None = None) -> list[Item]:
        query = sa.select(items_table)
        if item_ids is None:
            with self.engine.connect() as conn:
                return [_item_from_row(r) for r in conn.execute(query.order_by(items_table.c.item_id))]
        found: dict[str, Item] = {}
        wanted = list(dict.fromkeys(item_ids))
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 10_000):  # stay under bound-parameter limits
                chunk = wanted[start:start + 10_000]
                for row in conn.execute(query.where(items_table.c.item_id.in_(chunk))):
                    found[row.item_id] = _item_from_row(row)
        return [found[i] for i in item_ids if i in found]

    def events_frame(self) -> pl.DataFrame:
        columns = [events_table.c.seq, *(events_table.c[name] for name in EVENT_FIELDS)]
        with self.engine.connect() as conn:
            return events_to_frame(conn.execute(sa.select(*columns).order_by(events_table.c.seq)))

    def judgments(self) -> list[Judgment]:
        query = sa.select(judgments_table).order_by(judgments_table.c.query, judgments_table.c.item_id)
        with self.engine.connect() as conn:
            return [Judgment(r.query, r.item_id, r.relevance) for r in conn.execute(query)]

    def actor_events(self, user_id: str | None = None, session_id: str | None = None) -> list[Event]:
        if user_id is not None:
            where = events_table.c.user_id == user_id
        elif session_id is not None:
            where = events_table.c.session_id == session_id
        else:
            return []
        if "\x00" in (user_id or "") + (session_id or ""):
            return []  # no stored id holds a NUL (validation refuses them), and PostgreSQL cannot compare one
        query = sa.select(*_EVENT_COLUMNS).where(where).order_by(events_table.c.timestamp, events_table.c.seq)
        with self.engine.connect() as conn:
            # fetched at once and built positionally: row-by-row with _asdict was a fifth of
            # a recommendation request's time
            return [Event(*row) for row in conn.execute(query).all()]

    def delete_user(self, user_id: str) -> int:
        # Sessions are read first: SQLite may re-evaluate a subquery on the table being deleted from.
        find_sessions = (
            sa.select(events_table.c.session_id)
            .where(events_table.c.user_id == user_id, events_table.c.session_id.is_not(None))
            .distinct()
        )
        with self.engine.begin() as conn:
            sessions = list(conn.execute(find_sessions).scalars())
            doomed = events_table.c.user_id == user_id
            deleted = conn.execute(sa.delete(events_table).where(doomed)).rowcount
            for start in range(0, len(sessions), 10_000):
                chunk = sessions[start:start + 10_000]
                deleted += conn.execute(sa.delete(events_table).where(events_table.c.session_id.in_(chunk))).rowcount
            return deleted

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for name, table in (("items", items_table), ("events", events_table), ("judgments", judgments_table))
            }

    def close(self) -> None:
        self.engine.dispose()


def _item_row(item: Item) -> dict[str, Any]:
    row = {name: getattr(item, name) for name in _ITEM_COLUMNS if name != "attributes"}
    row["attributes"] = json.dumps(item.attributes, ensure_ascii=False, sort_keys=True)
    return row


def _item_from_row(row: Any) -> Item:
    values = row._asdict()
    values["attributes"] = json.loads(values["attributes"])
    return Item(**values)
