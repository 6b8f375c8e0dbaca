"""Several worker processes behind one port: each connection goes to the least busy worker,
and each committed write reaches every worker's engine.

Written by hand because no library does it: uvicorn's and gunicorn's workers all accept on
one shared socket, and each worker's event loop takes every pending connection in one burst.
A load of 8 keep-alive clients therefore split 8/0, 6/2 or 5/3 across two workers, and the
busier one (one core, one GIL) made the tail: /v1/recommend p99 was 17.8 ms at a 4/4 split
and 25.6 to 62.8 ms otherwise (bench/RESULTS.md). Here the parent process alone accepts; it
passes each connection's file descriptor (SCM_RIGHTS) to the worker holding the fewest open
connections, and the worker serves it with uvicorn's own HTTP protocol. Workers report each
closed connection back, so the counts stay exact.

The same channels carry the engines' changes (`Engine.peers`, `Engine.apply`): a worker that
commits a write sends the change to the parent, which forwards it to the other workers.
The parent loads no model and does no request work; a worker that dies is started again
(and rebuilds its engine from the store).

Messages are datagrams on a SOCK_SEQPACKET socketpair per worker:
  parent -> worker: b"c" + one descriptor (a connection), or b"b" + JSON (a change);
  worker -> parent: b"x" (a connection closed), or b"b" + JSON (a change to forward).
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.importer import import_from_string

log = logging.getLogger("shoplm.serve")

_CONN, _CLOSED, _CHANGE = b"c", b"x", b"b"
_MAX_MESSAGE = 1 << 20
_MAX_FDS = 64
_POPULARITY_CHUNK = 2_000  # item gains per message, so a change stays far below the socket buffer


def serve_workers(factory: str, *, workers: int, host: str, port: int, log_level: str) -> None:
    """Run `workers` uvicorn processes of the app factory `factory` ("module:function") on host:port."""
    listener = socket.create_server((host, port), backlog=2048)
    listener.setblocking(False)
    dispatcher = _Dispatcher(listener, factory, workers, log_level)
    try:
        dispatcher.run()
    finally:
        dispatcher.stop()
        listener.close()


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    channel: socket.socket
    open: int = 0  # connections handed over and not yet reported closed


@dataclass
class _Dispatcher:
    listener: socket.socket
    factory: str
    n_workers: int
    log_level: str
    workers: list[_Worker] = field(default_factory=list)
    stopping: bool = False

    def run(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle_exit)
        for _ in range(self.n_workers):
            self._start_worker()
        while not self.stopping:
            for key, _ in self.selector.select(timeout=0.5):
                if key.data is None:
                    self._accept()
                else:
                    self._read(key.data)
            self._restart_dead()

    def _handle_exit(self, signum, frame) -> None:
        self.stopping = True

    def _start_worker(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = multiprocessing.get_context("spawn").Process(
            target=_worker_main, args=(theirs, self.factory, self.log_level), name="shoplm-worker")
        process.start()
        theirs.close()
        worker = _Worker(process, ours)
        self.workers.append(worker)
        self.selector.register(ours, selectors.EVENT_READ, worker)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            with conn:  # the worker holds its own copy of the descriptor once sent
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                worker = min(self.workers, key=lambda w: w.open)
                try:
                    socket.send_fds(worker.channel, [_CONN], [conn.fileno()])
                    worker.open += 1
                except OSError:  # the worker just died: this client sees its connection closed
                    log.warning("worker %s unreachable; one connection closed", worker.process.pid)

    def _read(self, worker: _Worker) -> None:
        while True:
            try:
                message = worker.channel.recv(_MAX_MESSAGE, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message = b""
            if not message:  # the worker exited; _restart_dead replaces it
                self.selector.unregister(worker.channel)
                return
            if message == _CLOSED:
                worker.open = max(0, worker.open - 1)
            elif message.startswith(_CHANGE):
                for other in self.workers:
                    if other is not worker and other.process.is_alive():
                        try:
                            other.channel.send(message)
                        except OSError:  # died meanwhile; its replacement reads the store afresh
                            pass

    def _restart_dead(self) -> None:
        for worker in list(self.workers):
            if worker.process.is_alive() or self.stopping:
                continue
            log.warning("worker %s exited with code %s; starting another", worker.process.pid, worker.process.exitcode)
            self.workers.remove(worker)
            if worker.channel.fileno() in self.selector.get_map():
                self.selector.unregister(worker.channel)
            worker.channel.close()
            self._start_worker()

    def stop(self) -> None:
        for worker in self.workers:
            if worker.process.is_alive():
                os.kill(worker.process.pid, signal.SIGTERM)
        for worker in self.workers:
            worker.process.join(timeout=30)
            if worker.process.is_alive():
                worker.process.kill()
            worker.channel.close()


def _worker_main(channel: socket.socket, factory: str, log_level: str) -> None:
    # While serving, uvicorn handles SIGINT (Ctrl+C reaches the whole process group) and the
    # parent's SIGTERM; afterwards it re-raises what it caught, which must not end in a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    app = import_from_string(factory)()
    server = _ChannelServer(uvicorn.Config(app, log_level=log_level), channel, app)
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
        channel = self.channel  # blocking for sends; reads below never wait (MSG_DONTWAIT)
        base = self.config.http_protocol_class

        class Counted(base):  # reports each closed connection to the dispatcher
            def connection_lost(self, exc):
                super().connection_lost(exc)
                try:
                    channel.send(_CLOSED)
                except OSError:
                    pass

        def protocol() -> asyncio.Protocol:
            return Counted(config=self.config, server_state=self.server_state, app_state=self.lifespan.state)

        engine = getattr(self.shoplm_app.state, "engine", None)
        if engine is not None:
            engine.peers.append(self._publish)

        def receive() -> None:
            try:
                message, fds, _, _ = socket.recv_fds(channel, _MAX_MESSAGE, _MAX_FDS, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            if not message:  # the dispatcher is gone: finish what is open and stop
                loop.remove_reader(channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                loop.create_task(loop.connect_accepted_socket(protocol, socket.socket(fileno=fd)))
            if message.startswith(_CHANGE) and engine is not None:
                self.changes.submit(self._apply, engine, json.loads(message[1:]))

        loop.add_reader(channel.fileno(), receive)
        self.servers = []
        self.started = True

    def _publish(self, change: dict[str, Any]) -> None:
        gains = change.get("popularity")
        parts = ([{"popularity": dict(list(gains.items())[i:i + _POPULARITY_CHUNK])}
                  for i in range(0, len(gains), _POPULARITY_CHUNK)] if gains else [change])
        for part in parts:
            self.channel.send(_CHANGE + json.dumps(part).encode())

    @staticmethod
    def _apply(engine, change: dict[str, Any]) -> None:
        try:
            engine.apply(change)
        except Exception:  # noqa: BLE001 - a failed change must not stop the ones after it
            log.exception("could not apply a change from another worker: %s", str(change)[:200])
