"""`shoplm report analytics`: what the shop's result lists were shown and led to."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer

from shoplm.cli.common import out, settings_of


def _seconds(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"--{name} {text!r}: ISO-8601 (2024-05-01 or 2024-05-01T12:00:00Z) or Unix seconds")
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def report_analytics(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for report.md, the PNG charts and analytics.json.")],
    store: Annotated[Optional[str], typer.Option(help="Store URL (default: settings.store_url).")] = None,
    since: Annotated[Optional[str], typer.Option(help="From this time (ISO-8601 or Unix seconds), inclusive.")] = None,
    until: Annotated[Optional[str], typer.Option(help="Up to this time, exclusive.")] = None,
) -> None:
    """Top queries, zero-result and low-CTR queries, CTR by position, and per surface and
    experiment arm: impressions, clicks, carts, purchases, revenue — the same JSON as
    GET /v1/admin/analytics, aggregated by the store.

    [bold]Example:[/bold] shoplm report analytics --store sqlite:///shop.db --since 2026-11-01 --out var/analytics
    """
    from shoplm.store import open_store
    from shoplm.store.analytics import analytics, write_analytics_report

    settings = settings_of(ctx)
    db = open_store(store or settings.store_url)
    try:
        report = analytics(db, _seconds(since, "since"), _seconds(until, "until"), settings.attribution_window_s)
    finally:
        db.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "analytics.json").write_text(json.dumps(report, indent=2))
    path = write_analytics_report(report, out_dir)
    for surface, m in report["surfaces"].items():
        out.print(f"{surface}: {m['impressions']:,} lists, CTR {m['ctr']:.1%}, conversion {m['conversion']:.2%}, "
                  f"revenue {m['revenue']:,.2f}")
    out.print(f"wrote {path}")
