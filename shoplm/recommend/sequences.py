"""Behaviour sequences for recommendation: per-actor item sequences, the leave-last-out
split and the cold-items split. Everything after reading the files is a pure function.

- `read_catalog(items, events)` reads shoplm files (checked once, here at the boundary);
- `build_sequences(events, item_ids, weights)`: per actor (user_id, else the session),
  the items of its events oldest first, ties in input order; events whose type weighs 0
  (`search` by default) carry no item preference and are left out;
- `leave_last_out(seqs)`: last event = test target, second-last = validation target,
  the rest training, as in SASRec (Kang & McAuley, 2018) and the RecBole split of the
  published Amazon tables;
- `cold_items(n_items, fraction, seed)` + `drop_items(train, cold)`: a seeded share of
  items loses every training event, to measure recommendation of new items.
"""

from __future__ import annotations

import hashlib

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping, NamedTuple, Sequence

import numpy as np

from shoplm.errors import RecommendDataError
from shoplm.data.readers import read_events, read_items
from shoplm.data.records import Event, Item


@dataclass
class Sequences:
    """One row per actor: item indices (int64[L]), event weights (float32[L]) and Unix
    times (float64[L]), oldest first."""

    actors: list[str]
    items: list[np.ndarray]
    weights: list[np.ndarray]
    times: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.actors)

    def take(self, rows: Sequence[int]) -> "Sequences":
        """The actors at `rows`, in that order."""
        return Sequences([self.actors[i] for i in rows], [self.items[i] for i in rows],
                         [self.weights[i] for i in rows], [self.times[i] for i in rows])

    def select(self, keep: Sequence[np.ndarray]) -> "Sequences":
        """Per actor, only the events where `keep[i]` (bool[L]) is true."""
        return Sequences(self.actors, [s[k] for s, k in zip(self.items, keep)],
                         [w[k] for w, k in zip(self.weights, keep)], [t[k] for t, k in zip(self.times, keep)])


class Histories(NamedTuple):
    """A batch of histories to score: item indices and event weights per case, oldest first."""

    items: list[np.ndarray]  # int64[L_i] each
    weights: list[np.ndarray]  # float32[L_i] each

    def __len__(self) -> int:
        return len(self.items)

    def slice(self, start: int, stop: int) -> "Histories":
        return Histories(self.items[start:stop], self.weights[start:stop])


class Cases(NamedTuple):
    """Evaluation cases: the actor, its history before the target, and the target item."""

    actors: list[str]
    histories: Histories
    targets: np.ndarray  # int64[n]

    def __len__(self) -> int:
        return len(self.actors)

    def subset(self, mask: np.ndarray) -> "Cases":
        index = np.flatnonzero(mask)
        return Cases([self.actors[i] for i in index],
                     Histories([self.histories.items[i] for i in index], [self.histories.weights[i] for i in index]),
                     self.targets[index])


class Split(NamedTuple):
    train: Sequences  # every event before the validation target
    valid: Cases  # history = train events, target = second-last event
    test: Cases  # history = every event but the last, target = last event


@dataclass
class Catalog:
    """Items in file order (their index is their row) and the events that name them."""

    items: list[Item]
    events: list[Event]

    @property
    def item_ids(self) -> list[str]:
        return [item.item_id for item in self.items]


def read_catalog(items_path: Path, events_path: Path) -> Catalog:
    """Items and events of shoplm files; bad records stop it (`read_valid`), naming file, row and field."""
    items = read_items(items_path)
    events = read_events(events_path)
    known = {item.item_id for item in items}
    for number, event in enumerate(events, start=1):
        if event.item_id is not None and event.item_id not in known:
            raise RecommendDataError(
                f"{events_path}: event {number} names item {event.item_id!r}, which is not in {items_path}; "
                "recommendation needs every item's text: add the item to the catalog or drop its events"
            )
    if not items:
        raise RecommendDataError(f"{items_path}: no items; a catalog with item_id and title columns is needed")
    return Catalog(items, events)


def build_sequences(events: Sequence[Event], item_ids: Sequence[str], weights: Mapping[str, float],
                    by: Literal["user", "session"] = "user") -> Sequences:
    """Per actor, its item events oldest first; equal timestamps keep input order. The actor
    is the user_id, else "session:<id>"; with `by="session"` the session_id, else
    "user:<id>" (one sequence per visit, for logs of short sessions). Event types absent
    from `weights` or weighing 0 are skipped."""
    index = {item_id: i for i, item_id in enumerate(item_ids)}
    rows: dict[str, list[tuple[float, int, int, float]]] = {}
    for order, event in enumerate(events):
        weight = float(weights.get(event.event_type, 0.0))
        if event.item_id is None or weight <= 0:
            continue
        if by == "session":
            actor = event.session_id if event.session_id is not None else f"user:{event.user_id}"
        else:
            actor = event.user_id if event.user_id is not None else f"session:{event.session_id}"
        rows.setdefault(actor, []).append((event.timestamp, order, index[event.item_id], weight))
    actors, items, ws, times = [], [], [], []
    for actor, events_of in rows.items():
        events_of.sort(key=lambda r: (r[0], r[1]))  # by time, then input order
        actors.append(actor)
        times.append(np.array([r[0] for r in events_of], dtype=np.float64))
        items.append(np.array([r[2] for r in events_of], dtype=np.int64))
        ws.append(np.array([r[3] for r in events_of], dtype=np.float32))
    return Sequences(actors, items, ws, times)


