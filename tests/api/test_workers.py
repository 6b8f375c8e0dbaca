"""`shoplm serve --workers N`: connections go to the least busy worker, and a write through
any worker reaches every worker's engine (shoplm/api/dispatch.py, `Engine.peers`/`apply`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
from fastapi.testclient import TestClient

from shoplm.api import create_app
from shoplm.api.dispatch import split_change
from shoplm.config import Settings
from shoplm.engine.engine import Engine
from shoplm.data.records import Event, Item
from shoplm.store import open_store
from tests.reliability.conftest import catalog
from tests.service import ServiceProcess

ADMIN = {"X-API-Key": "admin-key"}
NEW = {"title": "Zanzibar copper kettle", "category": "Kitchen > Kettles", "brand": "Zz", "price": 30.0}


def _engines(tmp_path, linked: bool = True) -> tuple[Engine, Engine]:
    """Two engines over one SQLite file, as two worker processes have; `linked` wires each
    one's published changes into the other's `apply`, as the dispatcher does."""
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    seed = open_store(url)
    seed.upsert_items(catalog(40))
    seed.close()
    settings = Settings(search_index_dir=tmp_path / "index", embedding_cache_dir=tmp_path / "cache")
    a, b = Engine.open(settings, open_store(url)), Engine.open(settings, open_store(url))
    if linked:
        a.peers.append(b.apply)
        b.peers.append(a.apply)
    return a, b


def _found(engine: Engine, item_id: str, query: str) -> bool:
    return item_id in [r.item_id for r in engine.search(query, k=5)]


def test_an_engines_writes_reach_its_peer(tmp_path):
    a, b = _engines(tmp_path)
    a.upsert_items([Item("new-1", **NEW)])
    assert _found(b, "new-1", "zanzibar copper kettle") and b.get_item("new-1").brand == "Zz"
    before = b.popularity[b.catalog.row("new-1")]
    a.add_events([Event(time.time(), "purchase", "u1", "s1", "new-1")])
    assert b.popularity[b.catalog.row("new-1")] == before + a.settings.event_weights["purchase"]
    np.testing.assert_array_equal(a.popularity, b.popularity)
    assert b.delete_user("u1") == 1
    assert a.popularity[a.catalog.row("new-1")] == 0.0  # the erased user's purchase counts nowhere
    b.delete_item("new-1")
    assert not _found(a, "new-1", "zanzibar copper kettle") and "new-1" not in a.items


def test_a_late_change_does_not_undo_a_later_write(tmp_path):
    """b deletes X, then a re-creates it, then b's deletion reaches a: X stays, as in the store."""
    a, b = _engines(tmp_path, linked=False)
    a.upsert_items([Item("new-1", **NEW)])
    b.apply({"items": ["new-1"]})
    b.delete_item("new-1")
    a.upsert_items([Item("new-1", **{**NEW, "price": 31.0})])
    a.apply({"items": ["new-1"]})  # what b's delete published, arriving late
    assert a.get_item("new-1").price == 31.0 and _found(a, "new-1", "zanzibar copper kettle")
    b.apply({"items": ["new-1"]})
    assert b.get_item("new-1").price == 31.0


def test_a_failing_peer_does_not_fail_the_committed_write(tmp_path, caplog):
    a, b = _engines(tmp_path, linked=False)

    def broken(change):
        raise OSError("channel gone")

    a.peers.append(broken)
    assert a.upsert_items([Item("new-1", **NEW)]) == 1 and "could not send a change" in caplog.text
    assert open_store(a.store.url).items(["new-1"])


def test_changes_are_split_to_fit_the_channel():
    ids = [f"{i:05d}-" + "é" * 250 for i in range(3000)]
    for change in ({"items": ids}, {"popularity": {i: 1.5 for i in ids}}):
        parts = [json.loads(p) for p in split_change(change, max_bytes=32_000)]
        assert len(parts) > 10 and all(len(json.dumps(p)) <= 32_000 + 2_000 for p in parts)
        key = next(iter(change))
        joined = [x for p in parts for x in p[key]] if key == "items" else {k: v for p in parts for k, v in p[key].items()}
        assert joined == change[key]
    assert [json.loads(p) for p in split_change({"erased": True})] == [{"erased": True}]


