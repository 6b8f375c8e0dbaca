"""The `shoplm` command line: thin commands over the library, Rich for people, --json for scripts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shoplm.config import Settings
from shoplm.data.convert import CONVERTERS, FILE_FORMATS
from shoplm.errors import ShopLMError

app = typer.Typer(
    help="shoplm: search and recommendations for online shops, built around a language model.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Convert public data sets to the shoplm format and inspect a store.", no_args_is_help=True)
train_app = typer.Typer(help="Train models: search fine-tuning and the recommendation model.", no_args_is_help=True)
eval_app = typer.Typer(help="Offline evaluation with reports (JSON, Markdown, PNG).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")

out = Console()
err = Console(stderr=True)

StoreOpt = Annotated[
    Optional[str],
    typer.Option("--store", help="Store URL: sqlite:///path.db, postgresql://user@host/db or memory://. "
                                 "Default: settings.store_url (env SHOPLM_STORE_URL)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj


@app.callback()
def _root(ctx: typer.Context) -> None:
    ctx.obj = Settings()


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True, disable=not err.is_terminal)


@app.command()
def ingest(
    ctx: typer.Context,
    items: Annotated[Optional[Path], typer.Option(help="Catalog file (.csv, .jsonl or .parquet).")] = None,
    events: Annotated[Optional[Path], typer.Option(help="Behaviour-log file (.csv, .jsonl or .parquet).")] = None,
    judgments: Annotated[Optional[Path], typer.Option(help="Search judgments file (query, item_id, relevance).")] = None,
    store: StoreOpt = None,
    strict: Annotated[bool, typer.Option(help="Reject every file on any bad record and write nothing.")] = False,
    allow_unknown_items: Annotated[bool, typer.Option(help="Accept events and judgments for items not in the catalog.")] = False,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Records per transaction (default: settings).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate and load items, events and judgments into a store.

    Every bad record is reported on stderr as FILE:ROW: field 'F': got V; expected E.
    Good records are stored; re-running the same files stores nothing twice.
    Exit code: 0 all accepted, 2 some records rejected, 1 nothing written (--strict or an error).

    [bold]Example:[/bold] shoplm ingest --items data/items.csv --events data/events.csv --store sqlite:///shop.db
    """
    from shoplm.store.ingest import ingest as run_ingest
    from shoplm.store import open_store

    settings = _settings(ctx)
    if not (items or events or judgments):
        raise typer.BadParameter("give at least one of --items, --events, --judgments")
    db = open_store(store or settings.store_url)
    try:
        with _progress() as progress:
            def hook(path: str, total: int):
                task = progress.add_task(f"ingest {Path(path).name}", total=total)
                return lambda n: progress.advance(task, n)

            report = run_ingest(db, items=items, events=events, judgments=judgments, strict=strict,
                                allow_unknown_items=allow_unknown_items,
                                batch_size=batch_size or settings.ingest_batch_size, progress=hook)
    finally:
        db.close()
    for file in report.files:
        for rejection in file.rejections:
            err.print(str(rejection), markup=False, highlight=False, soft_wrap=True)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_ingest(report)
    if not report.written:
        err.print(f"[red]--strict: {report.rejected} bad record(s); nothing was written.[/red]")
        raise typer.Exit(1)
    if report.rejected:
        raise typer.Exit(2)


def _print_ingest(report: Any) -> None:
    table = Table(title=f"ingest ({report.seconds:.1f} s)")
    for name in ("file", "kind", "read", "accepted", "rejected", "stored", "duplicates"):
        table.add_column(name, justify="left" if name in ("file", "kind") else "right", overflow="fold")
    for f in report.files:
        table.add_row(Path(f.path).name, f.kind, *(f"{getattr(f, n):,}" for n in ("read", "accepted", "rejected", "stored", "duplicates")))
    out.print(table)


