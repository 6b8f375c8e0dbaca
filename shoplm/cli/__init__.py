"""The `shoplm` command line: thin commands over the library, Rich for people, --json for scripts.

Commands are top-level functions in cli/data.py, serve.py, search.py, suggest.py, recommend.py
and jobs.py; this module registers them on the apps of cli/common.py and runs them."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError
from rich.markup import escape

from shoplm.cli import analytics, data, demo, jobs, merchandising, pretrain, recommend, search, serve, suggest
from shoplm.cli.common import (
    app, data_app, err, eval_app, index_app, jobs_app, jobs_train_app, report_app, rules_app, train_app,
)
from shoplm.config import Settings
from shoplm.errors import ShopLMError

app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(report_app, name="report")


@app.callback()
def _root(ctx: typer.Context) -> None:
    try:
        ctx.obj = Settings()
    except ValidationError as exc:  # a SHOPLM_* setting out of its range or choices
        problems = "; ".join(f"SHOPLM_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        err.print(f"[red]error:[/red] {escape(problems)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


app.command()(data.ingest)
data_app.command("convert")(data.convert)
data_app.command("stats")(data.stats)
app.command()(serve.serve)
app.command()(demo.demo)
eval_app.command("personalized-search")(search.eval_personalized_search)
app.add_typer(index_app, name="index")
train_app.command("search")(search.train_search)
app.command("pretrain")(pretrain.pretrain)
eval_app.command("search")(search.eval_search)
index_app.command("build")(search.index_build)
app.command("search")(search.search)
eval_app.command("suggest")(suggest.eval_suggest)
app.command("suggest")(suggest.suggest)
report_app.command("analytics")(analytics.report_analytics)
train_app.command("recommend")(recommend.train_recommend)
eval_app.command("recommend")(recommend.eval_recommend)
eval_app.command("basket")(recommend.eval_basket)
app.add_typer(jobs_app, name="jobs")
jobs_app.add_typer(jobs_train_app, name="train")
jobs_app.command("embed")(jobs.embed)
jobs_app.command("recommend-all")(jobs.recommend_all)
jobs_app.command("retrain")(jobs.retrain)
jobs_train_app.command("recommend")(jobs.jobs_train_recommend)
jobs_train_app.command("search")(jobs.jobs_train_search)
app.add_typer(rules_app, name="rules")
rules_app.command("list")(merchandising.rules_list)
rules_app.command("add")(merchandising.rules_add)
rules_app.command("delete")(merchandising.rules_delete)


def main() -> None:
    try:
        app()
    except ShopLMError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
