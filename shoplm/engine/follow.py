"""An engine following the store's change feed, so `shoplm serve` on several machines over
one PostgreSQL store serve one catalog (docs/operations.md, "Several machines").

`Follower` starts shoplm/store/feed.py's `ChangeListener` after the change the engine read
before loading its catalog (`Engine.change_id`) and maps each change to what it invalidates:

| change                         | what the engine does                                     |
|--------------------------------|----------------------------------------------------------|
| `items_upserted/_deleted`      | re-reads those items (`Engine._refresh`): taken, changed or dropped as the store holds them now |
| `rule_*`, `synonym_*`          | re-reads the merchandising rules and synonyms            |
| `experiment_*`                 | re-reads the experiments                                 |
| `model_reloaded`               | loads that model directory (it must be at the same path on every host) |
| `events_erased`                | recomputes popularity from the store                     |

A batch is applied as a whole: every change names what to re-read, never the new value, so
the result is the store's state whatever the order or repetition of the changes; the
listener hands each change over once, in commit order, and catches up from its last id
after a lost connection. The engine's own writes come back through the feed too; re-reading
an item it already holds unchanged costs a comparison (`Engine._refresh`).

Popularity is the one thing that is not a catalog write: events are far too many for the
feed. Each engine adds the events it stores itself at once; the others' events reach it
when it recomputes popularity from the store, every `popularity_refresh_s` (300 s), so a
popular item on another host counts here within that delay. The same thread deletes feed
entries older than `changes_retention_days` (a host away longer reloads everything).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from shoplm.store.base import Change, without_password
from shoplm.store.feed import ChangeListener, follow_changes

log = logging.getLogger(__name__)

_PRUNE_EVERY_S = 3600.0


class Follower:
    def __init__(self, engine: Any, **listener_options):  # an Engine (engine.py imports this module)
        self.engine = engine
        self.applied = 0  # changes applied so far (a test and /healthz read it)
        self._stopping = threading.Event()
        self.listener: ChangeListener | None = follow_changes(
            engine.store, self.apply, after_id=engine.change_id, resync=self.resync, **listener_options)
        self._housekeeping = None
        if self.listener is not None:
            self._housekeeping = threading.Thread(target=self._keep, name="shoplm-feed-housekeeping", daemon=True)
            self._housekeeping.start()
            log.info("following the change feed of %s from change %d", without_password(engine.store.url),
                     engine.change_id)

    @property
    def last_id(self) -> int:
        return self.listener.last_id if self.listener is not None else self.engine.change_id

    def apply(self, changes: list[Change]) -> None:
        """Apply a batch of changes, oldest first (the listener's callback)."""
        engine = self.engine
        items: set[str] = set()
        merchandising = experiments = erased = False
        model: str | None = None
        for change in changes:
            kind = change.kind
            if kind.startswith("items_"):
                items.update(change.payload["item_ids"])
            elif kind.startswith(("rule_", "synonym_")):
                merchandising = True
            elif kind.startswith("experiment_"):
                experiments = True
            elif kind == "model_reloaded":
                model = change.payload["directory"] if change.id not in engine.announced else None
            elif kind == "events_erased":
                erased = True
            else:  # a newer shoplm's change: say so rather than guess what it means
                log.warning("change %d of an unknown kind %r: ignored", change.id, kind)
        if items:
            engine._refresh(sorted(items))
        if merchandising:
            engine.merchandising.reload()
        if experiments:
            engine._experiments = None
        if model is not None:
            engine._load_model(model)
        if erased:
            engine.refresh_popularity()
        self.applied += len(changes)

    def resync(self) -> None:
        """Reload everything the feed would have told: the changes needed were pruned."""
        engine = self.engine
        engine._refresh(sorted({item.item_id for item in engine.store.items()} | engine.items.keys()))
        engine.merchandising.reload()
        engine._experiments = None
        engine.refresh_popularity()

    def _keep(self) -> None:
        settings = self.engine.settings
        pruned = 0.0
        while not self._stopping.wait(settings.popularity_refresh_s):
            try:
                self.engine.refresh_popularity()
                if time.monotonic() - pruned > _PRUNE_EVERY_S:
                    self.engine.store.prune_changes(time.time() - settings.changes_retention_days * 86_400)
                    pruned = time.monotonic()
            except Exception:  # noqa: BLE001 - the store is away: the next round tries again
                log.exception("could not refresh popularity from the store")

    def stop(self) -> None:
        self._stopping.set()
        if self.listener is not None:
            self.listener.stop()
        if self._housekeeping is not None:
            self._housekeeping.join(10)