def test_events_for_an_item_another_engine_created_are_accepted_before_its_change_arrives(tmp_path):
    a, b = _engines(tmp_path, linked=False)
    a.upsert_items([Item("new-1", **NEW)])
    assert b.add_events([Event(time.time(), "view", "u1", "s1", "new-1")]) == 1  # read from the store
    assert _found(b, "new-1", "zanzibar copper kettle")


def test_computing_in_the_event_loop_answers_as_the_thread_pool_does(tmp_path):
    """`serve_concurrency` 1 (each of 2 workers on 2 cores) runs read routes inline."""
    engine, _ = _engines(tmp_path, linked=False)
    paths = ["/v1/search?q=model%203", "/v1/recommend?item_id=item-3", "/v1/items/item-3/similar",
             "/v1/items/nope/similar"]
    answers = []
    for concurrency in (None, 1):
        settings = engine.settings.model_copy(update={"serve_concurrency": concurrency})
        with TestClient(create_app(settings, engine)) as client:
            assert client.app.state.inline is (concurrency == 1)
            # every answer has a list_id of its own; the rest must be the same
            answers.append([(r.status_code, {k: v for k, v in r.json().items() if k != "list_id"})
                            for r in map(client.get, paths)])
    assert answers[0] == answers[1]
    assert [status for status, _ in answers[1]] == [200, 200, 200, 404] and answers[1][0][1]["items"]


def _wait(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_two_workers_split_connections_and_share_writes(tmp_path):
    store_url = f"sqlite:///{tmp_path / 'shop.db'}"
    store = open_store(store_url)
    store.upsert_items(catalog(20))
    store.close()
    env = {"SHOPLM_SERVE_WORKERS": "2", "SHOPLM_ADMIN_KEY": ADMIN["X-API-Key"]}
    with ServiceProcess(store_url, tmp_path, env=env) as service:
        assert _wait(lambda: service.log.read_text().count("Application startup complete") == 2, 120), \
            service.log.read_text()
        clients = [httpx.Client(base_url=service.url, timeout=30) for _ in range(8)]
        try:
            # 8 connections open at once: 4 on each worker (the least busy takes the next)
            workers = [client.get("/healthz").json()["worker"] for client in clients]
            assert sorted(workers.count(w) for w in set(workers)) == [4, 4], workers
            a = clients[0]
            b = next(c for c, w in zip(clients, workers) if w != workers[0])

            def found_by(client: httpx.Client) -> bool:
                hits = client.get("/v1/search", params={"q": "zanzibar copper kettle"}).json()["items"]
                return "new-1" in [h["item_id"] for h in hits]

            assert a.put("/v1/items/new-1", json=NEW, headers=ADMIN).status_code == 200
            assert found_by(a)  # read-your-writes on the writing worker
            assert _wait(lambda: found_by(b), 20), "a write through one worker never reached the other"
            event = {"user_id": "u1", "session_id": "s1", "event_type": "view", "item_id": "new-1"}
            assert b.post("/v1/events", json={"events": [event]}).json()["stored"] == 1
            assert b.delete("/v1/items/new-1", headers=ADMIN).status_code == 204
            assert _wait(lambda: not found_by(a), 20) and a.get("/v1/items/new-1").status_code == 404

            # closed connections are counted off: close worker 0's four (one after a WebSocket
            # upgrade request, which must not swap in a protocol that never reports its close),
            # and the next four all go to worker 0
            mine = [c for c, w in zip(clients, workers) if w == workers[0]]
            mine[0].get("/healthz", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                              "Sec-WebSocket-Version": "13"})
            for client in mine:
                client.close()
            time.sleep(0.5)
            fresh = [httpx.Client(base_url=service.url, timeout=30) for _ in range(4)]
            clients += fresh
            assert [c.get("/healthz").json()["worker"] for c in fresh] == [workers[0]] * 4
        finally:
            for client in clients:
                client.close()
        os.kill(workers[0], signal.SIGKILL)  # a dead worker is replaced, and the port keeps answering
        assert _wait(lambda: service.log.read_text().count("Application startup complete") == 3, 120), \
            service.log.read_text()
        with httpx.Client(base_url=service.url, timeout=30) as fresh:
            assert fresh.get("/v1/search", params={"q": "model 3"}).status_code == 200
            live = {fresh.get("/healthz").json()["worker"]}
    log = service.log.read_text()
    assert "could not apply" not in log and "Traceback" not in log and "exited with code -9; starting another" in log, log
    assert not any(_alive(pid) for pid in set(workers) | live)  # stopping the service stops its workers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_that_cannot_start_stop_the_service(tmp_path):
    """A store that cannot be opened: `serve --workers 2` exits with an error, as one process does."""
    bad = "postgresql://127.0.0.1:1/nothing-listens-here"
    process = subprocess.run([sys.executable, "-m", "shoplm.cli", "serve", "--store", bad, "--workers", "2",
                              "--port", "0"], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "SHOPLM_SEARCH_INDEX_DIR": str(tmp_path / "index")})
    assert process.returncode != 0 and "could not start" in process.stderr, process.stderr[-2000:]


