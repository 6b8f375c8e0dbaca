"""CLI commands of the recommend part (`shoplm train recommend`, `shoplm eval recommend`, ...), registered by shoplm/cli.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ItemsOpt = Annotated[Path, typer.Option("--items", help="Catalog file in the shoplm format (.csv, .jsonl, .parquet).")]
EventsOpt = Annotated[Path, typer.Option("--events", help="Behaviour log in the shoplm format (.csv, .jsonl, .parquet).")]
ColdOpt = Annotated[float, typer.Option("--cold-items", min=0.0, max=0.99,
                                        help="Share of items (seeded, SHOPLM_COLD_ITEMS_SEED) that lose all training "
                                             "events, to measure recommendation of new items.")]


class StatusBar:
    """A Rich progress bar per step name on a terminal, else one stderr line per finished
    step or training epoch (for logs); `status(what, done, total)`."""

    def __init__(self, progress: Progress, err: Console):
        self.progress = progress
        self.err = err
        self.tasks: dict[str, int] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if what not in self.tasks:
            self.tasks[what] = self.progress.add_task(what, total=total)
        self.progress.update(self.tasks[what], completed=done, total=total)
        if self.progress.disable and (what.startswith("train") or done == total):
            self.err.print(f"{what}: {done}/{total}", highlight=False)


def _set_threads(settings) -> None:
    from shoplm.device import pick_device

    if pick_device(settings.device) == "cpu":
        import torch

        torch.set_num_threads(settings.recommend_threads)


def _progress(err: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, disable=not err.is_terminal)


def register(app: typer.Typer, train_app: typer.Typer, eval_app: typer.Typer, out: Console, err: Console) -> None:
    """Adds this part's commands to the root, `train` and `eval` apps."""

    @train_app.command("recommend")
    def train_recommend(
        ctx: typer.Context,
        items: ItemsOpt,
        events: EventsOpt,
        out_dir: Annotated[Path, typer.Option("--out", help="Directory to write the model to (created).")],
        cold: ColdOpt = 0.0,
    ) -> None:
        """Train the shoplm next-item model (Transformer over language-model item vectors).

        Trains on every event but each actor's last two; the second-last (validation target)
        picks the best epoch (NDCG@10, early stopping); the last (test target) is never used.
        Writes model.safetensors, item_ids.npy, params.json and train_log.json to --out.
        Knobs: SHOPLM_RECOMMEND_* settings (dim, layers, encoder=transformer|gru, epochs, ...).

        [bold]Example:[/bold] shoplm train recommend --items var/data/scientific/items.csv --events var/data/scientific/events.csv --out var/models/scientific
        """
        from shoplm.recommend import train as rt
        from shoplm.recommend.evaluate import prepare

        settings = ctx.obj
        _set_threads(settings)
        started = time.perf_counter()
        with _progress(err) as progress:
            status = StatusBar(progress, err)
            item_ids, split, _, vectors = prepare(settings, items, events, cold, status)
            log = rt.train_and_save(settings, item_ids, split, vectors, cold, out_dir,
                                    lambda epoch, total, row: status("train shoplm", epoch, total),
                                    seconds_before=time.perf_counter() - started)
        best = rt.best_epoch(log)
        out.print(f"trained in {time.perf_counter() - started:.0f} s ({len(log)} epochs); best epoch "
                  f"{best.get('epoch')} with validation NDCG@10 {best.get('valid_ndcg@10', 0):.4f}; saved to {out_dir}")

    @eval_app.command("recommend")
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
    ) -> None:
        """Evaluate every baseline and the shoplm model on a leave-last-out split, in one run.

        Baselines: popularity, item_knn, sasrec, text_zero_shot. Full ranking over all items;
        Recall@10/50, NDCG@10/50, MRR overall and by history length, target frequency and
        (with --cold-items) cold targets.

        [bold]Example:[/bold] shoplm eval recommend --items var/data/scientific/items.csv --events var/data/scientific/events.csv --model var/models/scientific --json var/eval/scientific.json --report var/eval/scientific
        """
        from shoplm.recommend import evaluate as re
        from shoplm.recommend import train as rt

        settings = ctx.obj
        _set_threads(settings)
        started = time.perf_counter()
        with _progress(err) as progress:
            status = StatusBar(progress, err)
            item_ids, split, cold_mask, vectors = re.prepare(settings, items, events, cold, status)
            models = re.baselines(settings, status)
            fitted = frozenset()
            if model_dir is not None:
                model, model_items, params = rt.load_model(model_dir, settings.device)
                re.check_model_fits(params, item_ids, model_items, re.training_fingerprint(item_ids, split),
                                    cold, model_dir)
                shoplm = rt.TrainedUserModel("shoplm", lambda n, d: model.cfg, rt.train_config(settings),
                                             settings.device)
                shoplm.model = model
                fitted = frozenset({"shoplm"})
            else:
                shoplm = rt.TrainedUserModel(
                    "shoplm", lambda n, d: rt.model_config(settings, n, d), rt.train_config(settings),
                    settings.device, progress=lambda epoch, total, row: status("train shoplm", epoch, total))
            models.append(shoplm)
            overall, slices, info = re.evaluate_recommenders(models, split, vectors, cold_mask, exclude_history,
                                                              fitted, status)
        n_events = sum(len(s) for s in split.train.items)
        result = {
            "dataset": {
                "name": Path(items).resolve().parent.name, "items_file": str(items), "events_file": str(events),
                "items": len(item_ids), "actors": len(split.train), "train_events": n_events,
                "test_cases": len(split.test), "valid_cases": len(split.valid),
                "protocol": {"split": "leave-last-out by time", "ranking": "full", "exclude_history": exclude_history,
                             "cold_items": cold, "cold_items_seed": settings.cold_items_seed,
                             "cold_item_count": int(cold_mask.sum())},
                "shoplm_model": str(model_dir) if model_dir else "trained in this run",
                **info, "seconds": {**info["seconds"], "total": round(time.perf_counter() - started, 1)},
            },
            "models": overall,
            "slices": slices,
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))
        if report_dir is not None:
            re.write_recommend_report(report_dir, result)
        _print_table(out, result)


def _print_table(console: Console, result: dict) -> None:
    from shoplm.recommend.evaluate import METRICS

    table = Table(title=f"recommendation on {result['dataset']['name']} "
                        f"({result['dataset']['test_cases']:,} test cases)")
    table.add_column("model")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    for name, metrics in result["models"].items():
        table.add_row(name, *(f"{metrics[m]:.4f}" for m in METRICS))
    console.print(table)
