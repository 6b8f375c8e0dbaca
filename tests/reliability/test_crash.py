"""Nothing acknowledged is lost: clients stream events to /v1/events, the server is killed
with SIGKILL at a random moment and restarted, and every event whose batch was answered
200 is in the store exactly once; re-sending the batches that got no answer stores each
of their events once too (event identity makes the re-send idempotent)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import httpx

from shoplm.store import open_store
from tests.reliability.conftest import report
from tests.service import ServiceProcess

KEY = {"X-API-Key": "crash-test-key"}
CLIENTS, BATCH = 4, 25


def _identity(user_id, timestamp, event_type, item_id) -> tuple:
    return (user_id, round(float(timestamp), 3), event_type, item_id)


def test_acknowledged_events_survive_a_sigkill(durable_store_url, tmp_path, small_catalog):
    store = open_store(durable_store_url)
    store.upsert_items(small_catalog)
    store.close()
    # The rate limiter is off: clients posting as fast as they can would get 429s, and this
    # test is about durability (tests/reliability/test_access.py tests the limiter).
    env = {"SHOPLM_READ_KEY": KEY["X-API-Key"], "SHOPLM_RATE_LIMIT_PER_SECOND": "0"}
    service = ServiceProcess(durable_store_url, tmp_path, env=env).start()
    rng = random.Random()  # a different moment every run; the seed is reported for a replay
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    acknowledged: list[dict] = []
    unanswered: list[list[dict]] = []
    sent = [0] * CLIENTS
    other_status: list[int] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        with httpx.Client(base_url=service.url, timeout=30) as http:
            for b in range(1_000_000):
                batch = [{"user_id": f"c{c}-u{b % 50}", "timestamp": 1_700_000_000 + b * 10 + j * 0.5,
                          "event_type": "view", "item_id": small_catalog[(b + j + c) % len(small_catalog)].item_id}
                         for j in range(BATCH)]
                sent[c] += len(batch)
                try:
                    response = http.post("/v1/events", json={"events": batch}, headers=KEY)
                except httpx.HTTPError:  # the server died under this batch: no answer
                    with lock:
                        unanswered.append(batch)
                    return
                with lock:
                    if response.status_code == 200:
                        acknowledged.extend(batch)
                    else:
                        other_status.append(response.status_code)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(rng.uniform(2.0, 5.0))
    service.kill()
    for thread in threads:
        thread.join(timeout=60)
    assert not other_status, other_status
    assert acknowledged, "no batch was acknowledged before the kill; the kill came too early"

    service.start()  # restart on the same store
    try:
        with httpx.Client(base_url=service.url, timeout=30) as http:
            for batch in unanswered:  # what a client does after a timeout: send again
                assert http.post("/v1/events", json={"events": batch}, headers=KEY).status_code == 200
    finally:
        service.stop()

    store = open_store(durable_store_url)
    frame = store.events_frame()
    store.close()
    found = Counter(_identity(*row) for row in
                    frame.select("user_id", "timestamp", "event_type", "item_id").iter_rows())
    acked = [_identity(e["user_id"], e["timestamp"], e["event_type"], e["item_id"]) for e in acknowledged]
    resent = [_identity(e["user_id"], e["timestamp"], e["event_type"], e["item_id"]) for b in unanswered for e in b]
    lost = [e for e in acked if found[e] == 0]
    doubled = [e for e, n in found.items() if n > 1]
    backend = durable_store_url.split(":", 1)[0].split("+", 1)[0]
    report(f"crash-{backend}", {"seed": seed, "events_sent": sum(sent), "events_acknowledged": len(acked),
                                "acknowledged_found_after_restart": sum(found[e] >= 1 for e in acked),
                                "unanswered_batches_resent": len(unanswered), "events_in_store": sum(found.values()),
                                "lost": len(lost), "stored_twice": len(doubled)})
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {lost[:3]}"
    assert not doubled, f"{len(doubled)} events stored twice, e.g. {doubled[:3]}"
    assert sum(found.values()) == len(set(acked) | set(resent)) == len(acked) + len(resent)
