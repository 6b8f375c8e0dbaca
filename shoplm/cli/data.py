"""`shoplm ingest` and `shoplm data convert|stats`: files into a store, public data sets into files, a store's counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from shoplm.cli.common import JsonOpt, ProgressBars, StoreOpt, err, out, settings_of
from shoplm.data.convert import CONVERTERS, FILE_FORMATS
from shoplm.data.convert import convert as run_convert

# Library modules are imported inside each command: `shoplm --help` and the data commands then start
# in a quarter of a second instead of the seconds that loading torch and the models' libraries takes.


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
    from shoplm.store import open_store
    from shoplm.store.ingest import ingest as run_ingest

    settings = settings_of(ctx)
    if not (items or events or judgments):
        raise typer.BadParameter("give at least one of --items, --events, --judgments")
    db = open_store(store or settings.store_url)
    try:
        with ProgressBars() as progress:
            report = run_ingest(db, items=items, events=events, judgments=judgments, strict=strict,
                                allow_unknown_items=allow_unknown_items,
                                batch_size=batch_size or settings.ingest_batch_size, progress=progress)
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


def stats(ctx: typer.Context, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Counts by event type, users, sessions, items, history lengths and items with no events.

    [bold]Example:[/bold] shoplm data stats --store sqlite:///shop.db
    """
    from shoplm.data.aggregates import dataset_stats
    from shoplm.store import open_store

    db = open_store(store or settings_of(ctx).store_url)
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
