"""CLI commands of the recommend part (`shoplm train recommend`, `shoplm eval recommend`, ...), registered by shoplm/cli.py."""

from __future__ import annotations

import typer
from rich.console import Console


def register(app: typer.Typer, train_app: typer.Typer, eval_app: typer.Typer, out: Console, err: Console) -> None:
    """Adds this part's commands to the root, `train` and `eval` apps."""
