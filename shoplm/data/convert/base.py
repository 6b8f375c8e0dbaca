"""What every converter shares: the report it returns and the check on its source files."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from shoplm.errors import SourceFileMissing


class ConvertReport(NamedTuple):
    """What a converter wrote: `files={"items": out/"items.csv", ...}` and counts such as
    `{"items": 4385, "events": 59427, "users": 8442}`."""

    files: dict[str, Path]
    counts: dict[str, int]


def require_file(path: Path, what: str) -> Path:
    """`path` if it is a file; else a `SourceFileMissing` naming it, so a wrong SRC fails
    before anything is written."""
    if not path.is_file():
        raise SourceFileMissing(
            f"{path}: no such file, expected {what}; check SRC points at the data set's directory"
        )
    return path
