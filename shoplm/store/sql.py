"""`SqlStore`: the `Store` on SQLite (embedded default) or PostgreSQL, via SQLAlchemy Core.

Idempotency comes from unique keys plus `INSERT ... ON CONFLICT`, which both dialects
speak; each write method runs in one transaction. Large event batches take a bulk path on
each: sqlite3's executemany, PostgreSQL's COPY (shoplm/store/bulk.py). On PostgreSQL every
catalog write also logs itself to the change feed, in its transaction (shoplm/store/feed.py).
The schema carries a version in `shoplm_meta`: an older store is upgraded in place, a newer
one refused with a clear message instead of misread.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from shoplm.errors import NotFound, SchemaVersionMismatch, StoreError
from shoplm.data.records import EVENT_FIELDS, Event, Item, Judgment
from shoplm.data.experiments import Experiment
from shoplm.data.rules import Rule, Synonym
from shoplm.store.analytics import ARMS, ENGAGED, ENGAGED_SCHEMA, LENGTHS, LISTS, POSITIONS, Aggregates
from shoplm.store.base import SCHEMA_VERSION, Change, Impression, event_row, events_to_frame, impressions_to_frame, without_password
from shoplm.store.bulk import COPY_MIN_ROWS, StagedInsert
from shoplm.store.feed import append_change, prune_changes, feed_metadata, newest_change_id, read_changes

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
    sa.Column("list_id", sa.String(64), index=True),
)
impressions_table = sa.Table(
    "impressions", metadata,
    sa.Column("list_id", sa.String(64), primary_key=True),
    sa.Column("timestamp", sa.Double, nullable=False, index=True),
    sa.Column("surface", sa.String(32), nullable=False),
    sa.Column("item_ids", sa.Text, nullable=False),  # JSON list, in the order shown
    sa.Column("n_items", sa.Integer, nullable=False),  # its length, for aggregates (zero results, CTR by position)
    sa.Column("query", sa.Text),
    sa.Column("user_id", sa.String(256), index=True),
    sa.Column("session_id", sa.String(256), index=True),
    sa.Column("arm", sa.String(256)),
)
# One row per item shown: what lets SQL find "the last list that showed this item to this
# visitor" for a click without a list_id (JSON containment is spelled differently by each
# dialect; a plain join is not).
impression_items_table = sa.Table(
    "impression_items", metadata,
    sa.Column("list_id", sa.String(64), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.String(256), nullable=False, index=True),
)
judgments_table = sa.Table(
    "judgments", metadata,
    sa.Column("query", sa.Text, primary_key=True),
    sa.Column("item_id", sa.String(256), primary_key=True),
    sa.Column("relevance", sa.Double, nullable=False),
)


def _documents(name: str) -> sa.Table:
    """A table of JSON records with an id that is never reused (merchandising rules and
    synonyms). New tables need no schema version: `create_all` adds them to an older store."""
    return sa.Table(
        name, metadata,
        sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("body", sa.Text, nullable=False),  # JSON object: the record without id and times
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sqlite_autoincrement=True,  # SQLite would hand a deleted highest id out again
    )


rules_table, synonyms_table = _documents("rules"), _documents("synonyms")
experiments_table = _documents("experiments")
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


_MERCHANDISING = "merchandising_version"  # shoplm_meta key of the token that moves with every rule or synonym write
_EVENT_COLUMNS = [events_table.c[f.name] for f in dataclasses.fields(Event)]  # in Event's field order
# An actor's events, oldest first: built once, bound per call (building the statement was a
# third of the read's time on a served recommendation).
_ACTOR_EVENTS = {column: sa.select(*_EVENT_COLUMNS).where(events_table.c[column] == sa.bindparam("actor"))
                 .order_by(events_table.c.timestamp, events_table.c.seq) for column in ("user_id", "session_id")}
_COPY_EVENTS = StagedInsert(events_table, ["event_key", *EVENT_FIELDS], "event_key")  # PostgreSQL, large batches


class SqlStore:
    def __init__(self, url: str):
        self.url = url
        try:
            self.engine = _engine_for(url)
            self._insert = (postgresql if self.engine.dialect.name == "postgresql" else sqlite).insert
            self.change_feed = self.engine.dialect.name == "postgresql"  # SQLite serves one host
            with self.engine.begin() as conn:
                metadata.create_all(conn)
                if self.change_feed:
                    feed_metadata.create_all(conn)
                self._check_version(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot open store {without_password(url)}: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}; "
                             "check that the server runs and the URL is right") from exc

    def _check_version(self, conn: sa.Connection) -> None:
        """Record the version in a new store, upgrade an older one in place, refuse a newer one."""
        found = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
        if found is None:
            stmt = self._insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION))
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
            return
        if not 1 <= int(found) <= SCHEMA_VERSION:
            raise SchemaVersionMismatch(
                f"store {without_password(self.url)} has schema version {found}, this shoplm expects {SCHEMA_VERSION}; "
                "ingest into a new store or upgrade shoplm to the version that wrote it"
            )
        for version in range(int(found), SCHEMA_VERSION):
            _UPGRADES[version](conn)
        if int(found) != SCHEMA_VERSION:
            conn.execute(sa.update(meta_table).where(meta_table.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))

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
            self._changed(conn, "items_upserted", {"item_ids": [row["item_id"] for row in rows]})
        return len(rows)

    def delete_items(self, item_ids: Sequence[str]) -> int:
        doomed = sa.delete(items_table).where(items_table.c.item_id.in_(set(item_ids)))
        with self.engine.begin() as conn:
            if not self.change_feed:
                return conn.execute(doomed).rowcount
            deleted = sorted(conn.execute(doomed.returning(items_table.c.item_id)).scalars())
            if deleted:
                self._changed(conn, "items_deleted", {"item_ids": deleted})
            return len(deleted)

    def add_events(self, events: Sequence[Event]) -> int:
        return self.add_event_rows([(e.key, *event_row(e)) for e in events])

    def add_event_rows(self, rows: Sequence[tuple]) -> int:
        """`add_events` for rows already flattened to (event key, *EVENT_FIELDS): what the ingest
        writer process receives, as plain tuples pickle several times faster than Events."""
        if not rows:
            return 0
        if self.engine.dialect.name == "sqlite":
            return self._add_events_sqlite(rows)
        if len(rows) >= COPY_MIN_ROWS:  # COPY + one INSERT ... SELECT: shoplm/store/bulk.py
            with self.engine.begin() as conn:
                return _COPY_EVENTS(conn, rows)
        rows = [dict(zip(EVENT_FIELDS, row[1:]), event_key=row[0]) for row in rows]
        stmt = (
            self._insert(events_table)
            .on_conflict_do_nothing(index_elements=["event_key"])
            .returning(events_table.c.seq)
        )
        with self.engine.begin() as conn:
            # RETURNING yields one row per event actually inserted: an exact count of
            # new events, where executemany's rowcount is not reliable.
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
        column, actor = ("user_id", user_id) if user_id is not None else ("session_id", session_id)
        if actor is None:
            return []
        if "\x00" in actor:
            return []  # no stored id holds a NUL (validation refuses them), and PostgreSQL cannot compare one
        with self.engine.connect() as conn:
            # fetched at once and built positionally: row-by-row with _asdict was a fifth of
            # a recommendation request's time
            return [Event(*row) for row in conn.execute(_ACTOR_EVENTS[column], {"actor": actor}).all()]

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
            i = impressions_table  # and the lists shown to them (they name the visitor and the query)
            lists = list(conn.execute(sa.select(i.c.list_id).where(i.c.user_id == user_id)).scalars())
            for start in range(0, len(sessions), 10_000):
                lists += conn.execute(sa.select(i.c.list_id).where(i.c.session_id.in_(sessions[start:start + 10_000]))).scalars()
            for start in range(0, len(lists), 10_000):
                chunk = lists[start:start + 10_000]
                conn.execute(sa.delete(impression_items_table).where(impression_items_table.c.list_id.in_(chunk)))
                conn.execute(sa.delete(i).where(i.c.list_id.in_(chunk)))
            if deleted:  # every host recomputes what it derived from events (popularity)
                self._changed(conn, "events_erased", {})
            return deleted

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for name, table in (("items", items_table), ("events", events_table), ("judgments", judgments_table))
            }

    def add_impressions(self, impressions: Sequence[Impression]) -> int:
        if not impressions:
            return 0
        rows = [{**i._asdict(), "item_ids": json.dumps(list(i.item_ids), ensure_ascii=False), "n_items": len(i.item_ids)}
                for i in impressions]
        stmt = (self._insert(impressions_table).on_conflict_do_nothing(index_elements=["list_id"])
                .returning(impressions_table.c.list_id))
        with self.engine.begin() as conn:
            new = set(conn.execute(stmt, rows).scalars())
            shown = [(i.list_id, p, item) for i in impressions if i.list_id in new for p, item in enumerate(i.item_ids)]
            if shown:
                # the driver's executemany with tuples: a row per shown item is ten per list, and
                # building SQLAlchemy parameter dicts for them held the GIL long enough, once a
                # second, to add 12 ms to a recommendation's p99 at 8 clients
                mark = "?" if self.engine.dialect.name == "sqlite" else "%s"
                conn.exec_driver_sql(f"INSERT INTO impression_items (list_id, position, item_id) VALUES "
                                     f"({mark}, {mark}, {mark}) ON CONFLICT DO NOTHING", shown)
            return len(new)

    def impressions_frame(self, since: float | None = None, until: float | None = None) -> pl.DataFrame:
        query = sa.select(*(impressions_table.c[name] for name in Impression._fields)).order_by(impressions_table.c.timestamp)
        if since is not None:
            query = query.where(impressions_table.c.timestamp >= since)
        if until is not None:
            query = query.where(impressions_table.c.timestamp < until)
        with self.engine.connect() as conn:
            rows = [Impression(*row[:3], tuple(json.loads(row[3])), *row[4:]) for row in conn.execute(query)]
        return impressions_to_frame(rows)

    def aggregates(self, since: float | None, until: float | None, window_s: float) -> Aggregates:
        """shoplm/store/analytics.py's `Aggregates`, each one GROUP BY in the database."""
        i, e = impressions_table, events_table
        in_range = [c for c in ((i.c.timestamp >= since) if since is not None else None,
                                (i.c.timestamp < until) if until is not None else None) if c is not None]
        e_range = [c for c in ((e.c.timestamp >= since) if since is not None else None,
                               (e.c.timestamp < until) if until is not None else None) if c is not None]
        actor = sa.func.coalesce(i.c.user_id, i.c.session_id)
        lists = sa.select(i.c.surface, i.c.query, i.c.arm, sa.func.count().label("impressions"),
                          sa.func.sum(sa.case((i.c.n_items == 0, 1), else_=0)).label("zero_results"),
                          sa.func.count(sa.distinct(actor)).label("visitors")).where(*in_range).group_by(
            i.c.surface, i.c.query, i.c.arm)
        c = e.alias("c")  # the click a cart or purchase without a list_id came from
        same_actor = sa.or_(sa.and_(e.c.session_id.is_not(None), c.c.session_id == e.c.session_id),
                            sa.and_(e.c.session_id.is_(None), c.c.user_id == e.c.user_id))
        via_click = (sa.select(c.c.list_id).where(
            c.c.item_id == e.c.item_id, c.c.event_type == "click", c.c.list_id.is_not(None), same_actor,
            c.c.timestamp <= e.c.timestamp, c.c.timestamp >= e.c.timestamp - window_s)
            .order_by(c.c.timestamp.desc(), c.c.seq.desc()).limit(1).scalar_subquery())
        ii, seen = impression_items_table, i.alias("seen")  # the last list that showed the item to the visitor
        seen_by = sa.or_(sa.and_(e.c.session_id.is_not(None), seen.c.session_id == e.c.session_id),
                         sa.and_(e.c.session_id.is_(None), seen.c.user_id == e.c.user_id))
        via_list = (sa.select(ii.c.list_id).join_from(ii, seen, seen.c.list_id == ii.c.list_id).where(
            ii.c.item_id == e.c.item_id, seen_by, seen.c.timestamp <= e.c.timestamp,
            seen.c.timestamp >= e.c.timestamp - window_s)
            .order_by(seen.c.timestamp.desc(), seen.c.list_id.desc()).limit(1).scalar_subquery())
        credited = sa.select(e.c.event_type, e.c.value, e.c.position, e.c.item_id, sa.case(
            (e.c.list_id.is_not(None), e.c.list_id), (e.c.event_type == "click", via_list),
            else_=sa.func.coalesce(via_click, via_list),
        ).label("lid")).where(e.c.event_type.in_(ENGAGED), *e_range).subquery()
        position = sa.func.coalesce(credited.c.position, sa.select(sa.func.min(ii.c.position)).where(
            ii.c.list_id == credited.c.lid, ii.c.item_id == credited.c.item_id).scalar_subquery())
        joined = sa.select(i.c.surface, i.c.query, i.c.arm, credited.c.event_type, credited.c.value,
                           position.label("position"), actor.label("actor")).join_from(
            credited, i, i.c.list_id == credited.c.lid).where(*in_range).subquery()
        j = joined.c
        engaged = sa.select(j.surface, j.query, j.arm,
                            sa.func.sum(sa.case((j.event_type == "click", 1), else_=0)).label("clicks"),
                            sa.func.sum(sa.case((j.event_type == "add_to_cart", 1), else_=0)).label("carts"),
                            sa.func.sum(sa.case((j.event_type == "purchase", 1), else_=0)).label("purchases"),
                            sa.func.sum(sa.case((j.event_type == "purchase", sa.func.coalesce(j.value, 0.0)),
                                                else_=0.0)).label("revenue")).group_by(j.surface, j.query, j.arm)
        positions = (sa.select(j.surface, j.position, sa.func.count().label("clicks"))
                     .where(j.event_type == "click", j.position.is_not(None)).group_by(j.surface, j.position))
        lengths = sa.select(i.c.surface, i.c.n_items, sa.func.count().label("impressions")).where(*in_range).group_by(
            i.c.surface, i.c.n_items)
        arms = (sa.select(i.c.arm, sa.func.count(sa.distinct(actor)).label("visitors"))
                .where(i.c.arm.is_not(None), *in_range).group_by(i.c.arm))
        acted = (sa.select(j.arm, sa.func.count(sa.distinct(sa.case((j.event_type == "click", j.actor)))).label("clicked"),
                           sa.func.count(sa.distinct(sa.case((j.event_type == "purchase", j.actor)))).label("bought"))
                 .where(j.arm.is_not(None)).group_by(j.arm).subquery())
        arms = arms.subquery()
        arms = sa.select(arms.c.arm, arms.c.visitors, sa.func.coalesce(acted.c.clicked, 0),
                         sa.func.coalesce(acted.c.bought, 0)).join_from(arms, acted, acted.c.arm == arms.c.arm,
                                                                       isouter=True)
        with self.engine.connect() as conn:
            frames = [_frame(conn.execute(q), schema) for q, schema in (
                (lists, LISTS), (engaged, ENGAGED_SCHEMA), (positions, POSITIONS), (lengths, LENGTHS), (arms, ARMS))]
        return Aggregates(*frames)

    def secret(self, name: str) -> str:
        key = f"secret:{name}"
        with self.engine.begin() as conn:
            stmt = self._insert(meta_table).values(key=key, value=secrets.token_hex(16))
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))  # the first process to ask creates it
            return conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == key)).scalar_one()

    def rules(self) -> list[Rule]:
        return [Rule.from_body(*row) for row in self._records(rules_table)]

    def put_rule(self, rule: Rule) -> Rule:
        return Rule.from_body(*self._put(rules_table, rule.id, rule.body()))

    def delete_rule(self, rule_id: int) -> bool:
        return self._delete(rules_table, rule_id)

    def synonyms(self) -> list[Synonym]:
        return [Synonym.from_body(*row) for row in self._records(synonyms_table)]

    def put_synonym(self, synonym: Synonym) -> Synonym:
        return Synonym.from_body(*self._put(synonyms_table, synonym.id, synonym.body()))

    def delete_synonym(self, synonym_id: int) -> bool:
        return self._delete(synonyms_table, synonym_id)

    def merchandising_version(self) -> str:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == _MERCHANDISING)).scalar()
        return found or ""

    def experiments(self) -> list[Experiment]:
        return [Experiment.from_body(*row) for row in self._records(experiments_table)]

    def put_experiment(self, experiment: Experiment) -> Experiment:
        return Experiment.from_body(*self._put(experiments_table, experiment.id, experiment.body()))

    def delete_experiment(self, experiment_id: int) -> bool:
        return self._delete(experiments_table, experiment_id)

    def _records(self, table: sa.Table) -> list[tuple]:
        """(body, id, created_at, updated_at) of every record, by id."""
        query = sa.select(table.c.body, table.c.id, table.c.created_at, table.c.updated_at).order_by(table.c.id)
        with self.engine.connect() as conn:
            return [(json.loads(body), *rest) for body, *rest in conn.execute(query)]

    def _put(self, table: sa.Table, record_id: int | None, body: dict) -> tuple:
        """Insert (no id) or update one record and move the version token, in one transaction."""
        now, text = time.time(), json.dumps(body, ensure_ascii=False, sort_keys=True)
        with self.engine.begin() as conn:
            if record_id is None:
                inserted = conn.execute(sa.insert(table).values(body=text, created_at=now, updated_at=now))
                record_id, created = inserted.inserted_primary_key[0], now
            else:
                update = sa.update(table).where(table.c.id == record_id).values(body=text, updated_at=now)
                created = conn.execute(update.returning(table.c.created_at)).scalar()
                if created is None:
                    raise NotFound(f"no {table.name[:-1]} with id {record_id}")
            self._moved(conn)
            self._changed(conn, f"{table.name[:-1]}_put", {"id": int(record_id)})
        return body, int(record_id), created, now

    def _delete(self, table: sa.Table, record_id: int) -> bool:
        with self.engine.begin() as conn:
            found = conn.execute(sa.delete(table).where(table.c.id == record_id)).rowcount > 0
            if found:
                self._moved(conn)
                self._changed(conn, f"{table.name[:-1]}_deleted", {"id": int(record_id)})
        return found

    def _changed(self, conn: sa.Connection, kind: str, payload: dict[str, Any]) -> None:
        """Log a catalog write to the change feed, in its transaction (PostgreSQL; see feed.py)."""
        if self.change_feed:
            append_change(conn, kind, payload)

    def changes_after(self, after_id: int, limit: int = 1_000) -> list[Change]:
        if not self.change_feed:
            return []
        with self.engine.connect() as conn:
            return read_changes(conn, after_id, limit)

    def announce(self, kind: str, payload: dict[str, Any]) -> int:
        if not self.change_feed:
            return 0
        with self.engine.begin() as conn:
            return append_change(conn, kind, payload)

    def note_host(self, host: str) -> list[str]:
        now = time.time()
        key = meta_table.c.key
        with self.engine.begin() as conn:
            stmt = self._insert(meta_table).values(key=f"host:{host}", value=repr(now))
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": repr(now)}))
            rows = conn.execute(sa.select(key, meta_table.c.value).where(key.like("host:%"))).all()
        return sorted(k[5:] for k, seen in rows if k != f"host:{host}" and now - float(seen) < 86_400)

    def prune_changes(self, before: float) -> int:
        if not self.change_feed:
            return 0
        with self.engine.begin() as conn:
            return prune_changes(conn, before)

    def last_change_id(self) -> int:
        if not self.change_feed:
            return 0
        with self.engine.connect() as conn:
            return newest_change_id(conn)

    def _moved(self, conn: sa.Connection) -> None:
        stmt = self._insert(meta_table).values(key=_MERCHANDISING, value=uuid.uuid4().hex)
        conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value}))

    def close(self) -> None:
        self.engine.dispose()


