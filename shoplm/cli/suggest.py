"""`shoplm suggest` and `shoplm eval suggest`: query suggestions (autocomplete) from a catalog
and a behaviour log, and their offline evaluation on judged queries. Each is parse -> one
library call -> print."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from shoplm.cli.common import ItemsOpt, out, settings_of

# Library modules are imported inside each command, as in cli/search.py: `shoplm --help` stays fast.


def suggest(
    prefix: Annotated[str, typer.Argument(help="What the shopper has typed so far.")],
    items: ItemsOpt,
    events: Annotated[Optional[Path], typer.Option(
        help="Behaviour log: searches followed by a click within 30 minutes are the past queries.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many suggestions.")] = 5,
    boost: Annotated[Optional[list[str]], typer.Option(
        help="NAME=MULTIPLIER for a brand or category the visitor likes, e.g. --boost dewalt=2. Repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Suggestions for a prefix from the past queries of --events (if given) and the catalog's
    brands, categories and title phrases.

    [bold]Example:[/bold] shoplm suggest "cordless dr" --items data/items.csv --events data/events.csv -k 5
    """
    from shoplm.data.readers import read_events, read_items
    from shoplm.search.suggest import Suggester, clicked_queries

    started = time.monotonic()
    suggester = Suggester.build(clicked_queries(read_events(events)) if events else [], read_items(items))
    built = time.monotonic() - started
    rows = suggester.suggest(prefix, k, parse_boost(boost or []))
    if as_json:
        print(json.dumps([{"text": s.text, "score": s.score} for s in rows], indent=2))
        return
    table = Table(title=f"suggestions for {prefix!r} ({len(suggester):,} texts, built in {built:.1f} s)")
    table.add_column("rank", justify="right")
    table.add_column("suggestion")
    table.add_column("score", justify="right")
    for rank, row in enumerate(rows, start=1):
        table.add_row(str(rank), row.text, f"{row.score:g}")
    out.print(table)


def eval_suggest(
    ctx: typer.Context,
    items: ItemsOpt,
    judgments: Annotated[Path, typer.Option(help="Judged (query, item_id, relevance) file; its dev split is typed.")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the result document here.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Suggestions shown per prefix.")] = 5,
    validation: Annotated[bool, typer.Option(
        help="Score a validation part of the train queries instead of dev (to compare choices without dev).")] = False,
) -> None:
    """Share of dev queries whose full text is among the top k suggestions after typing 3, 5 and 8
    characters (and share whose word being typed is completed): shoplm's suggester (train queries
    + catalog) against plain prefix match over the train queries.

    The split is the one `shoplm eval search` scores (settings.search_dev_fraction, _split_seed);
    a train query's weight is its number of judged items with relevance > 0.

    [bold]Example:[/bold] shoplm eval suggest --items var/hd/items.csv --judgments var/hd/judgments.csv --json var/eval/suggest.json
    """
    from shoplm.data.readers import read_items, read_judgments
    from shoplm.search.suggest_eval import evaluate_suggest

    result = evaluate_suggest(read_items(items), read_judgments(judgments), settings_of(ctx), validation=validation, k=k)
    metrics = result["metrics"]
    table = Table(title=f"suggestions: {result['n_future']:,} {result['split']} queries typed, "
                        f"{result['n_past']:,} past queries, top {k}")
    for name in ("typed", "queries", "shoplm", "baseline", "shoplm word", "baseline word"):
        table.add_column(name, justify="right")
    for length in result["prefix_lengths"]:
        table.add_row(f"{length} chars", f"{metrics[f'queries@{length}']:,.0f}",
                      *(f"{metrics[f'{name}@{length}']:.4f}" for name in ("shoplm", "baseline", "shoplm_word", "baseline_word")))
    out.print(table)
    out.print(f"reachable at all: shoplm {metrics['shoplm_reachable']:.4f}, baseline {metrics['baseline_reachable']:.4f}; "
              f"{metrics['suggestions']:,.0f} suggestion texts built in {metrics['build_seconds']:.1f} s; suggest "
              f"median {metrics['suggest_p50_us']:.0f} us, p99 {metrics['suggest_p99_us']:.0f} us")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))


def parse_boost(specs: list[str]) -> dict[str, float]:
    """`["dewalt=2", "Tools > Drills=1.5"]` -> {"dewalt": 2.0, "Tools > Drills": 1.5}."""
    boost = {}
    for spec in specs:
        name, _, value = spec.rpartition("=")
        try:
            multiplier = float(value)
            if not name.strip() or not 0 <= multiplier < float("inf"):
                raise ValueError
        except ValueError:
            raise typer.BadParameter(f"--boost {spec!r}: expected NAME=MULTIPLIER with a finite multiplier >= 0, "
                                     "e.g. dewalt=2") from None
        boost[name.strip()] = multiplier
    return boost
