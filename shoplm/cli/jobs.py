"""`shoplm jobs embed|recommend-all|train`: the Ray jobs of `shoplm.jobs.batch` and `shoplm.jobs.train`
from the command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from shoplm.cli.common import (
    ColdOpt, EpochsOpt, EventsOpt, ItemsOpt, JudgmentsOpt, LrOpt, MaxMinutesOpt, ModelOutOpt, SearchEventsOpt, StoreOpt,
    SearchItemsOpt, out,
)
from shoplm.errors import ConfigError

AddressOpt = Annotated[Optional[str], typer.Option("--address", help="A Ray cluster to join (ray://host:10001 or "
                                                   "'auto'); without it a local Ray is started.")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=1, help="Ray actors running the job (1 CPU each).")]
TrainWorkersOpt = Annotated[int, typer.Option(
    "--workers", min=1, help="Ray Train workers: one GPU each when the cluster has a GPU per worker, else CPUs.")]
StorageOpt = Annotated[Optional[str], typer.Option(
    "--storage", help="Where Ray Train keeps the model checkpoint on its way to --out: on a cluster of several "
                      "machines a directory they all share (NFS) or s3://...; without it a temporary directory "
                      "beside --out, which is enough on one machine.")]

# Library modules are imported inside each command: `shoplm --help` and the data commands then start
# in a quarter of a second instead of the seconds that loading torch and the models' libraries takes.


def _ray_available() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError("the Ray jobs need the ray extra: pip install 'shoplm[ray]'") from None


def embed(ctx: typer.Context, items: Annotated[Path, typer.Option(help="Catalog file in the shoplm format.")],
          out_dir: Annotated[Path, typer.Option("--out", help="Directory for the Parquet files (item_id, text_hash, "
                                                              "vector) and embeddings.json.")],
          address: AddressOpt = None, workers: WorkersOpt = 2,
          in_process: Annotated[bool, typer.Option("--in-process", help="Encode here, without Ray, in files of 50,000 "
                                                   "items; a re-run keeps the files already written for unchanged "
                                                   "items.")] = False) -> None:
    """Encode the whole catalog with the configured encoder, on Ray Data (or --in-process), for
    `shoplm index build --embeddings` to index without encoding.

    [bold]Example:[/bold] shoplm jobs embed --items var/hd/items.csv --out var/jobs/vectors
    """
    from shoplm.cli.common import ProgressBars, set_search_threads
    from shoplm.jobs.batch import embed_catalog

    if not in_process:
        _ray_available()
    else:
        set_search_threads(ctx.obj)
    started = time.perf_counter()
    with ProgressBars(lines=True) as progress:
        n = embed_catalog(items, out_dir, ctx.obj, address, workers, in_process=in_process, progress=progress)
    out.print(f"{n:,} items embedded in {time.perf_counter() - started:.0f} s; Parquet in {out_dir}")


def recommend_all(
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
    from shoplm.jobs.batch import recommend_all as run_recommend_all

    _ray_available()
    settings = ctx.obj.model_copy(update={"store_url": store}) if store else ctx.obj
    started = time.perf_counter()
    n = run_recommend_all(settings, out_dir, k, address, workers)
    out.print(f"top {k} for {n:,} users in {time.perf_counter() - started:.0f} s; Parquet in {out_dir}")


def jobs_train_recommend(
    ctx: typer.Context, items: ItemsOpt, events: EventsOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write the model to (created).")],
    epochs: Annotated[Optional[int], typer.Option(
        "--epochs", min=1, help="Most passes over the training sequences (default: SHOPLM_RECOMMEND_EPOCHS).")] = None,
    cold: ColdOpt = 0.0, address: AddressOpt = None, workers: TrainWorkersOpt = 2, storage: StorageOpt = None,
) -> None:
    """Train the shoplm recommendation model on Ray Train workers: what `shoplm train recommend` does, spread.

    Every worker trains the same model on its share of each batch and DDP averages the gradients, so the
    batch size and the number of steps are those of `shoplm train recommend`, and --out is the same
    directory (`shoplm serve` and `shoplm eval recommend --model` load either). The files are read and
    the item texts encoded once, here. Knobs: the SHOPLM_RECOMMEND_* settings.

    [bold]Example:[/bold] shoplm jobs train recommend --items var/data/scientific/items.csv --events var/data/scientific/events.csv --out var/models/scientific --workers 4 --address auto
    """
    from shoplm.jobs.train import train_recommend_job

    _ray_available()
    settings = ctx.obj.model_copy(update={"recommend_epochs": epochs}) if epochs else ctx.obj
    started = time.perf_counter()
    summary = train_recommend_job(settings, items, events, out_dir, workers, address, cold, storage)
    out.print(f"trained on {workers} {'GPU' if summary['gpu'] else 'CPU'} worker(s) in "
              f"{time.perf_counter() - started:.0f} s ({summary['epochs']} epochs); best epoch "
              f"{summary['best_epoch']} with validation NDCG@10 {summary['valid_ndcg@10'] or 0:.4f}; saved to {out_dir}")


def jobs_train_search(
    ctx: typer.Context,
    items: SearchItemsOpt,
    out_dir: ModelOutOpt,
    judgments: JudgmentsOpt = None,
    events: SearchEventsOpt = None,
    model: Annotated[Optional[Path], typer.Option(help="Base model directory (default: settings / bundled MiniLM); "
                                                  "every worker must be able to read it.")] = None,
    epochs: EpochsOpt = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Pairs per batch, over all workers (default: settings).")] = None,
    lr: LrOpt = None,
    max_minutes: MaxMinutesOpt = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of batching and initialisation (default: "
                                                "settings.search_split_seed).")] = None,
    address: AddressOpt = None, workers: TrainWorkersOpt = 2, storage: StorageOpt = None,
) -> None:
    """Fine-tune the search encoder on Ray Train workers: what `shoplm train search` does, spread.

    Each worker encodes its share of every batch and gathers the others' vectors, so the in-batch
    softmax still runs over the whole batch (all of its negatives), with the same batches and steps as
    `shoplm train search`; rank 0 scores dev and writes --out, a model directory --model accepts.

    [bold]Example:[/bold] shoplm jobs train search --items data/hd/items.csv --judgments data/hd/judgments.csv --out var/models/hd --workers 4 --address auto
    """
    from shoplm.jobs.train import train_search_job
    from shoplm.search.train import search_train_config

    if not (judgments or events):
        raise typer.BadParameter("give --judgments and/or --events: the training pairs come from them")
    _ray_available()
    settings = ctx.obj
    cfg = search_train_config(settings, batch_size=batch_size, epochs=epochs, lr=lr, max_minutes=max_minutes,
                              seed=seed)
    started = time.perf_counter()
    summary = train_search_job(settings, items, judgments, events, out_dir, cfg, model, workers, address, storage)
    out.print(f"fine-tuned on {workers} {'GPU' if summary['gpu'] else 'CPU'} worker(s) in "
              f"{time.perf_counter() - started:.0f} s: {summary['steps']} steps, best step {summary['best_step']}, "
              f"dev NDCG@10 (training pool) {summary['best_dev_ndcg@10']:.4f}; saved to {out_dir}")


def retrain(
    ctx: typer.Context,
    store: StoreOpt = None,
    serving: Annotated[Optional[str], typer.Option(
        "--serving", help="The serving model's directory, relative to SHOPLM_MODELS_DIR (default: "
                          "SHOPLM_RECOMMEND_MODEL; neither: the candidate is promoted without a comparison).")] = None,
    name: Annotated[Optional[str], typer.Option(
        "--name", help="The candidate's directory in SHOPLM_MODELS_DIR (default: recommend-<UTC time>).")] = None,
    margin: Annotated[float, typer.Option(
        "--margin", min=0.0, max=0.99, help="Promote when the candidate's hold-out NDCG@10 is at least the "
                                             "serving model's x (1 - margin).")] = 0.01,
    reload: Annotated[Optional[list[str]], typer.Option(
        "--reload", help="A service to switch on promotion (POST /v1/admin/reload with SHOPLM_ADMIN_KEY); "
                         "repeatable. On PostgreSQL one reaches every host.")] = None,
    epochs: Annotated[Optional[int], typer.Option(
        "--epochs", min=1, help="Most passes over the training sequences (default: SHOPLM_RECOMMEND_EPOCHS).")] = None,
    max_minutes: Annotated[Optional[float], typer.Option(
        "--max-minutes", min=0.1, help="Training budget (default: SHOPLM_RECOMMEND_MAX_MINUTES).")] = None,
) -> None:
    """Train a candidate recommendation model on the store's events up to now, compare it with
    the serving model on the same hold-out (each actor's latest event), and promote it only if
    it is not worse than the margin allows: reload the services and point
    SHOPLM_MODELS_DIR/current at it. Every run writes <candidate>/retrain/report.md and
    report.json; the exit code is 0 whether it promoted or kept (see the report), 1 on error.

    [bold]Example:[/bold] SHOPLM_MODELS_DIR=/srv/shoplm/models shoplm jobs retrain --store postgresql://shoplm@db/shop --reload http://10.0.0.5:8000
    """
    from shoplm.cli.common import ProgressBars, set_recommend_threads, settings_of
    from shoplm.jobs.retrain import retrain as run_retrain
    from shoplm.store import open_store

    settings = settings_of(ctx)
    overrides = {k: v for k, v in (("recommend_epochs", epochs), ("recommend_max_minutes", max_minutes)) if v}
    settings = settings.model_copy(update=overrides) if overrides else settings
    set_recommend_threads(settings)
    db = open_store(store or settings.store_url)
    try:
        with ProgressBars(lines=True) as progress:
            result = run_retrain(settings, db, serving, name, margin, reload or [], progress=progress)
    finally:
        db.close()
    for label, metrics in (("candidate", result.candidate), ("serving", result.serving)):
        if metrics is not None:
            out.print(f"{label}: NDCG@10 {metrics['ndcg@10']:.4f}, Recall@10 {metrics['recall@10']:.4f}")
    out.print(f"{'PROMOTED' if result.promoted else 'KEPT the serving model'}: {result.reason}")
    for answer in result.reloaded:
        out.print(f"reload {answer['url']}: {answer['status']} {'' if answer['ok'] else answer['body']}")
    out.print(f"report: {result.report}")
    if any(not answer["ok"] for answer in result.reloaded):
        raise typer.Exit(1)