def _open_and_search(url: str, index: str, cache: str, builds: str, query: str) -> list[str]:
    """In a fresh process: open an engine (counting the index builds it does in `builds`)."""
    import shoplm.search.pipeline

    build = shoplm.search.pipeline.build_indexes

    def counted(*args, **kwargs):
        with open(builds, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return build(*args, **kwargs)

    shoplm.search.pipeline.build_indexes = counted
    engine = Engine.open(Settings(search_index_dir=index, embedding_cache_dir=cache), open_store(url))
    return [r.item_id for r in engine.search(query, k=3)]


def test_engines_opened_at_once_on_one_directory_build_it_once(tmp_path):
    """Three processes open engines on one fresh index directory at once, as the workers of
    `shoplm serve --workers 3` do: one builds, the others read what it built, all serve."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    seed = open_store(url)
    seed.upsert_items(catalog(40) + [Item("new-1", **NEW)])
    seed.close()
    builds = tmp_path / "builds.txt"
    args = (url, str(tmp_path / "index"), str(tmp_path / "cache"), str(builds), "zanzibar copper kettle")
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        found = pool.starmap(_open_and_search, [args] * 3)
    assert all(ids[0] == "new-1" for ids in found), found
    assert len(builds.read_text().split()) == 1


def test_an_engine_rebuilds_its_indexes_only_when_the_catalog_changed(tmp_path, monkeypatch):
    import shoplm.search.pipeline

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    store = open_store(url)
    store.upsert_items(catalog(40))
    settings = Settings(search_index_dir=tmp_path / "index", embedding_cache_dir=tmp_path / "cache")
    built = []
    build = shoplm.search.pipeline.build_indexes
    monkeypatch.setattr(shoplm.search.pipeline, "build_indexes", lambda *a, **k: built.append(1) or build(*a, **k))
    Engine.open(settings, store)
    Engine.open(settings, store)  # a restart of an unchanged shop reads its indexes
    assert len(built) == 1
    store.upsert_items([Item("new-1", **NEW)])  # written while no engine was up to apply it
    assert _found(Engine.open(settings, store), "new-1", "zanzibar copper kettle")
    store.upsert_items([Item("new-1", **{**NEW, "price": 31.0})])  # a filter field counts as a change too
    Engine.open(settings, store)
    assert len(built) == 3
    Engine.open(settings.model_copy(update={"item_text_template": "{title}"}), store)
    assert len(built) == 4