@data_app.command("convert")
def convert(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help=f"One of: {', '.join(CONVERTERS)}.")],
    src: Annotated[Path, typer.Argument(help="The source directory (or file) of the data set.")],
    dest: Annotated[Path, typer.Argument(metavar="OUT", help="Directory to write items/events/judgments files to.")],
    file_format: Annotated[str, typer.Option("--as", help=f"Output file type: {', '.join(FILE_FORMATS)}.")] = "csv",
    as_json: JsonOpt = False,
) -> None:
    """Convert a public data set to shoplm's items/events/judgments files.

    [bold]Example:[/bold] shoplm data convert amazon-recbole ../shared/data/amazon-scientific data/scientific
    """
    from shoplm.data.convert import convert as run_convert

    report = run_convert(fmt, src, dest, file_format=file_format)
    if as_json:
        print(json.dumps({"files": {k: str(v) for k, v in report.files.items()}, "counts": report.counts}, indent=2))
        return
    table = Table(title=f"{fmt} -> {dest}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("file")
    for name, count in report.counts.items():
        table.add_row(name, f"{count:,}", str(report.files.get(name, "")))
    out.print(table)


@data_app.command("stats")
def stats(ctx: typer.Context, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Counts by event type, users, sessions, items, history lengths and items with no events.

    [bold]Example:[/bold] shoplm data stats --store sqlite:///shop.db
    """
    from shoplm.data.aggregates import dataset_stats
    from shoplm.store import open_store

    db = open_store(store or _settings(ctx).store_url)
    try:
        result = dataset_stats(db.events_frame(), db.item_ids(), db.counts())
    finally:
        db.close()
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title="shoplm data stats", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for name in ("items", "events", "judgments", "users", "sessions"):
        table.add_row(name, f"{result[name]:,}")
    for name, count in result["events_by_type"].items():
        table.add_row(f"  events: {name}", f"{count:,}")
    hist = result["history_length"]
    table.add_row("history length min / median / mean / max",
                  f"{hist['min']} / {hist['median']:g} / {hist['mean']:g} / {hist['max']}")
    for label, count in hist["buckets"].items():
        table.add_row(f"  actors with {label} item events", f"{count:,}")
    table.add_row("items with no events", f"{result['items_without_events']:,} ({result['share_items_without_events']:.1%})")
    if result["events_for_unknown_items"]:
        table.add_row("events for items not in the catalog", f"{result['events_for_unknown_items']:,}")
    out.print(table)


@app.command()
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
    import uvicorn

    from shoplm.api import create_app

    settings = _settings(ctx)
    overrides = {k: v for k, v in {"store_url": store, "host": host, "port": port}.items() if v}
    workers = workers or settings.serve_workers
    settings = settings.model_copy(update=overrides | {"torch_threads": settings.serve_threads, "serve_workers": workers})
    err.print(f"shoplm serving {settings.store_url} at http://{settings.host}:{settings.port}"
              + (f" with {workers} worker processes" if workers > 1 else ""), highlight=False)
    if workers == 1:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower())
        return
    # Worker processes rebuild their settings from the environment, so hand them the overrides there.
    os.environ.update({f"SHOPLM_{k.upper()}": str(v) for k, v in overrides.items()}
                      | {"SHOPLM_TORCH_THREADS": str(settings.torch_threads), "SHOPLM_SERVE_WORKERS": str(workers)})
    from shoplm.api.dispatch import serve_workers

    serve_workers("shoplm.api.app:create_app_from_env", workers=workers, host=settings.host, port=settings.port,
                  log_level=settings.log_level.lower())


@eval_app.command("personalized-search")
def eval_personalized_search(
    ctx: typer.Context,
    items: Annotated[Path, typer.Option(help="Catalog file in the shoplm format.")],
    events: Annotated[Path, typer.Option(help="Behaviour log in the shoplm format.")],
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the metrics as JSON.")],
    model: Annotated[Optional[Path], typer.Option(help="A `shoplm train recommend` directory; default: the zero-shot text profile.")] = None,
    write_blend: Annotated[bool, typer.Option(help="Store the tuned beta in the model directory's blend.json (the engine's search personalisation weight).")] = False,
) -> None:
    """Personalised vs query-only search, Ai et al. (SIGIR 2017) protocol: the query is the
    held-out item's category text, all items are ranked with and without the user's history.

    [bold]Example:[/bold] shoplm eval personalized-search --items data/items.csv --events data/events.csv --json out.json
    """
    from shoplm.recommend.blend import Blend, HISTORY_BUCKETS
    from shoplm.engine.evaluate import evaluate_personalized_search

    with err.status("evaluating personalised search") as status:
        result = evaluate_personalized_search(items, events, _settings(ctx), model, progress=status.update)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    if write_blend and model is not None:
        blend = Blend.load(model)
        blend.search_personal = {b: (0.0 if b == "0" else result["beta"]) for b in HISTORY_BUCKETS}
        blend.tuned_on = f"validation targets of {events}"
        blend.save(model)
    table = Table(title=f"personalised search ({result['n_cases']:,} test cases, beta={result['beta']})")
    for name in ("system", "ndcg@10", "recall@10", "mrr"):
        table.add_column(name, justify="left" if name == "system" else "right")
    for name, metrics in result["models"].items():
        table.add_row(name, *(f"{metrics[m]:.4f}" for m in ("ndcg@10", "recall@10", "mrr")))
    out.print(table)


def _register_commands() -> None:
    """Commands of the search and recommendation parts live beside their code."""
    from shoplm.cli import jobs, recommend, search

    search.register(app, train_app, eval_app, out, err)
    recommend.register(app, train_app, eval_app, out, err)
    jobs.register(app, out, err)


_register_commands()


def main() -> None:
    try:
        app()
    except ShopLMError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
