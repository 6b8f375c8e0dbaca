"""`shoplm jobs embed|recommend-all`: the Ray batch jobs of `shoplm.jobs` from the command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from shoplm.errors import ConfigError

AddressOpt = Annotated[Optional[str], typer.Option("--address", help="A Ray cluster to join (ray://host:10001 or "
                                                   "'auto'); without it a local Ray is started.")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=1, help="Ray actors running the job (1 CPU each).")]


def _ray_available() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError("the Ray jobs need the ray extra: pip install 'shoplm[ray]'") from None


def register(app: typer.Typer, out: Console, err: Console) -> None:
    jobs_app = typer.Typer(help="Batch jobs on Ray (local or a cluster): embeddings, precomputed recommendations.",
                           no_args_is_help=True)
    app.add_typer(jobs_app, name="jobs")

    @jobs_app.command("embed")
    def embed(ctx: typer.Context, items: Annotated[Path, typer.Option(help="Catalog file in the shoplm format.")],
              out_dir: Annotated[Path, typer.Option("--out", help="Directory for the Parquet files (item_id, vector).")],
              address: AddressOpt = None, workers: WorkersOpt = 2) -> None:
        """Encode the whole catalog with the configured encoder, on Ray Data.

        [bold]Example:[/bold] shoplm jobs embed --items var/hd/items.csv --out var/jobs/vectors
        """
        from shoplm.jobs import embed_catalog

        _ray_available()
        started = time.perf_counter()
        n = embed_catalog(items, out_dir, ctx.obj, address, workers)
        out.print(f"{n:,} items embedded in {time.perf_counter() - started:.0f} s; Parquet in {out_dir}")

    @jobs_app.command("recommend-all")
    def recommend_all_command(
        ctx: typer.Context,
        out_dir: Annotated[Path, typer.Option("--out", help="Directory for the Parquet files (user_id, rank, item_id, score).")],
        store: Annotated[Optional[str], typer.Option("--store", help="Store URL (default: settings.store_url).")] = None,
        k: Annotated[int, typer.Option("--k", min=1, max=1000, help="Items per user.")] = 10,
        address: AddressOpt = None, workers: WorkersOpt = 2,
    ) -> None:
        """Top k for every user in the store, exactly as `GET /v1/recommend` answers them, on Ray
        (for shops that serve precomputed lists). Uses SHOPLM_RECOMMEND_MODEL when set.

        [bold]Example:[/bold] shoplm jobs recommend-all --store sqlite:///shop.db --out var/jobs/recs --k 20
        """
        from shoplm.jobs import recommend_all

        _ray_available()
        settings = ctx.obj.model_copy(update={"store_url": store}) if store else ctx.obj
        started = time.perf_counter()
        n = recommend_all(settings, out_dir, k, address, workers)
        out.print(f"top {k} for {n:,} users in {time.perf_counter() - started:.0f} s; Parquet in {out_dir}")