def _add_list_ids(conn: sa.Connection) -> None:
    """Version 1 -> 2: events.list_id (`create_all` has made the impressions table)."""
    conn.execute(sa.text("ALTER TABLE events ADD COLUMN list_id VARCHAR(64)"))
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_events_list_id ON events (list_id)"))


def _index_impressions(conn: sa.Connection, page: int = 5_000) -> None:
    """Version 3 -> 4: impressions indexed by visitor, and `impression_items` (made by
    `create_all`) filled from the impressions' JSON lists, a page at a time."""
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_impressions_user_id ON impressions (user_id)"))
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_impressions_session_id ON impressions (session_id)"))
    i, after = impressions_table, ""
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(impression_items_table)
    while True:
        rows = conn.execute(sa.select(i.c.list_id, i.c.item_ids).where(i.c.list_id > after)
                            .order_by(i.c.list_id).limit(page)).all()
        if not rows:
            return
        shown = [{"list_id": list_id, "position": p, "item_id": item}
                 for list_id, ids in rows for p, item in enumerate(json.loads(ids))]
        if shown:
            conn.execute(insert.on_conflict_do_nothing(), shown)
        after = rows[-1][0]


# version -> the in-place upgrade to the next one, applied oldest first when a store is opened
_UPGRADES: dict[int, Callable[[sa.Connection], None]] = {
    1: _add_list_ids,
    2: lambda conn: None,  # -> 3: the changes table, which `create_all` has made (PostgreSQL only)
    3: _index_impressions,
}


def _frame(result: Any, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame([tuple(r) for r in result], schema=schema, orient="row")


def _item_row(item: Item) -> dict[str, Any]:
    row = {name: getattr(item, name) for name in _ITEM_COLUMNS if name != "attributes"}
    row["attributes"] = json.dumps(item.attributes, ensure_ascii=False, sort_keys=True)
    return row


def _item_from_row(row: Any) -> Item:
    values = row._asdict()
    values["attributes"] = json.loads(values["attributes"])
    return Item(**values)
