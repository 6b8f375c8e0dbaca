"""PostgreSQL stops while the service runs: reads that need the store answer 503 with a
clear message and Retry-After, /readyz fails, answers that need only the in-memory catalog
keep coming; when PostgreSQL is back the same process recovers by itself.

The test runs a PostgreSQL cluster of its own (initdb into a temp directory, on a free
port), so stopping it cannot disturb the shared server other tests use."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from shoplm.store import open_store
from tests.reliability.conftest import report
from tests.service import ServiceProcess, free_port


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        pytest.fail(f"{name} not found: install the PostgreSQL server package (.ci/run's machine has it)")
    return found


class PrivateCluster:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="shoplm-pg-"))
        self.data, self.port = self.root / "data", free_port()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
        if self.as_postgres:
            shutil.chown(self.root, "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_postgres, *args], check=True, capture_output=True)

    def start(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster():
    pg = PrivateCluster()
    pg.start()
    yield pg
    pg.remove()


KEY = {"X-API-Key": "db-fault-key"}


def test_postgres_down_gives_503_and_the_service_recovers_by_itself(cluster, tmp_path, small_catalog):
    store = open_store(cluster.url)
    store.upsert_items(small_catalog)
    store.close()
    service = ServiceProcess(cluster.url, tmp_path, env={"SHOPLM_READ_KEY": KEY["X-API-Key"]}).start()
    pid = service.process.pid
    event = {"user_id": "u1", "event_type": "view", "item_id": small_catalog[0].item_id}
    with httpx.Client(base_url=service.url, timeout=30, headers=KEY) as http:
        assert http.post("/v1/events", json={"events": [event]}).status_code == 200
        assert http.get("/v1/recommend", params={"user_id": "u1"}).status_code == 200

        cluster.stop()
        down = {
            "readyz": http.get("/readyz"),
            "recommend_for_a_user": http.get("/v1/recommend", params={"user_id": "u1"}),
            "profile": http.get("/v1/users/u1/profile"),
            "post_events": http.post("/v1/events", json={"events": [{**event, "item_id": small_catalog[1].item_id}]}),
        }
        for name, response in down.items():
            assert response.status_code == 503, (name, response.text)
            assert response.headers["retry-after"] == "1"
            assert "not reachable" in response.json()["error"]["message"], response.text
        assert http.get("/healthz").status_code == 200  # the process itself is fine
        # what the in-memory catalog and indexes can answer alone keeps working
        assert http.get("/v1/search", params={"q": "drill"}).status_code == 200
        assert http.get(f"/v1/items/{small_catalog[0].item_id}").status_code == 200

        cluster.start()
        started = time.monotonic()
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() - started < 60, "the service did not recover within 60 s"
            time.sleep(0.2)
        recovered_after = time.monotonic() - started
        assert http.get("/v1/recommend", params={"user_id": "u1"}).status_code == 200
        assert http.post("/v1/events", json={"events": [{**event, "item_id": small_catalog[2].item_id}]}).status_code == 200
        assert http.get("/v1/users/u1/profile").json()["event_counts"]["view"] == 2
    assert service.process.pid == pid and service.process.poll() is None  # no restart
    service.stop()
    report("db-faults", {"answers_while_down": {k: v.status_code for k, v in down.items()},
                         "ready_again_after_s": round(recovered_after, 2)})
