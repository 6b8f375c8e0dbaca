"""`shoplm train recommend` and `shoplm eval recommend`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from shoplm.cli.common import ColdOpt, ColdUsersOpt, EventsOpt, ItemsOpt, ProgressBars, out, set_recommend_threads, settings_of

# Library modules are imported inside each command: `shoplm --help` and the data commands then start
# in a quarter of a second instead of the seconds that loading torch and the models' libraries takes.


def train_recommend(
    ctx: typer.Context,
    items: ItemsOpt,
    events: EventsOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write the model to (created).")],
    cold: ColdOpt = 0.0,
    cold_users: ColdUsersOpt = 0.0,
) -> None:
    """Train the shoplm next-item model (Transformer over language-model item vectors).

    Trains on every event but each actor's last two; the second-last (validation target)
    picks the best epoch (NDCG@10, early stopping); the last (test target) is never used.
    Writes model.safetensors, item_ids.npy, params.json and train_log.json to --out.
    Knobs: SHOPLM_RECOMMEND_* settings (dim, layers, encoder=transformer|gru, epochs, ...).

    [bold]Example:[/bold] shoplm train recommend --items var/data/scientific/items.csv --events var/data/scientific/events.csv --out var/models/scientific
    """
    from shoplm.recommend.evaluate import prepare
    from shoplm.recommend.train import best_epoch, cut_short_warning, train_and_save, train_config, training_stop

    settings = settings_of(ctx)
    set_recommend_threads(settings)
    started = time.perf_counter()
    with ProgressBars(lines=True) as progress:
        item_ids, split, _, vectors, held = prepare(settings, items, events, cold, progress, cold_users)
        log = train_and_save(settings, item_ids, split, vectors, cold, out_dir, progress,
                             seconds_before=time.perf_counter() - started, cold_users=held,
                             cold_users_share=cold_users)
    best = best_epoch(log)
    out.print(f"trained in {time.perf_counter() - started:.0f} s ({len(log)} epochs); best epoch "
              f"{best.get('epoch')} with validation NDCG@10 {best.get('valid_ndcg@10', 0):.4f}; saved to {out_dir}")
    warning = cut_short_warning(training_stop(log, train_config(settings)))
    if warning:
        out.print(f"[bold red]{warning}[/bold red]")


def eval_recommend(
    ctx: typer.Context,
    items: ItemsOpt,
    events: EventsOpt,
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the metrics as JSON.")],
    model_dir: Annotated[Optional[Path], typer.Option("--model", help="A model from `shoplm train recommend`; "
                                                      "without it the shoplm model is trained in this run.")] = None,
    cold: ColdOpt = 0.0,
    exclude_history: Annotated[bool, typer.Option("--exclude-history", help="Remove the history's items from "
                                                  "each ranking (default: keep them, the RecBole protocol).")] = False,
    report_dir: Annotated[Optional[Path], typer.Option("--report", help="Directory for report.md and PNG charts.")] = None,
    cold_users: ColdUsersOpt = 0.0,
) -> None:
    """Evaluate every baseline and the shoplm model on a leave-last-out split, in one run.

    Baselines: popularity, item_knn, sasrec, text_zero_shot. Full ranking over all items;
    Recall@10/50, NDCG@10/50, MRR overall and by history length, target frequency,
    (with --cold-items) cold targets and (with --cold-users) held-out users after each of
    their first events, where shoplm_served is the model mixed with popularity as the
    service serves it.

    [bold]Example:[/bold] shoplm eval recommend --items var/data/scientific/items.csv --events var/data/scientific/events.csv --model var/models/scientific --json var/eval/scientific.json --report var/eval/scientific
    """
    from shoplm.recommend.evaluate import evaluate_files, write_recommend_report

    settings = settings_of(ctx)
    set_recommend_threads(settings)
    with ProgressBars(lines=True) as progress:
        result = evaluate_files(settings, items, events, model_dir, cold, exclude_history, progress, cold_users)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    if report_dir is not None:
        write_recommend_report(report_dir, result)
    print_table(result)


def print_table(result: dict) -> None:
    from shoplm.recommend.evaluate import METRICS

    table = Table(title=f"recommendation on {result['dataset']['name']} "
                        f"({result['dataset']['test_cases']:,} test cases)")
    table.add_column("model")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    for name, metrics in result["models"].items():
        table.add_row(name, *(f"{metrics[m]:.4f}" for m in METRICS))
    out.print(table)


def eval_basket(
    ctx: typer.Context,
    items: ItemsOpt,
    events: EventsOpt,
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the metrics as JSON.")],
    report_dir: Annotated[Optional[Path], typer.Option("--report", help="Directory for report.md and PNG charts.")] = None,
    ks: Annotated[str, typer.Option("--k", help="Cart sizes to evaluate, comma-separated.")] = "1,2,3",
    text: Annotated[bool, typer.Option("--text/--no-text", help="Let items never bought borrow their text "
                                       "neighbours' complements (encodes every title once, cached).")] = True,
    tune: Annotated[bool, typer.Option("--tune/--served", help="Choose the complements' alpha and basket decay "
                                       "on validation baskets, or score the served settings "
                                       "(SHOPLM_COMPLEMENTS_ALPHA, _BASKET_DECAY).")] = True,
) -> None:
    """Evaluate basket completion: the first k items of each user's last basket are the cart,
    the rest of it the targets.

    Baskets are the purchase and cart events of one session. Models: popularity, item_knn,
    buy_again (the user's own past purchases) and shoplm_complements (what
    /v1/recommend?items= and /v1/items/{id}/bought-together serve), whose parameters are
    chosen on each user's second-last basket. Recall@10 and NDCG@10 per k, full ranking.

    [bold]Example:[/bold] shoplm eval basket --items var/data/instacart/items.csv --events var/data/instacart/events.csv --json var/eval/basket.json --report var/eval/basket
    """
    from shoplm.data.readers import read_items
    from shoplm.data.text import item_texts
    from shoplm.recommend.basket import evaluate_baskets, write_basket_report
    from shoplm.recommend.evaluate import item_vectors

    settings = settings_of(ctx)
    try:
        sizes = tuple(int(k) for k in ks.split(","))
    except ValueError:
        raise typer.BadParameter(f"--k {ks!r}: expected comma-separated whole numbers such as 1,2,3")
    with ProgressBars(lines=True) as progress:
        vectors = item_vectors(settings, item_texts(read_items(items), settings.item_text_template), progress) \
            if text else None
        result = evaluate_baskets(settings, items, events, sizes, vectors, tune, progress)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    if report_dir is not None:
        write_basket_report(report_dir, result)
    table = Table(title=f"basket completion on {result['dataset']['name']} (Recall@10 / NDCG@10)")
    table.add_column("model")
    for k in result["k"]:
        table.add_column(f"k={k} (n={result['dataset']['cases'][k]})", justify="right")
    for model in next(iter(result["k"].values())):
        table.add_row(model, *(f"{result['k'][k][model]['recall@10']:.4f} / {result['k'][k][model]['ndcg@10']:.4f}"
                               for k in result["k"]))
    out.print(table)
    chosen = result["complements"]
    out.print(f"complements: alpha={chosen['alpha']}, basket_decay={chosen['basket_decay']} (chosen on "
              f"{chosen['chosen_on']}); {result['dataset']['seconds']:.0f} s")
