"""Several worker processes behind one port: each connection goes to the least busy worker,
and each committed write reaches every worker's engine.

Written by hand because no library does it: uvicorn's and gunicorn's workers all accept on
one shared socket, and each worker's event loop takes every pending connection in one burst.
A load of 8 keep-alive clients therefore split 8/0, 6/2 or 5/3 across two workers, and the
busier one (one core, one GIL) made the tail: /v1/recommend p99 was 17.8 ms at a 4/4 split
and 25.6 to 62.8 ms otherwise (docs/scale.md). Here the parent process alone accepts; it
passes each connection's file descriptor (SCM_RIGHTS) to the ready worker holding the fewest
open connections, and the worker serves it with uvicorn's own HTTP protocol. Workers report
each closed connection back, so the counts stay exact.

The same channels carry the engines' changes (`Engine.peers`, `Engine.apply`): a worker that
commits a write sends the change to the parent, which forwards it to the other workers.
The parent loads no model and does no request work; a worker that dies is started again
(and rebuilds its engine from the store), after a pause that doubles while new workers keep
failing to start.

Messages are datagrams on a SOCK_SEQPACKET socketpair per worker:
  parent -> worker: b"c" + one descriptor (a connection), or b"b" + JSON (a change);
  worker -> parent: b"r" (ready), b"x" (a connection closed), or b"b" + JSON (to forward).
No send ever blocks, on either side: a message that does not fit waits in an `_Outbox` until
the socket is writable, so two processes waiting to send to each other cannot deadlock.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

import uvicorn
from uvicorn.importer import import_from_string

log = logging.getLogger("shoplm.serve")

_CONN, _READY, _CLOSED, _CHANGE = b"c", b"r", b"x", b"b"
_MAX_MESSAGE = 1 << 20
_MAX_FDS = 64
_CHANGE_BYTES = 32_000  # a change is split into messages of at most this much JSON
_MAX_PENDING = 10_000  # messages one worker may have waiting before it is restarted as stuck


def serve_workers(factory: str, *, workers: int, host: str, port: int, log_level: str) -> None:
    """Run `workers` uvicorn processes of the app factory `factory` ("module:function") on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=2048)
    listener.setblocking(False)
    dispatcher = _Dispatcher(listener, factory, workers, log_level)
    try:
        dispatcher.run()
    finally:
        dispatcher.stop()
    if not dispatcher.ever_ready:
        raise SystemExit(3)  # as uvicorn exits when its one process cannot start


def split_change(change: dict[str, Any], max_bytes: int = _CHANGE_BYTES) -> Iterator[bytes]:
    """`change` as JSON messages of at most about `max_bytes` each: its one list or dict of
    ids is cut into parts, so a change of any size fits the channel's datagrams."""
    (key, value), = change.items()
    if not isinstance(value, (list, dict)):
        yield json.dumps(change).encode()
        return
    wrap = type(value)  # list of ids, or dict of id -> gain (built back from its pairs)
    part, size = [], 0
    for entry in value.items() if isinstance(value, dict) else value:
        entry_size = len(json.dumps(entry)) + 2
        if part and size + entry_size > max_bytes:
            yield json.dumps({key: wrap(part)}).encode()
            part, size = [], 0
        part.append(entry)
        size += entry_size
    if part:
        yield json.dumps({key: wrap(part)}).encode()


class _Outbox:
    """Messages for one non-blocking socket, sent in order as far as the socket takes them."""

    def __init__(self, sock: socket.socket):
        self.sock, self.queue = sock, collections.deque()
        self.broken = False  # a send failed for good: what was queued is gone, the owner must resync

    def push(self, message: bytes, fds: list[int] = ()) -> None:
        self.queue.append((message, list(fds)))
        self.flush()

    def flush(self) -> None:
        """Send what the socket takes now; what does not fit stays queued."""
        while self.queue:
            message, fds = self.queue[0]
            try:
                socket.send_fds(self.sock, [message], fds) if fds else self.sock.send(message)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # the other end is gone (its EOF is handled where it is read), or worse
                log.warning("channel send failed: %s; %d messages dropped", exc, len(self.queue))
                self.broken = True
                self.drop()
                return
            self.queue.popleft()
            for fd in fds:  # the receiver has its own copy now
                os.close(fd)

    def drop(self) -> None:
        for _, fds in self.queue:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.queue.clear()


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    channel: socket.socket
    outbox: _Outbox
    open: int = 0  # connections handed over and not yet reported closed
    ready: bool = False
    alive: bool = True  # its channel has not reached EOF


