"""What every command shares: the Typer apps, the consoles, the options used by several
commands, the settings, the one progress display and the torch thread choice."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Mapping, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shoplm.config import Settings

app = typer.Typer(
    help="shoplm: search and recommendations for online shops, built around a language model.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Convert public data sets to the shoplm format and inspect a store.", no_args_is_help=True)
train_app = typer.Typer(help="Train models: search fine-tuning and the recommendation model.", no_args_is_help=True)
report_app = typer.Typer(help="Reports from the store (Markdown, PNG, JSON).", no_args_is_help=True)
eval_app = typer.Typer(help="Offline evaluation with reports (JSON, Markdown, PNG).", no_args_is_help=True)
index_app = typer.Typer(help="Build the search indexes (vector + BM25) from a store.", no_args_is_help=True)
jobs_app = typer.Typer(help="Batch jobs on Ray (local or a cluster): embeddings, precomputed recommendations, "
                            "distributed training.", no_args_is_help=True)
rules_app = typer.Typer(help="Merchandising rules (pin, boost, bury, hide) in a store.", no_args_is_help=True)
jobs_train_app = typer.Typer(help="Data-parallel training on Ray Train (DDP over CPU or GPU workers) of the models "
                                  "`shoplm train` trains in-process, with the same output.", no_args_is_help=True)

out = Console()
err = Console(stderr=True)

StoreOpt = Annotated[
    Optional[str],
    typer.Option("--store", help="Store URL: sqlite:///path.db, postgresql://user@host/db or memory://. "
                                 "Default: settings.store_url (env SHOPLM_STORE_URL)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
ItemsOpt = Annotated[Path, typer.Option("--items", help="Catalog file in the shoplm format (.csv, .jsonl, .parquet).")]
EventsOpt = Annotated[Path, typer.Option("--events", help="Behaviour log in the shoplm format (.csv, .jsonl, .parquet).")]
ColdOpt = Annotated[float, typer.Option("--cold-items", min=0.0, max=0.99,
                                        help="Share of items (seeded, SHOPLM_COLD_ITEMS_SEED) that lose all training "
                                             "events, to measure recommendation of new items.")]
ColdUsersOpt = Annotated[float, typer.Option("--cold-users", min=0.0, max=0.5,
                                             help="Share of users (seeded, SHOPLM_COLD_USERS_SEED) held out of "
                                                  "training entirely, and half as many more whose first events tune "
                                                  "the blend of short histories; eval scores the held-out users "
                                                  "after each of their first 0, 1, 2, 3 and 5 events.")]
# Options of `shoplm train search`, shared with `shoplm jobs train search`.
SearchItemsOpt = Annotated[Path, typer.Option("--items", help="Catalog file (.csv, .jsonl or .parquet).")]
ModelOutOpt = Annotated[Path, typer.Option("--out", help="Model directory to write (sentence-transformers format).")]
JudgmentsOpt = Annotated[Optional[Path], typer.Option("--judgments", help="Judged (query, item_id, relevance) file.")]
SearchEventsOpt = Annotated[Optional[Path], typer.Option(
    "--events", help="Behaviour log: search then click/cart/purchase = positive.")]
EpochsOpt = Annotated[Optional[float], typer.Option("--epochs", help="Passes over the training pairs (default: settings).")]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (default: settings).")]
MaxMinutesOpt = Annotated[Optional[float], typer.Option("--max-minutes", help="Stop training after this many minutes.")]


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the root callback built from the environment."""
    return ctx.obj


class ProgressBars:
    """The CLI's one `shoplm.progress.Progress`: a Rich bar per step on a terminal. Off a
    terminal, nothing, or with `lines` (the long training and evaluation commands, whose logs
    should show how far they got) a line per announced or finished step and, for steps with
    live figures, at most one line per `every` seconds."""

    def __init__(self, console: Console = err, lines: bool = False, every: float = 10.0):
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             TextColumn("{task.fields[info]}"), console=console, disable=not console.is_terminal,
                             transient=not lines)
        self.console, self.lines, self.every = console, lines, every
        self.tasks: dict[str, int] = {}
        self.printed: dict[str, float] = {}

    def __enter__(self) -> "ProgressBars":
        self.bars.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.__exit__(*exc)

    def __call__(self, what: str, done: int, total: int | None, info: Mapping[str, float] | None = None) -> None:
        text = "  ".join(f"{key} {value:.4f}" for key, value in (info or {}).items()
                         if isinstance(value, float) and key != "seconds")
        if what not in self.tasks:
            self.tasks[what] = self.bars.add_task(what, total=total, info=text)
        self.bars.update(self.tasks[what], completed=done, total=total, info=text)
        if self.bars.disable and self.lines:
            now = time.monotonic()
            finished = total is None or done >= total
            if (finished and what not in self.printed) or (info and now - self.printed.get(what, 0.0) >= self.every):
                self.printed[what] = now
                count = "" if total is None else f": {done}/{total}"
                self.console.print(f"{what}{count}" + (f"  {text}" if text else ""), highlight=False)


def set_recommend_threads(settings: Settings) -> None:
    """On CPU, torch uses settings.recommend_threads for the recommendation models."""
    from shoplm.device import pick_device

    if pick_device(settings.device) == "cpu":
        import torch

        torch.set_num_threads(settings.recommend_threads)


def set_search_threads(settings: Settings) -> None:
    """Torch threads for the encoder (the cores not busy now, unless set) and what was chosen, on stderr."""
    import torch

    from shoplm.device import pick_device, pick_threads, use_bf16

    threads = pick_threads(settings.torch_threads)
    torch.set_num_threads(threads)
    device = pick_device(settings.device)
    err.print(f"device {device}, {threads} torch thread(s), bf16 autocast "
              f"{'on' if use_bf16(settings.encoder_bf16, device) else 'off (no native bf16)'}")
