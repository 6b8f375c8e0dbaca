"""A bounded soak: 16 concurrent clients send mixed search, recommendation and event
traffic to a real `shoplm serve` for SHOPLM_SOAK_SECONDS (default 120; set it higher for
a longer soak). No answer may be a 5xx or a dropped connection, and the server's resident
memory at the end may be at most 10% above what it was once warmed up. Latency
percentiles are reported (they are figures, not pass/fail: the machine is shared)."""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from collections import defaultdict

import httpx
import numpy as np

from shoplm.data.records import Event
from shoplm.store import open_store
from tests.reliability.conftest import WORDS, report
from tests.service import ServiceProcess

KEY = {"X-API-Key": "soak-key"}
CLIENTS = 16


def test_soak_mixed_traffic_at_16_clients(tmp_path, small_catalog):
    seconds = float(os.environ.get("SHOPLM_SOAK_SECONDS", "120"))
    warmup = min(20.0, seconds * 0.2)
    store_url = f"sqlite:///{tmp_path / 'shop.db'}"
    store = open_store(store_url)
    store.upsert_items(small_catalog)
    store.add_events([Event(1_700_000_000 + i, "view", user_id=f"u{i % 40}", item_id=small_catalog[i % 60].item_id)
                      for i in range(400)])
    store.close()
    # The limiter is off: this measures the service under load, not the limiter's refusals.
    env = {"SHOPLM_READ_KEY": KEY["X-API-Key"], "SHOPLM_RATE_LIMIT_PER_SECOND": "0", "SHOPLM_LOG_LEVEL": "warning"}
    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: dict[int, int] = defaultdict(int)
    failures: list[str] = []
    lock = threading.Lock()
    with ServiceProcess(store_url, tmp_path, env=env) as service:
        stop_at = time.monotonic() + seconds

        def client(c: int) -> None:
            rng = random.Random(c)
            with httpx.Client(base_url=service.url, timeout=30, headers=KEY) as http:
                n = 0
                while time.monotonic() < stop_at:
                    n += 1
                    user = f"u{rng.randrange(200)}"
                    roll = rng.random()
                    if roll < 0.5:
                        route, request = "search", lambda: http.get("/v1/search", params={
                            "q": rng.choice(WORDS), **({"user_id": user} if rng.random() < 0.5 else {})})
                    elif roll < 0.8:
                        route, request = "recommend", lambda: http.get("/v1/recommend", params={"user_id": user})
                    else:
                        events = [{"user_id": user, "event_type": rng.choice(["view", "click", "add_to_cart"]),
                                   "item_id": rng.choice(small_catalog).item_id,
                                   "timestamp": 1_800_000_000 + c * 1e6 + n * 10 + j} for j in range(5)]
                        route, request = "events", lambda: http.post("/v1/events", json={"events": events})
                    started = time.perf_counter()
                    try:
                        status = request().status_code
                    except httpx.HTTPError as exc:
                        with lock:
                            failures.append(f"{route}: {exc!r}")
                        continue
                    with lock:
                        latencies[route].append(time.perf_counter() - started)
                        statuses[status] += 1
                        if status >= 500:
                            failures.append(f"{route}: {status}")

        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for thread in threads:
            thread.start()
        rss = []  # (seconds since start, bytes)
        begun = time.monotonic()
        while time.monotonic() < stop_at:
            rss.append((time.monotonic() - begun, service.rss_bytes()))
            time.sleep(2.0)
        for thread in threads:
            thread.join(timeout=60)
        rss.append((time.monotonic() - begun, service.rss_bytes()))

    warmed = statistics.median([b for t, b in rss if warmup - 6 <= t <= warmup] or [rss[0][1]])
    end = statistics.median([b for _, b in rss[-3:]])
    growth = end / warmed - 1.0
    figures = {
        "seconds": seconds, "clients": CLIENTS, "requests": sum(statuses.values()) + len(failures),
        "statuses": {str(k): v for k, v in sorted(statuses.items())}, "errors": len(failures),
        "rss_mb_after_warmup": round(warmed / 2**20, 1), "rss_mb_end": round(end / 2**20, 1),
        "rss_growth": round(growth, 4),
        "latency_ms": {route: {"n": len(v), "p50": round(float(np.percentile(v, 50)) * 1e3, 1),
                               "p99": round(float(np.percentile(v, 99)) * 1e3, 1)} for route, v in latencies.items()},
    }
    report("soak", figures)
    assert not failures, failures[:10]
    assert set(statuses) == {200}, statuses
    assert growth < 0.10, f"resident memory grew {growth:.1%} after warm-up ({figures})"