@dataclass
class _Dispatcher:
    listener: socket.socket
    factory: str
    n_workers: int
    log_level: str
    workers: list[_Worker] = field(default_factory=list)
    waiting: list[socket.socket] = field(default_factory=list)  # accepted while no worker was ready
    stopping: bool = False
    failures: int = 0  # workers in a row that exited before they were ready
    ever_ready: bool = False
    accept_paused_until: float = 0.0  # after accept ran out of descriptors
    next_start: float = 0.0

    def run(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle_exit)
        for _ in range(self.n_workers):
            self._start_worker()
        while not self.stopping:
            self._poll(0.5)
            if self.accept_paused_until and time.monotonic() >= self.accept_paused_until:
                self.accept_paused_until = 0.0
                self.selector.register(self.listener, selectors.EVENT_READ, None)
            self._restart_dead()

    def _poll(self, timeout: float) -> None:
        for key, events in self.selector.select(timeout=timeout):
            if key.data is None:
                self._accept()
                continue
            if events & selectors.EVENT_WRITE:
                self._flush(key.data)
            if events & selectors.EVENT_READ:
                self._read(key.data)

    def _back_off(self) -> None:
        self.failures += 1
        self.next_start = time.monotonic() + min(30.0, 0.5 * 2 ** self.failures)

    def _handle_exit(self, signum, frame) -> None:
        self.stopping = True

    def _start_worker(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        process = multiprocessing.get_context("spawn").Process(
            target=_worker_main, args=(theirs, self.factory, self.log_level), name="shoplm-worker")
        process.start()
        theirs.close()
        worker = _Worker(process, ours, _Outbox(ours))
        self.workers.append(worker)
        self.selector.register(ours, selectors.EVENT_READ, worker)

    def _send(self, worker: _Worker, message: bytes, fds: list[int] = ()) -> None:
        worker.outbox.push(message, fds)
        if worker.outbox.broken or (worker.ready and len(worker.outbox.queue) > _MAX_PENDING):
            self._kill(worker, f"{len(worker.outbox.queue)} messages waiting" if not worker.outbox.broken
                       else "its channel failed")
        elif worker.outbox.queue:
            self.selector.modify(worker.channel, selectors.EVENT_READ | selectors.EVENT_WRITE, worker)

    def _flush(self, worker: _Worker) -> None:
        worker.outbox.flush()
        if worker.outbox.broken:
            self._kill(worker, "its channel failed")
        elif not worker.outbox.queue:
            self.selector.modify(worker.channel, selectors.EVENT_READ, worker)

    def _kill(self, worker: _Worker, why: str) -> None:
        """A worker that can no longer be kept in step: restarted, so it rebuilds from the store."""
        log.error("worker %s is out of step (%s); restarting it", worker.process.pid, why)
        worker.ready = False
        worker.outbox.drop()
        with contextlib.suppress(ProcessLookupError):
            worker.process.kill()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # out of descriptors...: stop accepting for a second, not spin
                log.warning("accept failed: %s; accepting again in 1 s", exc)
                self.selector.unregister(self.listener)
                self.accept_paused_until = time.monotonic() + 1.0
                break
            try:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            self.waiting.append(conn)
        self._hand_out()

    def _hand_out(self) -> None:
        if self.stopping:
            return
        ready = [w for w in self.workers if w.ready and w.alive]
        while ready and self.waiting:
            conn = self.waiting.pop(0)
            worker = min(ready, key=lambda w: w.open)
            self._send(worker, _CONN, [conn.detach()])  # the outbox closes our copy once sent
            worker.open += 1

    def _read(self, worker: _Worker) -> None:
        while True:
            try:
                message = worker.channel.recv(_MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message = b""
            if not message:  # the worker exited; _restart_dead replaces it
                worker.alive = False
                self.selector.unregister(worker.channel)
                return
            if message == _CLOSED:
                worker.open = max(0, worker.open - 1)
            elif message == _READY:
                worker.ready, self.failures, self.ever_ready = True, 0, True
                self._hand_out()
            elif message.startswith(_CHANGE):
                # A starting worker reads popularity from the store itself: forwarded gains of
                # events already there would count twice. Catalog changes are idempotent.
                counts = message.startswith(_CHANGE + b'{"popularity"')
                for other in self.workers:
                    if other is not worker and other.alive and (other.ready or not counts):
                        self._send(other, message)

    def _restart_dead(self) -> None:
        for worker in list(self.workers):
            if worker.process.is_alive() or self.stopping:
                continue
            worker.process.join()
            if worker.alive:  # what it sent before dying (changes it committed) still goes out
                self._read(worker)
            if worker.alive:
                self.selector.unregister(worker.channel)
            worker.outbox.drop()
            worker.channel.close()
            self.workers.remove(worker)
            if not worker.ready and not self.ever_ready:  # it cannot start at all (the store, the model...)
                log.error("worker %s could not start (exit code %s); see its log above", worker.process.pid,
                          worker.process.exitcode)
                self.stopping = True
                return
            if not worker.ready:
                self._back_off()
            log.warning("worker %s exited with code %s; starting another", worker.process.pid, worker.process.exitcode)
        while len(self.workers) < self.n_workers and not self.stopping and time.monotonic() >= self.next_start:
            try:
                self._start_worker()
            except OSError as exc:  # out of descriptors or processes: try again later
                self._back_off()
                log.error("could not start a worker: %s; trying again in %.1f s", exc, self.next_start - time.monotonic())
                return

    def stop(self) -> None:
        """SIGTERM every worker and wait for them, reading their channels meanwhile (a worker
        finishing its connections still reports them closed)."""
        self.stopping = True
        if not self.accept_paused_until:
            self.selector.unregister(self.listener)
        self.listener.close()
        for conn in self.waiting:
            conn.close()
        self.waiting.clear()
        for worker in self.workers:
            if worker.process.is_alive():
                os.kill(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while any(w.process.is_alive() for w in self.workers) and time.monotonic() < deadline:
            self._poll(0.1)  # the listener is gone: only the workers' channels
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join()
            worker.outbox.drop()
            worker.channel.close()


def _worker_main(channel: socket.socket, factory: str, log_level: str) -> None:
    # While serving, uvicorn handles SIGINT (Ctrl+C reaches the whole process group) and the
    # parent's SIGTERM; afterwards it re-raises what it caught, which must not end in a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    app = import_from_string(factory)()
    # ws="none": a WebSocket upgrade would swap the connection's protocol for one that never
    # reports its close, and the count of that worker would grow for good. shoplm has no
    # WebSocket route.
    server = _ChannelServer(uvicorn.Config(app, log_level=log_level, ws="none"), channel, app)
    server.run()
    sys.exit(0 if server.started else 3)


class _ChannelServer(uvicorn.Server):
    """A uvicorn server that listens on no socket: connections arrive as descriptors on
    `channel`, and so do the other workers' changes for this worker's engine."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket, app: Any):
        super().__init__(config)
        self.channel = channel
        self.shoplm_app = app
        self.changes = ThreadPoolExecutor(1, thread_name_prefix="shoplm-changes")  # one at a time, in order

    async def startup(self, sockets=None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(3)
        loop = asyncio.get_running_loop()
        channel = self.channel
        channel.setblocking(False)
        outbox = _Outbox(channel)
        writing = False

        def send(message: bytes) -> None:  # in the event loop's thread only
            nonlocal writing
            outbox.push(message)
            if outbox.broken:  # the dispatcher is gone
                self.should_exit = True
            elif outbox.queue and not writing:
                loop.add_writer(channel.fileno(), flush)
                writing = True

        def flush() -> None:
            nonlocal writing
            outbox.flush()
            if not outbox.queue:
                loop.remove_writer(channel.fileno())
                writing = False

        base = self.config.http_protocol_class

        class Counted(base):  # reports each closed connection to the dispatcher
            def connection_lost(self, exc):
                try:
                    super().connection_lost(exc)
                finally:
                    send(_CLOSED)

        def protocol() -> asyncio.Protocol:
            return Counted(config=self.config, server_state=self.server_state, app_state=self.lifespan.state)

        engine = getattr(self.shoplm_app.state, "engine", None)
        if engine is not None:  # called from request threads: the message goes out from the loop
            engine.peers.append(lambda change: [loop.call_soon_threadsafe(send, _CHANGE + part)
                                                for part in split_change(change)])

        def receive() -> None:
            while True:
                try:
                    message, fds, _, _ = socket.recv_fds(channel, _MAX_MESSAGE, _MAX_FDS)
                except (BlockingIOError, InterruptedError):
                    return
                if not message:  # the dispatcher is gone: finish what is open and stop
                    loop.remove_reader(channel.fileno())
                    self.should_exit = True
                    return
                for fd in fds:  # a connection that fails to start is reported closed at once
                    task = loop.create_task(loop.connect_accepted_socket(protocol, socket.socket(fileno=fd)))
                    task.add_done_callback(lambda t: t.cancelled() or t.exception() is None or send(_CLOSED))
                if message.startswith(_CHANGE) and engine is not None:
                    self.changes.submit(self._apply, engine, json.loads(message[1:]))

        loop.add_reader(channel.fileno(), receive)
        self.servers = []
        self.started = True
        send(_READY)

    async def shutdown(self, sockets=None) -> None:
        with contextlib.suppress(OSError, ValueError):  # take no more connections
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        await super().shutdown(sockets)

    @staticmethod
    def _apply(engine, change: dict[str, Any]) -> None:
        try:
            engine.apply(change)
        except Exception:  # noqa: BLE001 - a failed change must not stop the ones after it
            log.exception("could not apply a change from another worker: %s", str(change)[:200])
