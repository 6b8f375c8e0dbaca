"""The one progress protocol of long work: `progress(what, done, total, info)`.

`what` names the step ("encode items", "train shoplm", "ingest events.csv"), `done` and
`total` count its units (`total` is None while unknown, or for a step that is only
announced), and `info` carries live figures such as {"loss": 2.31, "valid_ndcg@10": 0.081}.
Library functions take `progress: Progress = quiet`; the CLI passes one adapter that draws
Rich bars on a terminal and writes plain lines to a log (shoplm/cli/common.py).
"""

from __future__ import annotations

from typing import Mapping, Protocol


class Progress(Protocol):
    def __call__(self, what: str, done: int, total: int | None, info: Mapping[str, float] | None = None) -> None: ...


def quiet(what: str, done: int, total: int | None, info: Mapping[str, float] | None = None) -> None:
    """The default: report nothing."""


class Counter:
    """`advance(n)` for loops that count in chunks: reports the running sum as `done`."""

    def __init__(self, progress: Progress, what: str, total: int | None, done: int = 0):
        self.progress, self.what, self.total, self.done = progress, what, total, done

    def __call__(self, n: int) -> None:
        self.done += n
        self.progress(self.what, self.done, self.total)
