"""`shoplm rules list|add|delete`: merchandising rules, written straight to a store. A running
service takes them within `rules_refresh_s` (5 s); the admin API (/v1/admin/rules) does the
same over HTTP and reaches every worker at once."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from typing import Annotated, Optional

import typer
from rich.table import Table

from shoplm.cli.common import JsonOpt, StoreOpt, out, settings_of

# Library modules are imported inside each command, as in cli/search.py: `shoplm --help` stays fast.


def rules_list(ctx: typer.Context, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Every rule of the store, by id.

    [bold]Example:[/bold] shoplm rules list --store sqlite:///shop.db
    """
    from shoplm.store import open_store

    db = open_store(store or settings_of(ctx).store_url)
    try:
        rules = db.rules()
    finally:
        db.close()
    if as_json:
        print(json.dumps([dataclasses.asdict(r) for r in rules], indent=2))
        return
    table = Table(title=f"{len(rules)} merchandising rule(s)")
    for column in ("id", "action", "item", "scope", "window", "name"):
        table.add_column(column)
    for r in rules:
        action = {"pin": f"pin at {r.position}", "boost": f"boost +{r.amount}", "bury": f"bury -{r.amount}"}
        table.add_row(str(r.id), action.get(r.action, r.action), r.item_id, _scope(r),
                      f"{_when(r.start)} .. {_when(r.end)}", r.name)
    out.print(table)


def rules_add(
    ctx: typer.Context,
    action: Annotated[str, typer.Argument(help="pin, boost, bury or hide.")],
    item: Annotated[str, typer.Option("--item", help="The item_id the rule acts on (in the store's catalog).")],
    position: Annotated[Optional[int], typer.Option(help="pin: the 0-based position.")] = None,
    amount: Annotated[Optional[int], typer.Option(help="boost / bury: positions moved up / down.")] = None,
    query: Annotated[Optional[str], typer.Option(help="Acts on searches for exactly this query.")] = None,
    contains: Annotated[Optional[str], typer.Option("--query-contains", help="Acts on queries with all these words.")] = None,
    category: Annotated[Optional[str], typer.Option(help="Acts on pages filtered to this category path.")] = None,
    surface: Annotated[Optional[list[str]], typer.Option(
        help="search, browse, recommend or similar; repeatable (default: all).")] = None,
    start: Annotated[Optional[str], typer.Option(help="Acts from then on: ISO-8601 or Unix seconds.")] = None,
    end: Annotated[Optional[str], typer.Option(help="Acts until then (exclusive).")] = None,
    name: Annotated[str, typer.Option(help="Named in the hits' reason.")] = "",
    store: StoreOpt = None,
) -> None:
    """Add a rule (checked as the API checks it) and print its id.

    [bold]Example:[/bold] shoplm rules add pin --item fan-7 --position 0 --query fan --name "summer sale"
    """
    from shoplm.data.records import FieldProblem
    from shoplm.data.rules import parse_rule
    from shoplm.errors import InvalidRecords
    from shoplm.store import open_store

    raw = {"action": action, "item_id": item, "position": position, "amount": amount, "query": query,
           "query_contains": contains, "category": category, "surfaces": surface, "start": start, "end": end,
           "name": name}
    rule = parse_rule({k: v for k, v in raw.items() if v is not None})
    if isinstance(rule, list):
        raise InvalidRecords("rule", {0: rule})
    db = open_store(store or settings_of(ctx).store_url)
    try:
        if not db.items([rule.item_id]):
            raise InvalidRecords("rule", {0: [FieldProblem("item_id", rule.item_id, "an item_id in the store's catalog")]})
        saved = db.put_rule(rule)
    finally:
        db.close()
    out.print(f"rule {saved.id} added: {saved.action} {saved.item_id}")


def rules_delete(
    ctx: typer.Context,
    rule_id: Annotated[int, typer.Argument(help="The id `shoplm rules list` shows.")],
    store: StoreOpt = None,
) -> None:
    """Delete a rule.

    [bold]Example:[/bold] shoplm rules delete 3
    """
    from shoplm.errors import NotFound
    from shoplm.store import open_store

    db = open_store(store or settings_of(ctx).store_url)
    try:
        if not db.delete_rule(rule_id):
            raise NotFound(f"no rule with id {rule_id}; see `shoplm rules list`")
    finally:
        db.close()
    out.print(f"rule {rule_id} deleted")


def _scope(rule) -> str:
    parts = [f"query={rule.query!r}"] if rule.query else []
    parts += [f"contains={' '.join(rule.query_contains)!r}"] if rule.query_contains else []
    parts += [f"category={rule.category!r}"] if rule.category else []
    return " ".join([*parts, ",".join(rule.surfaces)])


def _when(seconds: float | None) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M") if seconds is not None else "-"