def leave_last_out(seqs: Sequences) -> Split:
    """Per actor with n events: test target = event n-1 (history: events 0..n-2), validation
    target = event n-2 (history: 0..n-3), training = events 0..n-3. An actor needs 2 events
    for a test case and 3 for a validation case; one with a single event is training only."""
    train_keep, valid_rows, test_rows = [], [], []
    for i, items in enumerate(seqs.items):
        n = len(items)
        train_keep.append(np.arange(n) < (n - 2 if n >= 3 else (0 if n == 2 else n)))
        if n >= 3:
            valid_rows.append((i, n - 2))
        if n >= 2:
            test_rows.append((i, n - 1))
    return Split(seqs.select(train_keep), _cases(seqs, valid_rows), _cases(seqs, test_rows))


def _cases(seqs: Sequences, rows: list[tuple[int, int]]) -> Cases:
    return Cases(
        [seqs.actors[i] for i, _ in rows],
        Histories([seqs.items[i][:t] for i, t in rows], [seqs.weights[i][:t] for i, t in rows]),
        np.array([seqs.items[i][t] for i, t in rows], dtype=np.int64),
    )


def cold_items(n_items: int, fraction: float, seed: int) -> np.ndarray:
    """bool[n_items]: a seeded `fraction` of all items (rounded), to be treated as new."""
    if not 0.0 <= fraction < 1.0:
        raise RecommendDataError(f"--cold-items {fraction}: expected a fraction in [0, 1), e.g. 0.1")
    chosen = np.random.default_rng(seed).permutation(n_items)[: round(fraction * n_items)]
    mask = np.zeros(n_items, dtype=bool)
    mask[chosen] = True
    return mask


def apply_cold_items(split: Split, cold: np.ndarray) -> Split:
    """Cold items lose every training event, and validation cases whose target is cold are
    dropped (model selection must not see them either). Histories keep them: at serving
    time the shop knows what the user just bought, new or not."""
    train = split.train.select([~cold[items] for items in split.train.items])
    valid = split.valid.subset(~cold[split.valid.targets])
    return Split(train, valid, split.test)


class ColdUsers(NamedTuple):
    """Users held out of training entirely: their events feed no model, no co-occurrence, no
    popularity. `valid` tunes the cold-start blend; `test` is scored. `rest`: every other
    user's events, whole (what a service has stored when the held-out users arrive)."""

    valid: Sequences
    test: Sequences
    rest: Sequences


COLD_USER_KS = (0, 1, 2, 3, 5)  # history lengths the cold-user slice scores


def hold_out_users(seqs: Sequences, fraction: float, seed: int) -> tuple[Sequences, ColdUsers]:
    """(every other actor, the held-out ones): a seeded `fraction` of the actors is the test
    share and another `fraction / 2` the validation share (for blend tuning), drawn from
    one permutation; the rest keep their file order."""
    if not 0.0 <= fraction <= 0.5:
        raise RecommendDataError(f"--cold-users {fraction}: expected a share of users in [0, 0.5], e.g. 0.2")
    order = np.random.default_rng(seed).permutation(len(seqs))
    n_test, n_valid = round(fraction * len(seqs)), round(fraction * len(seqs) / 2)
    test, valid = order[:n_test], order[n_test:n_test + n_valid]
    rest = seqs.take(np.sort(order[n_test + n_valid:]))
    return rest, ColdUsers(seqs.take(np.sort(valid)), seqs.take(np.sort(test)), rest)


def prefix_cases(seqs: Sequences, ks: Sequence[int]) -> Cases:
    """For each k in `ks` and each actor with more than k events: its first k events are the
    history, event k + 1 the target (k = 0: an empty history)."""
    return _cases(seqs, [(i, k) for k in ks for i, items in enumerate(seqs.items) if len(items) > k])


def item_frequency(train: Sequences, n_items: int) -> np.ndarray:
    """int64[n_items]: training events per item."""
    counts = np.zeros(n_items, dtype=np.int64)
    for items in train.items:
        np.add.at(counts, items, 1)
    return counts


def training_fingerprint(item_ids: list[str], split: Split) -> str:
    """Hash of the catalog and the training sequences: a saved model evaluated on other
    data (where its training events could include test targets) is refused."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update("\n".join(item_ids).encode())
    for actor, items in zip(split.train.actors, split.train.items):
        digest.update(actor.encode() + b"\0" + items.tobytes())
    return digest.hexdigest()


RECENCY_DECAY = 0.7  # the item k steps back weighs 0.7**k (Settings.text_recency_decay defaults to this)


def recency_weights(n: int, decay: float = RECENCY_DECAY) -> np.ndarray:
    """float64[n] for a history oldest first: the last item 1, the one before `decay`, ..."""
    return decay ** np.arange(n - 1, -1, -1, dtype=np.float64)
