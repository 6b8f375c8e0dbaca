"""Attribution: every result list carries a `list_id`, and what it showed is logged.

    lists = ListIds(store.secret("list_ids"))
    list_id = lists.new()                       # "665f1c2a9b3e4d7f01a2b3c4": time, random, signature
    lists.valid(list_id)                        # True for ids this store's services issued
    log = ImpressionLog(store, sample_rate=1.0)
    log.record(Impression(list_id, time.time(), "search", ("d1", "d2"), query="drill", session_id="s"))

A click, add-to-cart or purchase that names the `list_id` (and the `position`) of the list it
came from is credited to that list: its surface, query and experiment arm. Ids are signed
with a secret kept in the store (HMAC-SHA256, truncated to 32 bits), so any process serving
the store can tell an id it issued from a made-up one without a lookup — the impression of
a list just served may still be in another process's buffer.

Impressions are written in batches by a background thread: every `flush_s` seconds or
`batch` impressions, whichever comes first, so a search does not wait for a database
commit. A crash loses at most the last `flush_s` seconds of impressions, never an event.
`sample_rate` < 1 logs that share of lists (chosen by their id, so deterministically); the
buffer holds at most `max_buffer` impressions, beyond which new ones are counted in
`dropped` rather than slowing the service down.

Into an SQL store the batches are written by a child process with a store of its own (the
thread only hands them over a pipe and waits, without the GIL): written from the serving
process, building and binding ten rows per list held the GIL for milliseconds once a second
and added 8 ms to a recommendation's p99 at 8 clients (bench/RESULTS.md). The child exits when
the log is closed or its parent dies; one that died is started again on the next flush, and
the batch it did not acknowledge is kept and written then (a list's id is its key, so a batch
written twice is stored once).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from typing import Any, Sequence

from shoplm.store.base import Impression, Store

log = logging.getLogger(__name__)


class ListIds:
    def __init__(self, secret: str):
        self._key = secret.encode()

    def new(self) -> str:
        payload = f"{int(time.time()):08x}{secrets.token_hex(4)}"
        return payload + self._sign(payload)

    def valid(self, list_id: str) -> bool:
        if len(list_id) != 24:
            return False
        return hmac.compare_digest(self._sign(list_id[:16]), list_id[16:])

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()[:8]


class ImpressionLog:
    def __init__(self, store: Store, sample_rate: float = 1.0, flush_s: float = 1.0, batch: int = 500,
                 max_buffer: int = 100_000):
        self.store, self.sample_rate, self.flush_s, self.batch, self.max_buffer = (
            store, sample_rate, flush_s, batch, max_buffer)
        self._buffer: list[Impression] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._writer = _WriterProcess(store.url) if _shared_url(store) else None
        self.recorded = self.written = self.dropped = self.failed = 0

    def sampled(self, list_id: str) -> bool:
        """Whether this list's impression is logged: a fixed share of ids, by their random part."""
        return self.sample_rate >= 1.0 or int(list_id[8:16], 16) / 2**32 < self.sample_rate

    def record(self, impression: Impression) -> None:
        if not self.sampled(impression.list_id):
            return
        with self._lock:
            if len(self._buffer) >= self.max_buffer:
                self.dropped += 1
                return
            self._buffer.append(impression)
            self.recorded += 1
            full = len(self._buffer) >= self.batch
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shoplm-impressions", daemon=True)
                self._thread.start()
        if full:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop and self._thread is threading.current_thread():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write what is buffered now; returns how many were written. A store error keeps the
        batch for the next try (it is logged), so a database restart loses nothing."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        if not batch:
            return 0
        try:
            if self._writer is not None:
                self._writer.write(batch)
            else:
                self.store.add_impressions(batch)
        except Exception:  # noqa: BLE001 - the service keeps answering; the batch is retried
            log.exception("could not write %d impressions; retrying", len(batch))
            with self._lock:
                self._buffer = batch + self._buffer
                self.failed += 1
            return 0
        self.written += len(batch)
        return len(batch)

    def close(self) -> None:
        """Stop the writer and write what is left; a later `record` starts a new writer."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stop = True
            self._wake.set()
            thread.join(timeout=5)
            self._stop = False
        self.flush()
        if self._writer is not None:
            self._writer.close()

    def pending(self) -> Sequence[Impression]:
        with self._lock:
            return list(self._buffer)


def _shared_url(store: Store) -> bool:
    """Whether another process can open `store` by its URL (a database, not memory)."""
    url = getattr(store, "url", None)
    if not isinstance(url, str):
        return False
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    return scheme in ("postgresql", "postgres") or (scheme == "sqlite" and url not in ("sqlite://", "sqlite:///:memory:"))


class _WriterProcess:
    """A child process that writes impression batches into the store at `url`: `write` sends
    one and waits for its answer (a pipe's recv releases the GIL). Started on the first write
    and again after it died. Spawned, not forked: the serving process has threads (uvicorn's,
    torch's), and a fork copies their locks in whatever state they are."""

    def __init__(self, url: str):
        self.url = url
        self.process: Any = None
        self.conn: Any = None
        self._lock = threading.Lock()  # one batch on the pipe at a time (the timer's flush or a route's)

    def write(self, batch: Sequence[Impression]) -> int:
        with self._lock:
            if self.process is None or not self.process.is_alive():
                self._start()
            try:
                self.conn.send([tuple(i) for i in batch])
                status, value = self.conn.recv()
            except (EOFError, OSError) as exc:
                self._stop()
                raise ConnectionError(f"the impression writer process exited (code {self.process.exitcode})") from exc
        if status == "error":
            raise ConnectionError(value)
        return value

    def _start(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_write_impressions, args=(self.url, child), daemon=True,
                                       name="shoplm-impressions-writer")
        self.process.start()
        child.close()

    def _stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.process is not None:
            self.process.join(timeout=5)
            if self.process.is_alive():
                self.process.terminate()

    def close(self) -> None:
        with self._lock:
            if self.process is not None and self.process.is_alive():
                try:
                    self.conn.send(None)
                except OSError:
                    pass
            self._stop()
            self.process = self.conn = None


def _write_impressions(url: str, conn: Any) -> None:
    """The writer process: store each batch received, answer ("ok", new) or ("error", message);
    a store error is answered and the process waits for the retry. Exits on None or EOF."""
    from shoplm.store import open_store
    from shoplm.store.base import without_password

    store = open_store(url)
    try:
        while True:
            try:
                rows = conn.recv()
            except (EOFError, OSError):  # the parent is gone
                return
            if rows is None:
                return
            try:
                conn.send(("ok", store.add_impressions([Impression(*row) for row in rows])))
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which keeps the batch
                conn.send(("error", f"writing impressions to {without_password(url)}: {exc.__class__.__name__}: {exc}"))
    finally:
        store.close()
