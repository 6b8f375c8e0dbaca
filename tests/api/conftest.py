from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from shoplm.api import create_app
from shoplm.config import Settings
from shoplm.engine.engine import Engine
from shoplm.store import open_store

READ, ADMIN = "read-key-for-tests", "admin-key-for-tests"
R = {"X-API-Key": READ}
A = {"X-API-Key": ADMIN}


@pytest.fixture
def settings():
    return Settings(read_key=READ, admin_key=ADMIN, max_body_bytes=20_000, max_events_per_request=50)


@pytest.fixture
def client(settings, store_url):
    engine = Engine(settings, open_store(store_url))
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client


@pytest.fixture
def catalog(client):
    items = [
        {"item_id": "drill-1", "title": "Cordless drill 18V", "category": "Tools > Power Tools > Drills",
         "brand": "Makita", "price": 129.0},
        {"item_id": "saw-1", "title": "Hand saw", "category": "Tools > Hand Tools", "brand": "Stanley", "price": 19.9},
        {"item_id": "glue-1", "title": "Wood glue", "category": "Adhesives", "brand": "Titebond", "price": 6.5,
         "attributes": {"volume_ml": 250}},
    ]
    assert client.post("/v1/items", json={"items": items}, headers=A).status_code == 200
    return items
