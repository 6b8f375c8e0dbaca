"""Atomic file writes: write to a temp file in the same directory, fsync, rename.

A crash (or SIGKILL) at any moment leaves either the old file or the new one, never a
half-written file; every index, cache and model artifact is written through here. A
directory of files that belong together (an index, a model) is written whole into a
staging directory and swapped in (`staged_dir`), so a reader never sees new weights
beside old ids."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator

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


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh directory beside `target`; when the block ends without error, fsync
    every file in it and swap it in for `target` (`replace_dir`). An error or a crash
    inside the block leaves `target` as it was.

        with staged_dir(out) as tmp:
            save_file(state, tmp / "model.safetensors")
            write_text(tmp / "params.json", ...)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.new-"))
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(new: Path, target: Path, attempts: int = 20) -> None:
    """Replace directory `target` by the complete directory `new`.

    POSIX cannot rename a directory over a non-empty one, so the old one is first renamed
    aside to `.NAME.old-XXXX`, then `new` renamed in, then the old deleted. A crash between
    the two renames leaves no `target` but a complete `.NAME.old-XXXX`: `recover_dir`,
    which every loader calls, puts it back. Two writers (service replicas sharing a
    directory) may race; the loser retries."""
    new, target = Path(new), Path(target)
    for _ in range(attempts):
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))  # empty: rename may replace it
        try:
            if target.exists():
                os.replace(target, old)
            os.replace(new, target)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise
            _rmdir_quietly(old)
            continue
        _fsync_dir(target.parent)
        shutil.rmtree(old, ignore_errors=True)
        return
    raise OSError(f"could not swap {new} in for {target} after {attempts} attempts: another writer keeps replacing it")


def recover_dir(target: Path) -> Path:
    """If a crash of `replace_dir` left `target` missing, move the newest complete old copy
    back; returns `target`. Harmless when nothing needs recovering."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return target
    olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in olds:
        if old.is_dir() and any(old.iterdir()):
            try:
                os.replace(old, target)
            except OSError:
                continue  # another process recovered it first
            break
    return target


def _rmdir_quietly(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def dir_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on the directory `path` (on the file `path`.lock beside it), held for
    the `with` block, across processes: several processes that build or open one index
    directory (the workers of `shoplm serve --workers N`, a Ray job's workers) take turns,
    so none reads it while another swaps it in. Advisory (flock): only code that takes it waits."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
