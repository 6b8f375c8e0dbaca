"""ASGI middleware: request-size limit, per-key rate limit and Prometheus metrics."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import Headers

from shoplm.api.deps import key_role, presented_key

from shoplm.api.problems import error_response


class BodyLimit:
    """413 for a body over `max_bytes`: at once when Content-Length says so, else as soon as
    the streamed body crosses the limit (a client can omit or lie about Content-Length)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._too_large(scope, receive, send)
        seen = 0
        too_large = False

        async def limited_receive() -> dict:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    return {"type": "http.disconnect"}  # the app stops reading; we answer 413
            return message

        started = False

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if too_large:
                return
            started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
        if too_large and not started:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: dict, receive: Any, send: Any) -> None:
        response = error_response(413, f"request body over {self.max_bytes} bytes; send smaller batches")
        await response(scope, receive, send)


class Metrics:
    """Request counts and latencies by route template (not raw path: ids would explode the series)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("shoplm_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("shoplm_request_seconds", "HTTP request latency", ["route"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

    def middleware(self, app: Any) -> Any:
        async def wrapped(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)
            start = time.perf_counter()
            status = {"code": 500}

            async def record_send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            try:
                await app(scope, receive, record_send)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                self.requests.labels(scope["method"], route, str(status["code"])).inc()
                self.latency.labels(route).observe(time.perf_counter() - start)

        return wrapped


class RateLimit:
    """Per-key token buckets: each key may send `burst` requests at once and `rate` per
    second after that; over it, 429 with `Retry-After`. Requests without a valid key share
    a bucket per client address, so guessing keys earns no fresh buckets (and the table
    of buckets stays bounded). Health and metrics routes are exempt: load balancers and
    Prometheus poll them. Limits are per process; see docs/operations.md for replicas.

    Written by hand: slowapi and friends key on the client address or need Redis; this
    is the few lines a per-key bucket takes."""

    EXEMPT = ("/healthz", "/readyz", "/metrics")
    MAX_BUCKETS = 10_000

    def __init__(self, app: Any, settings: Any):
        self.app = app
        self.settings = settings
        self.rate, self.burst = float(settings.rate_limit_per_second), float(settings.rate_limit_burst)
        self.buckets: OrderedDict[str, list[float]] = OrderedDict()  # who -> [tokens, last refill]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.rate <= 0 or scope.get("path", "") in self.EXEMPT:
            return await self.app(scope, receive, send)
        wait = self._take(self._who(scope))
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            response = error_response(429, f"too many requests for this API key; retry in {retry} s "
                                           f"(limit {self.rate:g}/s, burst {self.burst:g})", headers={"Retry-After": retry})
            return await response(scope, receive, send)
        await self.app(scope, receive, send)

    def _who(self, scope: dict) -> str:
        role = key_role(self.settings, presented_key(Headers(scope=scope)))
        if role is not None:
            return f"key:{role}"
        client = scope.get("client") or ("unknown", 0)
        return f"addr:{client[0]}"

    def _take(self, who: str) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is available.
        Runs on the event loop thread only, so needs no lock."""
        now = time.monotonic()
        tokens, last = self.buckets.pop(who, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self.buckets[who] = [tokens - 1.0 if allowed else tokens, now]
        if len(self.buckets) > self.MAX_BUCKETS:
            self.buckets.popitem(last=False)  # least recently seen
        return 0.0 if allowed else (1.0 - tokens) / self.rate
