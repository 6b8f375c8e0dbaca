"""`shoplm train search`, `shoplm eval search`, `shoplm eval personalized-search`, `shoplm index build`
and `shoplm search`. Each is parse -> one library call -> print."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from shoplm.cli.common import (
    EpochsOpt, JudgmentsOpt, LrOpt, MaxMinutesOpt, ModelOutOpt, ProgressBars, SearchEventsOpt, SearchItemsOpt, err, out,
    set_search_threads, settings_of,
)

# Library modules are imported inside each command: `shoplm --help` and the data commands then start
# in a quarter of a second instead of the seconds that loading torch and the models' libraries takes.


def train_search(
    ctx: typer.Context,
    items: SearchItemsOpt,
    out_dir: ModelOutOpt,
    judgments: JudgmentsOpt = None,
    events: SearchEventsOpt = None,
    model: Annotated[Optional[Path], typer.Option(help="Base model directory (default: settings / bundled MiniLM).")] = None,
    epochs: EpochsOpt = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Pairs per batch (default: settings).")] = None,
    lr: LrOpt = None,
    max_minutes: MaxMinutesOpt = None,
    seed: Annotated[Optional[int], typer.Option(
        help="Seed of batching and initialisation (default: settings.search_split_seed). The train/dev split "
             "always uses settings.search_split_seed, so `eval search` scores the same dev queries.")] = None,
) -> None:
    """Fine-tune the encoder on judged queries and/or behaviour logs (in-batch softmax, hard negatives).

    Judged queries are split into train and dev by query (settings.search_dev_fraction); dev NDCG@10
    picks the best step. A share of the train queries (settings.search_ranker_fraction) is held out
    of fine-tuning and trains the re-ranker (LambdaMART over the BM25 + dense candidates), saved in
    DIR/ranker; before it, a cross-encoder learns from the fine-tuning pairs (DIR/cross, up to
    settings.search_cross_minutes; settings.search_cross_depth=0 skips it) and the re-ranker reads
    its scores of each query's top candidates. --max-minutes bounds the whole command. Writes a model directory that --model of
    the other commands accepts.

    [bold]Example:[/bold] shoplm train search --items data/hd/items.csv --judgments data/hd/judgments.csv --out var/models/hd
    """
    from dataclasses import asdict

    from shoplm.search.train import cut_short_warning, run_training, search_train_config

    settings = settings_of(ctx)
    if not (judgments or events):
        raise typer.BadParameter("give --judgments and/or --events: the training pairs come from them")
    set_search_threads(settings)
    cfg = search_train_config(settings, batch_size=batch_size or None, epochs=epochs or None, lr=lr or None,
                              max_minutes=max_minutes or None, seed=seed)
    started = time.monotonic()
    with ProgressBars(lines=True) as progress:
        result = run_training(settings, items, judgments, events, out_dir, cfg, model, progress)
    out.print(f"wrote {out_dir} in {time.monotonic() - started:.0f} s: {result.steps} steps, best step "
              f"{result.best_step}, dev NDCG@10 (training pool) {result.history[0]['dev_ndcg@10']:.4f} -> "
              f"{result.best_dev_ndcg:.4f}")
    if result.ranker:
        out.print(f"re-ranker: {result.ranker['queries']} held-out queries, {result.ranker['rounds']} rounds")
    warning = cut_short_warning(asdict(result), cfg.max_minutes)
    if warning:  # on the console and at the exit summary's end, in the model's shoplm_train.json, in eval reports
        err.print(f"[bold yellow]{warning}[/bold yellow]", highlight=False)
    else:
        out.print(f"fine-tuning did its plan: {result.steps:,} of {result.planned_steps:,} planned steps "
                  "(fewer when the dev score stopped improving)", highlight=False)


def eval_search(
    ctx: typer.Context,
    items: Annotated[Path, typer.Option(help="Catalog file (.csv, .jsonl or .parquet).")],
    judgments: Annotated[Path, typer.Option(
        help="Judged (query, item_id, relevance) file: its dev split is scored; with --test-judgments its "
             "queries (those not in the test file) tune the fusion of the *_tuned systems.")],
    test_judgments: Annotated[Optional[Path], typer.Option(
        help="Held-out judged queries: every one is scored, none split off, and hybrid_served (hybrid_ft_served) "
             "is what `shoplm serve` answers with these settings.")] = None,
    model: Annotated[Optional[Path], typer.Option(help="Fine-tuned model directory: adds dense_ft and hybrid_ft.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write {n_queries, models: {system: metrics}} here "
                                                     "(with --test-judgments also queries, served and how).")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Directory for report.md and search.png.")] = None,
) -> None:
    """NDCG@10, Recall@100 and MRR@10 of bm25, dense, hybrid (and dense_ft, hybrid_ft) on the dev queries.

    The dev split is the one `shoplm train search` held out (same settings), so a fine-tuned model is
    never scored on its training queries; hybrid's fusion is tuned on those dev queries (cross-fitted),
    so no system is exactly as served. With --test-judgments every test query is scored instead:
    hybrid_served (and with --model hybrid_ft_served) through the service's own search pipeline and
    settings, hybrid_tuned with the fusion tuned on the --judgments queries. Item vectors are cached:
    a second run encodes nothing.

    [bold]Example:[/bold] shoplm eval search --items data/hd/items.csv --judgments data/hd/train.csv --test-judgments data/hd/test.csv --model var/models/hd --json var/eval/search.json --report var/eval/search
    """
    from shoplm.data.readers import read_items, read_judgments
    from shoplm.engine.evaluate import served_search
    from shoplm.search.evaluate import evaluate_held_out, evaluate_search, write_search_report
    from shoplm.search.train import cut_short_warning, model_training

    settings = settings_of(ctx)
    set_search_threads(settings)
    with ProgressBars(lines=True) as progress:
        if test_judgments is None:
            result = evaluate_search(read_items(items), read_judgments(judgments), settings, model, progress)
        else:
            result = evaluate_held_out(read_items(items), read_judgments(judgments), read_judgments(test_judgments),
                                       settings, served_search, model, progress)
    table = Table(title=f"search on {result.n_queries} {result.queries} queries ({result.seconds['total']:.0f} s)")
    table.add_column("system")
    for metric in next(iter(result.models.values())):
        table.add_column(metric, justify="right")
    for name, values in result.models.items():
        table.add_row(name, *(f"{v:.4f}" for v in values.values()))
    out.print(table)
    training = model_training(model)
    if training is not None:
        warning = cut_short_warning(training)
        result.how["model"] = warning or (f"{model}: fine-tuning did its plan ({training.get('steps', 0):,} of "
                                          f"{training.get('planned_steps', 0):,} planned steps)")
    for name, how in result.how.items():
        out.print(f"{name}: {how}", highlight=False)
    out.print(f"as served: {', '.join(result.served)}" if result.served else
              "as served: none (`shoplm serve` fuses with the settings' weights); --test-judgments scores the served system")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.to_json(), indent=2))
    if report:
        out.print(f"report: {write_search_report(result, report, f'Search evaluation: {items}')}")


def index_build(
    ctx: typer.Context,
    store: Annotated[Optional[str], typer.Option(help="Store URL (default: settings.store_url).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Index directory (default: settings.search_index_dir).")] = None,
    model: Annotated[Optional[Path], typer.Option(help="Model directory (default: settings / bundled MiniLM).")] = None,
    embeddings: Annotated[Optional[Path], typer.Option(
        help="Output of `shoplm jobs embed` (same model): its vectors go into the embedding cache first, so only "
             "items it lacks or whose text changed since are encoded here.")] = None,
) -> None:
    """Encode every item of the store (through the embedding cache) and write the vector and BM25 indexes.

    [bold]Example:[/bold] shoplm index build --store sqlite:///shop.db --model var/models/hd --out var/index

    [bold]A catalog too big to encode here:[/bold] shoplm jobs embed --items items.csv --out var/vectors
    (on a Ray cluster), then shoplm index build --store ... --embeddings var/vectors
    """
    from shoplm.atomic import dir_lock
    from shoplm.search.pipeline import build_indexes
    from shoplm.store import open_store

    settings = settings_of(ctx)
    set_search_threads(settings)
    db = open_store(store or settings.store_url)
    try:
        catalog = db.items()
    finally:
        db.close()
    target = out_dir or settings.search_index_dir
    if embeddings is not None:
        from shoplm.jobs.batch import adopt_embeddings

        err.print(f"{adopt_embeddings(embeddings, settings, model):,} vectors from {embeddings} added to the embedding cache")
    with ProgressBars(lines=True) as progress, dir_lock(target):  # a server opening the directory waits
        params = build_indexes(catalog, settings, target, model, progress)
    out.print(f"indexed {params['count']:,} items in {target} ({params['vectors']} vectors + BM25)")


def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="What the shopper typed; \"\" browses (filters and facets only).")],
    k: Annotated[int, typer.Option("--k", "--limit", min=1, max=100, help="Results per page.")] = 10,
    offset: Annotated[int, typer.Option(min=0, help="Results to skip (the page: offset / k + 1).")] = 0,
    sort: Annotated[str, typer.Option(help="relevance, price_asc, price_desc, newest or popular.")] = "relevance",
    facets: Annotated[Optional[list[str]], typer.Option(
        "--facet", help="Count this facet over the result set (brand, category, price, ...). Repeatable.")] = None,
    filters: Annotated[Optional[list[str]], typer.Option(
        "--filter", help="brand:DeWalt, brand:DeWalt|Makita, -brand:Ryobi, \"category:Tools > Drills\", "
        "price:10..50 (10 <= price < 50), available:true. Repeatable (AND).")] = None,
    user_id: Annotated[Optional[str], typer.Option(help="Personalise by this user's history in the store.")] = None,
    session_id: Annotated[Optional[str], typer.Option(help="Personalise by the history of this session_id (a visit).")] = None,
    index: Annotated[Optional[Path], typer.Option(help="Index directory (default: settings.search_index_dir).")] = None,
    store: Annotated[Optional[str], typer.Option(help="Store URL (default: settings.store_url).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the page as GET /v1/search answers it.")] = False,
) -> None:
    """A results page, exactly as GET /v1/search answers it: total, facets, sort and pages over
    the query's whole result set, misspelled words corrected from the catalog's own words.

    [bold]Example:[/bold] shoplm search "cordless drill" --k 5 --facet brand --facet price --filter price:..150 --sort price_asc
    """
    from shoplm.engine.engine import Engine
    from shoplm.engine.listing import SORTS, PageRequest
    from shoplm.search.facets import FilterError, parse_filters
    from shoplm.store import open_store

    if sort not in SORTS:
        raise typer.BadParameter(f"--sort {sort!r}: one of {', '.join(SORTS)}")
    settings = settings_of(ctx)
    if index is not None:
        settings = settings.model_copy(update={"search_index_dir": index})
    db = open_store(store or settings.store_url)
    try:
        engine = Engine.open(settings, db)
        try:
            clauses = tuple(parse_filters([_clause(f) for f in filters or []], engine.schema))
            wanted = tuple(engine.schema.check_facets(facets or []))
        except FilterError as error:
            raise typer.BadParameter(str(error)) from None
        page = engine.search_page(PageRequest(query.strip(), user_id, session_id, clauses, None, wanted, sort,
                                              offset, k))
    finally:
        db.close()
    rows = [{"position": offset + r, "item_id": h.item_id, "score": h.score, "title": engine.items[h.item_id].title,
             "category": engine.items[h.item_id].category, "brand": engine.items[h.item_id].brand,
             "price": engine.items[h.item_id].price, "variants": page.variants.get(h.item_id)}
            for r, h in enumerate(page.hits) if h.item_id in engine.items]
    if as_json:
        print(json.dumps({"items": rows, "total": page.total, "facets": page.facets,
                          "corrected_query": page.corrected_query}, indent=2))
        return
    shown = page.corrected_query or query
    title = f"search: {shown!r}" + (f" (you typed {query!r})" if page.corrected_query else "")
    table = Table(title=f"{title} - {page.total:,} results, {offset + 1}-{offset + len(rows)}, sort {sort}")
    for name in ("#", "score", "item_id", "title", "brand", "category", "price"):
        table.add_column(name, justify="right" if name in ("#", "score", "price") else "left", overflow="fold")
    for row in rows:
        table.add_row(str(row["position"] + 1), f"{row['score']:.4f}", row["item_id"], row["title"], row["brand"] or "",
                      row["category"] or "", "" if row["price"] is None else f"{row['price']:g}")
    out.print(table)
    for name, counts in page.facets.items():
        out.print(f"[bold]{name}[/bold]: " + ", ".join(f"{value} ({count})" for value, count in counts.items()))


def _clause(spec: str) -> str:
    """The filter syntax of GET /v1/search; the older `category=PATH`, `price=LOW..HIGH` and
    `available` forms still read."""
    if spec.strip() == "available":
        return "available:true"
    name, sep, value = spec.partition("=")
    if sep and ":" not in name:
        return f"{name.strip()}:{value}"
    return spec


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
    from shoplm.engine.evaluate import evaluate_personalized_search
    from shoplm.recommend.blend import Blend

    with ProgressBars() as progress:
        result = evaluate_personalized_search(items, events, settings_of(ctx), model, progress=progress)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    if write_blend and model is not None:
        Blend.load(model).with_search_weight(result["beta"], f"validation targets of {events}").save(model)
    table = Table(title=f"personalised search ({result['n_cases']:,} test cases, beta={result['beta']})")
    for name in ("system", "ndcg@10", "recall@10", "mrr"):
        table.add_column(name, justify="left" if name == "system" else "right")
    for name, metrics in result["models"].items():
        table.add_row(name, *(f"{metrics[m]:.4f}" for m in ("ndcg@10", "recall@10", "mrr")))
    out.print(table)


