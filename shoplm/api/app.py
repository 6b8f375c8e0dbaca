"""`create_app(settings)`: the FastAPI app over one `Engine`, built at startup, not import."""

from __future__ import annotations

import gc
import os
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from shoplm.api import experiments, merchandising, snippet
from shoplm.api.middleware import BodyLimit, Metrics, RateLimit
from shoplm.api.problems import install_error_handlers
from shoplm.api.routes import health, router
from shoplm.config import Settings
from shoplm.engine.engine import Engine

STATIC = Path(__file__).parent / "static"


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The service. Without `engine`, one is opened on `settings.store_url` at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if getattr(app.state, "engine", None) is None:
            import torch

            from shoplm.store import open_store

            if settings.torch_threads:
                from threadpoolctl import threadpool_limits

                torch.set_num_threads(settings.torch_threads)
                # BLAS and OpenMP pools too (numpy, FAISS): with their default of one thread per
                # core, 8 concurrent requests ran 7x slower in total than one at a time.
                threadpool_limits(settings.torch_threads)

            app.state.engine = Engine.open(settings, open_store(settings.store_url))
            app.state.engine.warm()  # the first /v1/suggest then answers in microseconds, not seconds
            app.state.engine.follow()  # other hosts' catalog writes (PostgreSQL's change feed)
            # Requests beyond a worker's cores would only take turns at the GIL, each slowing all.
            concurrency = settings.serve_concurrency or max(1, (os.cpu_count() or 1) // settings.serve_workers)
        else:  # an engine handed in (tests, embedding in another app): only as configured
            concurrency = settings.serve_concurrency
        if concurrency:  # the read routes' own limiter: health probes and writes keep the default pool
            app.state.limiter = anyio.CapacityLimiter(concurrency)
            app.state.inline = concurrency == 1  # short read routes compute in the event loop (routes._compute)
        # The engine's objects (catalog, indexes, models) live as long as the process: moved
        # out of the collector's generations, so its periodic full passes stop walking them.
        # Those passes were the service's latency spikes.
        gc.collect()
        gc.freeze()
        yield
        app.state.engine.close()

    app = FastAPI(title="shoplm", version="0.1.0", lifespan=lifespan,
                  description="Search and recommendations for online shops, built around a language model.")
    app.state.settings = settings
    app.state.engine = engine
    app.state.inline, app.state.limiter = False, None
    app.state.metrics = Metrics()
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(merchandising.router)
    app.include_router(experiments.router)
    app.include_router(snippet.router)
    app.include_router(health)
    # The operator dashboard: a page with no data in it; every call it makes needs the admin key.
    app.add_api_route("/admin", lambda: FileResponse(STATIC / "admin" / "index.html"), include_in_schema=False)
    if (STATIC / "index.html").is_file():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="storefront")
    # Added innermost first: metrics see every answer (429s and 413s included), CORS headers
    # go on refusals too (a browser can read the 429), the size limit applies last.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimit, settings=settings)
    if settings.cors_origins:  # closed by default: no CORS headers, so other sites' pages cannot read answers
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type"])
    app.add_middleware(_MetricsMiddleware, metrics=app.state.metrics)
    return app


def create_app_from_env() -> FastAPI:
    """The app factory `shoplm serve --workers N` hands uvicorn: each worker process builds
    its settings from the SHOPLM_* environment the command exported."""
    return create_app(Settings())


class _MetricsMiddleware:
    def __init__(self, app, metrics: Metrics):
        self._wrapped = metrics.middleware(app)

    async def __call__(self, scope, receive, send):
        await self._wrapped(scope, receive, send)
