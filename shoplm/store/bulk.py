"""`StagedInsert`: PostgreSQL's bulk path for rows that are idempotent on a unique key.

A batch is COPYed (binary) into a temporary staging table, then moved by one set-based
`INSERT ... SELECT ... ON CONFLICT DO NOTHING`, in the caller's transaction. File ->
PostgreSQL ingest ran about 5x the events/s of a multi-VALUES insert that way
(bench/RESULTS.md), with the same guarantees: the batch is one transaction, a key stored
before or repeated within the batch is skipped, and the command's row count is exactly the
rows inserted. The staging table lives as long as the connection and is emptied at every
commit; its column `n` keeps the batch's order, so a serial key still follows the input.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

# Where the bulk path starts to pay: a single event took about 2x as long through the
# staging table (its fixed cost: it is emptied at every commit), 25 about as long, 500 a
# third of the time (PostgreSQL 15 on 2 shared cores, commits fsynced).
COPY_MIN_ROWS = 100


class StagedInsert:
    """Insert rows of `columns` (names in `table`, in the rows' order) into `table`, skipping
    those whose `key` is already there: `StagedInsert(events, ["event_key", ...], "event_key")(conn, rows)`."""

    def __init__(self, table: sa.Table, columns: Sequence[str], key: str):
        staging = sa.Table(
            f"shoplm_{table.name}_staging", sa.MetaData(),  # not in the store's metadata: create_all leaves it be
            sa.Column("n", sa.Integer, nullable=False),  # the row's place in its batch
            # integers travel as int8: psycopg's binary int4 wraps a larger value silently; int8
            # raises beyond its range, and the INSERT's cast refuses what the table's column cannot hold
            *(sa.Column(name, sa.BigInteger if isinstance(table.c[name].type, sa.Integer) else table.c[name].type)
              for name in columns),
            prefixes=["TEMPORARY"], postgresql_on_commit="DELETE ROWS",
        )
        self.create = CreateTable(staging, if_not_exists=True)
        self.copy = f"COPY {staging.name} ({', '.join(c.name for c in staging.columns)}) FROM STDIN (FORMAT BINARY)"
        self.types = [{sa.Integer: "int4", sa.BigInteger: "int8", sa.Double: "float8"}.get(type(c.type), "text")
                      for c in staging.columns]
        self.key = list(columns).index(key)
        insert = (
            postgresql.insert(table)
            .from_select(list(columns), sa.select(*(staging.c[name] for name in columns)).order_by(staging.c.n))
            .execution_options(preserve_rowcount=True)  # SQLAlchemy keeps only UPDATE's and DELETE's by default
        )
        self.insert_new, self.insert = insert, insert.on_conflict_do_nothing(index_elements=[key])

    def __call__(self, conn: sa.Connection, rows: Sequence[tuple]) -> int:
        """Insert `rows` in `conn`'s transaction; returns how many were new.

        A batch of only new keys, the usual case of a bulk load, goes in by a plain INSERT
        (about a fifth faster than ON CONFLICT, which probes the key's index twice a row) in
        a savepoint; the first stored key fails it, and the batch goes again with DO NOTHING.
        A key repeated within the batch is dropped here first (the first one stays)."""
        unique: dict = {}
        for row in rows:
            unique.setdefault(row[self.key], row)
        conn.execute(self.create)
        with _as_sqlalchemy_error(self.copy):
            with conn.connection.driver_connection.cursor() as cursor:  # the psycopg connection
                with cursor.copy(self.copy) as copy:
                    copy.set_types(self.types)
                    for n, row in enumerate(unique.values()):
                        copy.write_row((n, *row))
        try:
            with conn.begin_nested():
                return conn.execute(self.insert_new).rowcount
        except sa.exc.IntegrityError as exc:
            if getattr(exc.orig, "sqlstate", None) != "23505":  # not unique_violation: a real error
                raise
        return conn.execute(self.insert).rowcount


@contextmanager
def _as_sqlalchemy_error(statement: str) -> Iterator[None]:
    """Raise an error of the raw psycopg connection as SQLAlchemy's, as every other store call
    does: a server gone mid-COPY is then an `OperationalError` (503), not a crash, and a number
    too large for its column a `DataError`, as the server's own range check gives."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise sa.exc.DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
    except OverflowError as exc:  # psycopg's binary dumpers refuse an int beyond int8, a float beyond float8
        raise sa.exc.DataError(statement, None, exc) from exc
