"""Validated ingestion of catalog, behaviour-log and judgment files into a `Store`.

Every record read is either accepted or rejected, and the counts reconcile:
`read == accepted + rejected` and `accepted == stored + duplicates`. A rejected record
is reported with file, row, field, value and what was expected; good records are still
written, in batches of one transaction each. With `strict=True` all files are validated
first and nothing is written if any record is bad.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from shoplm.errors import StoreError
from shoplm.progress import Counter, Progress, quiet
from shoplm.data.readers import check_readable, count_rows, read_records
from shoplm.data.records import FieldProblem, parse_event, parse_item, parse_judgment
from shoplm.store.base import Store, event_row, without_password

UNKNOWN_ITEM = "an item_id in the catalog (unknown item: ingest it with --items first, or pass --allow-unknown-items)"


class Rejection(NamedTuple):
    file: str
    row: int
    problems: tuple[FieldProblem, ...] = ()
    reason: str | None = None  # set when the record could not be read at all

    def __str__(self) -> str:
        detail = f"field '(record)': {self.reason}" if self.reason else "; ".join(str(p) for p in self.problems)
        return f"{self.file}:{self.row}: {detail}"

    def to_dict(self) -> dict[str, Any]:
        problems = [{"field": p.field, "value": _jsonable(p.value), "expected": p.expected} for p in self.problems]
        return {"file": self.file, "row": self.row, "reason": self.reason, "problems": problems}


@dataclass
class FileReport:
    path: str
    kind: str  # items | judgments | events
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    stored: int = 0  # events: newly stored; items/judgments: written (inserted or replaced)
    duplicates: int = 0  # accepted events that were already stored (or repeated in the file)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def reconciles(self) -> bool:
        return self.read == self.accepted + self.rejected == self.stored + self.duplicates + self.rejected

    def to_dict(self) -> dict[str, Any]:
        counts = {k: getattr(self, k) for k in ("read", "accepted", "rejected", "stored", "duplicates")}
        return {"path": self.path, "kind": self.kind, **counts, "reconciles": self.reconciles,
                "rejections": [r.to_dict() for r in self.rejections]}


@dataclass
class IngestReport:
    files: list[FileReport]
    strict: bool
    written: bool  # False when --strict found bad records and wrote nothing
    seconds: float = 0.0

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"strict": self.strict, "written": self.written, "seconds": round(self.seconds, 3),
                "rejected": self.rejected, "files": [f.to_dict() for f in self.files]}


_PARSERS = {"items": parse_item, "judgments": parse_judgment, "events": parse_event}


def ingest(
    store: Store,
    *,
    items: Path | None = None,
    events: Path | None = None,
    judgments: Path | None = None,
    strict: bool = False,
    allow_unknown_items: bool = False,
    batch_size: int = 20_000,
    progress: Progress = quiet,
) -> IngestReport:
    """Ingest the given files in dependency order: items, then judgments and events."""
    started = time.perf_counter()
    plan = [(kind, Path(p)) for kind, p in (("items", items), ("judgments", judgments), ("events", events)) if p]
    for _, path in plan:
        check_readable(path)
    if strict:
        dry = _run(store, plan, write=False, allow_unknown_items=allow_unknown_items, batch_size=batch_size, progress=progress)
        if dry.rejected:
            dry.seconds = time.perf_counter() - started
            return dry
    report = _run(store, plan, write=True, allow_unknown_items=allow_unknown_items, batch_size=batch_size, progress=progress)
    report.strict = strict
    report.seconds = time.perf_counter() - started
    return report


def _run(store: Store, plan: Sequence[tuple[str, Path]], *, write: bool, allow_unknown_items: bool,
         batch_size: int, progress: Progress) -> IngestReport:
    known = None if allow_unknown_items else store.item_ids()
    files = []
    for kind, path in plan:
        advance = Counter(progress, f"ingest {path.name}", count_rows(path)) if progress is not quiet else None
        report = FileReport(str(path), kind)
        accepted = _ingest_file(store, kind, path, report, known=known, write=write,
                                batch_size=batch_size, advance=advance)
        if kind == "items" and known is not None:
            known.update(accepted)
        files.append(report)
    return IngestReport(files=files, strict=not write, written=write)


def _ingest_file(store: Store, kind: str, path: Path, report: FileReport, *, known: set[str] | None,
                 write: bool, batch_size: int, advance: Callable[[int], None] | None) -> set[str]:
    """Validate and (if `write`) store one file; returns the item_ids accepted from an items file."""
    parse = _PARSERS[kind]
    first_row: dict[Any, int] = {}  # items/judgments: key -> row, to reject repeats within a file
    batch: list[Any] = []
    writer = (_ProcessWriter(store, report) if write and kind == "events" and hasattr(store, "add_event_rows")
              else _Writer(store, kind, report, write))
    try:
        for record in read_records(path):
            report.read += 1
            if advance and report.read % 1_000 == 0:
                advance(1_000)
            if record.data is None:
                _reject(report, Rejection(str(path), record.row, reason=record.error))
                continue
            parsed = parse(record.data)
            if isinstance(parsed, list):
                _reject(report, Rejection(str(path), record.row, tuple(parsed)))
                continue
            problem = _check_references(kind, parsed, known, first_row, record.row)
            if problem:
                _reject(report, Rejection(str(path), record.row, (problem,)))
                continue
            report.accepted += 1
            batch.append(parsed)
            if len(batch) >= batch_size:
                writer.submit(batch)
                batch = []
        writer.submit(batch)
    finally:
        writer.close()
    if advance:
        advance(report.read % 1_000)
    return set(first_row) if kind == "items" else set()


# kind -> (the key that must be unique within a file, the field a repeat is reported on)
_UNIQUE_KEYS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "items": (lambda r: r.item_id, "item_id"),
    "judgments": (lambda r: (r.query, r.item_id), "query"),
}


def _check_references(kind: str, record: Any, known: set[str] | None, first_row: dict[Any, int],
                      row: int) -> FieldProblem | None:
    """A repeat of a unique key within the file, or a reference to an unknown item."""
    if kind in _UNIQUE_KEYS:
        key_of, field_name = _UNIQUE_KEYS[kind]
        key = key_of(record)
        if key in first_row:
            return FieldProblem(field_name, getattr(record, field_name),
                                f"a unique {'item_id' if kind == 'items' else '(query, item_id)'} "
                                f"(duplicate of row {first_row[key]})")
        first_row[key] = row
    if kind != "items" and known is not None and record.item_id is not None and record.item_id not in known:
        return FieldProblem("item_id", record.item_id, UNKNOWN_ITEM)
    return None


class _Writer:
    """Writes batches on one background thread, in order, while the caller reads and validates
    the next one. At most `depth` batches are in flight, so memory stays bounded; each batch
    is still one transaction, so a crash loses at most the batches not yet committed. The
    subclass `_ProcessWriter` writes in a child process instead."""

    depth = 2

    def __init__(self, store: Store, kind: str, report: FileReport, write: bool):
        from concurrent.futures import ThreadPoolExecutor

        self.store, self.kind, self.report, self.write = store, kind, report, write
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoplm-ingest")
        self.pending: list = []  # (future, batch size), oldest first

    def submit(self, batch: list[Any]) -> None:
        if not batch:
            return
        while len(self.pending) >= self.depth:
            self._collect()
        self.pending.append((self._send(batch), len(batch)))

    def _send(self, batch: list[Any]) -> Any:
        """Start writing `batch`; returns what `_stored` waits on."""
        return self.pool.submit(self._store, batch)

    def _stored(self, handle: Any) -> int:
        """Wait for one batch's write; returns how many records were new."""
        return handle.result()  # re-raises a store error here, in the caller's thread

    def _shutdown(self) -> None:
        self.pool.shutdown(wait=True)

    def _store(self, batch: list[Any]) -> int:
        if not self.write:
            return len(batch)
        if self.kind == "items":
            return self.store.upsert_items(batch)
        if self.kind == "judgments":
            return self.store.upsert_judgments(batch)
        return self.store.add_events(batch)

    def _collect(self) -> None:
        handle, size = self.pending.pop(0)
        new = self._stored(handle)
        self.report.stored += new
        self.report.duplicates += size - new

    def close(self) -> None:
        try:
            while self.pending:
                self._collect()
        finally:
            self._shutdown()


