"""`shoplm serve`: the HTTP API and the storefront, in one process or several workers."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from shoplm.cli.common import StoreOpt, err, settings_of


def serve(
    ctx: typer.Context,
    store: StoreOpt = None,
    host: Annotated[Optional[str], typer.Option(help="Bind address (default: settings.host, 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default: settings.port, 8000).")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Worker processes (default: settings.serve_workers, 1). "
                                                   "Each holds its own engine; connections go to the least busy (docs/operations.md).")] = None,
) -> None:
    """Serve the HTTP API and the storefront.

    Keys come from SHOPLM_READ_KEY and SHOPLM_ADMIN_KEY; without an admin key, write routes are refused.

    [bold]Example:[/bold] SHOPLM_ADMIN_KEY=secret shoplm serve --store sqlite:///shop.db --port 8000
    """
    settings = settings_of(ctx)
    overrides = {k: v for k, v in {"store_url": store, "host": host, "port": port}.items() if v}
    workers = workers or settings.serve_workers
    settings = settings.model_copy(update=overrides | {"torch_threads": settings.serve_threads, "serve_workers": workers})
    hosts = ("; catalog writes of other hosts are followed through the store's change feed"
             if settings.store_url.startswith("postgresql") else "; one host (SQLite keeps no change feed)"
             if settings.store_url.startswith("sqlite") else "")
    err.print(f"shoplm serving {settings.store_url} at http://{settings.host}:{settings.port}"
              + (f" with {workers} worker processes" if workers > 1 else "") + hosts, highlight=False)
    if workers == 1:
        import uvicorn

        from shoplm.api.app import create_app

        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower())
        return
    # Worker processes rebuild their settings from the environment, so hand them the overrides there.
    os.environ.update({f"SHOPLM_{k.upper()}": str(v) for k, v in overrides.items()}
                      | {"SHOPLM_TORCH_THREADS": str(settings.torch_threads), "SHOPLM_SERVE_WORKERS": str(workers)})
    from shoplm.api.dispatch import serve_workers

    serve_workers("shoplm.api.app:create_app_from_env", workers=workers, host=settings.host, port=settings.port,
                  log_level=settings.log_level.lower())
