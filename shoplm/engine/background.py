"""A value derived from the catalog and the store, rebuilt in the background when stale.

The first read builds it (the caller waits); after that a read never waits: once the
catalog changed or `refresh_s` passed since the last build, whichever comes first, one
reader starts a rebuild on a daemon thread and everyone keeps the old value until the new
one replaces it in a single assignment. The query suggestions and the shop's lists
(trending, best sellers, complements) are kept this way.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Rebuilt(Generic[T]):
    def __init__(self, build: Callable[[], T], version: Callable[[], int], refresh_s: float, name: str):
        self._build, self._version, self.refresh_s, self.name = build, version, refresh_s, name
        self._state: tuple[int, float, T] | None = None  # (catalog version, built at, value)
        self._lock = threading.Lock()

    def get(self) -> T:
        state = self._state
        if state is None:
            with self._lock:
                if self._state is None:
                    self._state = self._built()
            return self._state[2]
        stale = state[0] != self._version() or time.monotonic() - state[1] > self.refresh_s
        if stale and self._lock.acquire(blocking=False):
            def rebuild() -> None:
                try:
                    self._state = self._built()
                finally:
                    self._lock.release()

            threading.Thread(target=rebuild, name=f"shoplm-{self.name}", daemon=True).start()
        return state[2]

    def _built(self) -> tuple[int, float, T]:
        version = self._version()
        value = self._build()
        return version, time.monotonic(), value
