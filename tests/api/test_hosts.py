"""Two `shoplm serve` processes on one PostgreSQL database, as two machines behind a load
balancer: separate engines, indexes and caches, sharing only the store. An item created,
changed and deleted through A is found, changed and gone through B; B stopped while A
makes three changes serves all three when it comes back (shoplm/engine/follow.py).
How fast a change crosses is measured by `make bench` (section `hosts`); the delays seen
here are written to var/reliability/hosts.json."""

from __future__ import annotations

import time

import httpx

from shoplm.store import open_store
from tests.reliability.conftest import catalog, report
from tests.service import ServiceProcess

ADMIN = {"X-API-Key": "admin-key"}
KETTLE = {"title": "Zanzibar copper kettle", "category": "Kitchen > Kettles", "brand": "Zz", "price": 30.0}


def _crossed(condition, timeout: float = 20.0) -> float:
    """Seconds until `condition()` held (polled every 10 ms); fails after `timeout`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "a write through A never reached B"
        time.sleep(0.01)
    return time.monotonic() - start


def _hits(client: httpx.Client, query: str) -> list[str]:
    return [hit["item_id"] for hit in client.get("/v1/search", params={"q": query, "k": 5}).json()["items"]]


def test_two_hosts_serve_one_catalog(pg_url, tmp_path):
    seed = open_store(pg_url)
    seed.upsert_items(catalog(20))
    seed.close()
    env = {"SHOPLM_ADMIN_KEY": ADMIN["X-API-Key"]}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    host_a, host_b = ServiceProcess(pg_url, tmp_path / "a", env=env), ServiceProcess(pg_url, tmp_path / "b", env=env)
    delays: dict[str, float] = {}
    with host_a, host_b, httpx.Client(base_url=host_a.url, timeout=30) as a, \
            httpx.Client(base_url=host_b.url, timeout=30) as b:
        assert a.put("/v1/items/new-1", json=KETTLE, headers=ADMIN).status_code == 200
        delays["created"] = _crossed(lambda: "new-1" in _hits(b, "zanzibar copper kettle"))
        changed = {**KETTLE, "title": "Zanzibar enamel teapot", "price": 12.5}
        assert a.put("/v1/items/new-1", json=changed, headers=ADMIN).status_code == 200
        delays["changed"] = _crossed(lambda: _hits(b, "enamel teapot")[:1] == ["new-1"])  # under its new title
        assert b.get("/v1/items/new-1").json()["price"] == 12.5
        assert a.delete("/v1/items/new-1", headers=ADMIN).status_code == 204
        delays["deleted"] = _crossed(lambda: b.get("/v1/items/new-1").status_code == 404)
        assert "new-1" not in _hits(b, "zanzibar teapot")

        host_b.stop()  # B is down while A makes three changes
        assert a.put("/v1/items/new-2", json={**KETTLE, "title": "Zanzibar tin kettle"}, headers=ADMIN).status_code == 200
        item_3 = a.get("/v1/items/item-3").json()
        assert a.put("/v1/items/item-3", json={**{k: v for k, v in item_3.items() if k != "item_id"},
                                               "price": 1234.0}, headers=ADMIN).status_code == 200
        assert a.delete("/v1/items/item-4", headers=ADMIN).status_code == 204
        host_b.start()
        assert "new-2" in _hits(b, "zanzibar tin kettle")
        assert b.get("/v1/items/item-3").json()["price"] == 1234.0
        assert b.get("/v1/items/item-4").status_code == 404
        # and B follows again after its restart
        assert a.delete("/v1/items/new-2", headers=ADMIN).status_code == 204
        delays["after restart"] = _crossed(lambda: b.get("/v1/items/new-2").status_code == 404)
    for host in (host_a, host_b):
        log = " ".join(host.log.read_text().split())  # the console wraps long lines
        assert "Traceback" not in log and "followed through the store's change feed" in log, log
    report("hosts", {"seconds_until_b_serves_a_write": delays})
