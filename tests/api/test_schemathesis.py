"""Property-based tests of the whole API from its OpenAPI schema (schemathesis): whatever
the generated request, the service never answers 5xx. Runs with the admin key, so write
routes are exercised too. Examples per operation: SHOPLM_SCHEMATHESIS_EXAMPLES (default 25,
bounded for CI's 2 cores)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from shoplm.api import create_app
from shoplm.config import Settings
from shoplm.engine.engine import Engine
from shoplm.store import open_store
from tests.api.conftest import ADMIN, READ
from tests.api.test_answers import CATALOG

EXAMPLES = int(os.environ.get("SHOPLM_SCHEMATHESIS_EXAMPLES", "25"))


def _app():
    # schemathesis reads the schema when the module is collected, so the app is built here;
    # the engine is passed in, so nothing waits on a lifespan that the ASGI transport skips.
    work = Path(tempfile.mkdtemp(prefix="shoplm-schemathesis-"))
    config = Settings(read_key=READ, admin_key=ADMIN, search_index_dir=work / "index",
                      embedding_cache_dir=work / "cache", max_body_bytes=50_000,
                      rate_limit_per_second=0, models_dir=work / "models")  # no 429s: every example reaches a route
    store = open_store(f"sqlite:///{work / 'shop.db'}")
    store.upsert_items(CATALOG)
    return create_app(config, Engine.open(config, store))


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call(headers={"X-API-Key": ADMIN})
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"