class _ProcessWriter(_Writer):
    """`_Writer` for events into an SQL store, in a child process with a store of its own.
    A thread is not enough there: sqlite3 releases the GIL around every row's step, and
    taking it back from the parsing thread stalled the writer for most of each switch
    interval, so parsing and writing ran one after the other (file -> SQLite, 300k events:
    about 28k/s with a thread; see bench/RESULTS.md for the process). Rows travel as plain
    tuples (pickled several times faster than Events), and a child that sees its parent
    gone (EOF) exits."""

    def __init__(self, store: Any, report: FileReport):
        import multiprocessing

        # fork: the child needs nothing from disk (spawn would re-import shoplm per ingest)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        self.url, self.report = store.url, report
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_write_event_rows, args=(store.url, child, self.conn), daemon=True,
                                       name="shoplm-ingest-writer")
        self.process.start()
        child.close()
        self.pending = []  # (None, batch size), oldest first: the pipe keeps the order

    def _send(self, batch: list[Any]) -> None:
        self.conn.send([(e.key, *event_row(e)) for e in batch])

    def _stored(self, handle: None) -> int:
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise StoreError(f"the ingest writer process for {without_password(self.url)} exited "
                             f"(code {self.process.exitcode}); the batches it committed stay stored") from None
        if status == "error":
            raise StoreError(value)
        return value

    def _shutdown(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.terminate()
        self.conn.close()


def _write_event_rows(url: str, conn: Any, parent_end: Any) -> None:
    """The writer process: store every batch it receives, answer ("ok", stored) or ("error", message).
    A thread receives (and unpickles) the next batch while this one is written, so the store
    waits for no transfer (PostgreSQL: the server inserts one batch while the next arrives)."""
    import queue
    import threading

    from shoplm.store import open_store

    # A forked child holds a copy of the parent's end of the pipe too: closed here, so that the
    # parent's death (even by SIGKILL) leaves no writer and recv() below sees EOF and returns.
    parent_end.close()

    batches: queue.Queue = queue.Queue(maxsize=1)  # at most one batch waits here: memory stays bounded

    def receive() -> None:
        while True:
            try:
                rows = conn.recv()
            except (EOFError, OSError):  # the parent is gone
                rows = None
            batches.put(rows)
            if rows is None:
                return

    store = None
    try:
        store = open_store(url)
        threading.Thread(target=receive, name="shoplm-ingest-receiver", daemon=True).start()
        while (rows := batches.get()) is not None:
            try:
                conn.send(("ok", store.add_event_rows(rows)))
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
                conn.send(("error", f"writing events to {without_password(url)}: {exc.__class__.__name__}: {exc}"))
                return
    except Exception as exc:  # noqa: BLE001 - opening the store failed
        conn.send(("error", f"opening {without_password(url)} for writing: {exc.__class__.__name__}: {exc}"))
    finally:
        if store is not None:
            store.close()


def _reject(report: FileReport, rejection: Rejection) -> None:
    report.rejected += 1
    report.rejections.append(rejection)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    return str(value)
