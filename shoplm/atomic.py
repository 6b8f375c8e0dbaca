"""Atomic file writes: write to a temp file in the same directory, fsync, rename.

A crash (or SIGKILL) at any moment leaves either the old file or the new one, never a
half-written file; every index, cache and model artifact is written through here."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

import numpy as np


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(handle)` on a temp file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_array(path: Path, array: np.ndarray) -> None:
    """`np.save` (no pickle), atomically."""
    atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False))


def write_text(path: Path, text: str) -> None:
    """UTF-8 text, atomically."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
