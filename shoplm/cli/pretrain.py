"""`shoplm pretrain`: adapt the encoder to a catalog's own text, no judgments and no events.

Parse -> `shoplm.lm.pretrain.pretrain` -> print."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from shoplm.cli.common import ItemsOpt, ModelOutOpt, ProgressBars, err, out, set_search_threads, settings_of


def pretrain(
    ctx: typer.Context,
    items: ItemsOpt,
    out_dir: ModelOutOpt,
    minutes: Annotated[Optional[float], typer.Option(
        "--minutes", min=0.1, help="Wall-clock cap in minutes (default 15); the learning rate's decay follows "
                                   "the clock when it comes before the last step.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Optimizer steps (default 300).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", min=2, help="Pairs per step; each is told apart from the other B - 1 (default 64).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (default 5e-05).")] = None,
    model: Annotated[Optional[Path], typer.Option(
        help="Model directory to start from (default: settings.encoder_model, else the bundled MiniLM).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the pairs, batches and initialisation.")] = 13,
) -> None:
    """Adapt the encoder to the catalog's own text, without labels (contrastive pairs from each item's fields).

    Each item gives a pseudo-query: some of its title words, its category and brand, or a sentence of
    its description; the model learns to find the item's text for it among the other items of a batch
    (MultipleNegativesRankingLoss). Writes a sentence-transformers directory: SHOPLM_ENCODER_MODEL=DIR
    then makes search, `shoplm train search` and the recommendation model's text vectors start from it.

    [bold]Example:[/bold] shoplm pretrain --items var/hd/items.csv --out var/models/hd-pretrain --minutes 15
    """
    from shoplm.data.readers import read_items
    from shoplm.data.text import item_texts
    from shoplm.lm.pretrain import ItemText, PretrainConfig, pretrain as run_pretrain

    settings = settings_of(ctx)
    catalog = read_items(items)  # a missing or malformed file stops here, before torch loads
    texts = [ItemText(text, item.title, item.category, item.brand, item.description)
             for item, text in zip(catalog, item_texts(catalog, settings.item_text_template))]
    cfg = PretrainConfig(device=settings.device, bf16=settings.encoder_bf16, seed=seed)
    cfg = replace(cfg, **{name: value for name, value in {"steps": steps, "batch_size": batch_size, "lr": lr,
                                                          "max_minutes": minutes}.items() if value is not None})
    set_search_threads(settings)
    err.print(f"{len(catalog):,} items; plan: {cfg.steps} steps of {cfg.batch_size} pairs, at most "
              f"{cfg.max_minutes:g} minutes", highlight=False)
    started = time.monotonic()
    with ProgressBars(lines=True) as progress:
        result = run_pretrain(texts, out_dir, cfg, model or settings.encoder_model, progress)
    if result.cut_short:
        err.print(f"[yellow]warning:[/yellow] the {cfg.max_minutes:g}-minute cap stopped training after "
                  f"{result.steps} of {result.planned_steps} steps; give more --minutes or fewer --steps",
                  highlight=False, soft_wrap=True)
    out.print(f"wrote {out_dir} in {time.monotonic() - started:.0f} s: {result.steps}/{result.planned_steps} steps, "
              f"{result.items:,} items, loss {result.loss_first:.4f} -> {result.loss_last:.4f}; use it with "
              f"SHOPLM_ENCODER_MODEL={out_dir}", highlight=False, soft_wrap=True)
