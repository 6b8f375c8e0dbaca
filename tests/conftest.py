"""Shared fixtures: every store backend, and the real data directory.

PostgreSQL tests run against the live server named by SHOPLM_TEST_PG_URL (default: the
local server's `test` database). Each test session works in a database of its own,
created here and dropped at the end, so nothing in `test` is touched. If the server is
down these tests fail, they are never skipped: `.ci/run` starts it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from shoplm.config import Settings

PG_ADMIN_URL = os.environ.get("SHOPLM_TEST_PG_URL", "postgresql+psycopg://127.0.0.1:5432/test")
BACKENDS = ["memory", "sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_database_url():
    name = f"shoplm_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url(pg_database_url):
    """The session's PostgreSQL database, emptied before each test."""
    engine = sa.create_engine(pg_database_url)
    tables = sa.MetaData()
    tables.reflect(engine)  # every table a store made, whatever the schema version
    tables.drop_all(engine)
    engine.dispose()
    return pg_database_url


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path):
    """A URL for an empty store of each backend."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=["sqlite", "postgresql"])
def durable_store_url(request, tmp_path):
    """A URL for an empty store that outlives the process (for crash tests)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url):
    from shoplm.store import open_store

    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data sets. Missing data skips these tests on a developer's machine, but fails
    them where SHOPLM_REQUIRE_DATA=1 (set by .ci/run), so CI can never pass without them."""
    path = Settings().data_dir
    if not path.is_dir():
        message = f"real data not found at {path.resolve()}; set SHOPLM_DATA_DIR"
        if os.environ.get("SHOPLM_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path
