"""What search training and evaluation derive from shoplm records (read by `shoplm.data.readers`):
the train/dev split of judged queries, and (query, item) positives.

    split = split_queries(queries, dev_fraction=0.2, seed=13)   # by query, never by row
    pairs = pairs_from_judgments(judgments, min_relevance=1.0)
    pairs = pairs_from_events(events, window_s=1800, weights={"click": 1, "purchase": 5})
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Iterable, Mapping, NamedTuple, Sequence

from shoplm.data.records import Event, Judgment
from shoplm.search.lexical import LexicalIndex

POSITIVE_EVENTS = ("click", "add_to_cart", "purchase")


class Pair(NamedTuple):
    query: str
    item_id: str
    weight: float  # relevance, or the event-type weight


class QuerySplit(NamedTuple):
    train: list[str]
    dev: list[str]


def split_queries(queries: Iterable[str], dev_fraction: float, seed: int) -> QuerySplit:
    """Each distinct query goes to dev when a seeded hash of it falls below `dev_fraction`:
    pure, independent of order and of the other queries, so adding judgments never moves
    an existing query between train and dev. Both lists are sorted."""
    train, dev = [], []
    for query in sorted(set(queries)):
        digest = hashlib.blake2b(f"{seed}\x00{query}".encode("utf-8"), digest_size=8).digest()
        (dev if int.from_bytes(digest, "big") / 2**64 < dev_fraction else train).append(query)
    return QuerySplit(train, dev)


def qrels_by_query(judgments: Iterable[Judgment]) -> dict[str, dict[str, float]]:
    """query -> item_id -> relevance."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for j in judgments:
        out[j.query][j.item_id] = j.relevance
    return dict(out)


def pairs_from_judgments(judgments: Iterable[Judgment], min_relevance: float) -> list[Pair]:
    """Every judged pair with relevance >= `min_relevance`, weighted by its relevance."""
    return [Pair(j.query, j.item_id, j.relevance) for j in judgments if j.relevance >= min_relevance]


def pairs_from_events(events: Sequence[Event], window_s: float, weights: Mapping[str, float]) -> list[Pair]:
    """A search followed, in the same session (else by the same user), by a click, add_to_cart
    or purchase within `window_s` seconds makes (query, item) a positive weighted by the event
    type (`weights`, e.g. purchase 5 > add_to_cart 3 > click 1). A positive event that carries
    its own `query` uses it. Repeated pairs keep their largest weight."""
    by_actor: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_actor[f"s:{e.session_id}" if e.session_id else f"u:{e.user_id}"].append(e)
    best: dict[tuple[str, str], float] = {}
    for actor_events in by_actor.values():
        last_query, last_time = None, float("-inf")
        for e in sorted(actor_events, key=lambda e: e.timestamp):  # stable: ties keep file order
            if e.event_type == "search" and e.query:
                last_query, last_time = e.query, e.timestamp
            elif e.event_type in POSITIVE_EVENTS and e.item_id and weights.get(e.event_type, 0) > 0:
                query = e.query or (last_query if e.timestamp - last_time <= window_s else None)
                if query:
                    key = (query, e.item_id)
                    best[key] = max(best.get(key, 0.0), float(weights[e.event_type]))
    return [Pair(q, item, w) for (q, item), w in best.items()]


class SearchInputs(NamedTuple):
    """What `train_search` reads besides its config, made from the files by `training_inputs`."""

    texts: dict[str, str]  # item_id -> item text
    train_pairs: list[Pair]
    dev_qrels: dict[str, dict[str, float]]  # dev query -> item_id -> relevance
    negatives: dict[str, list[str]]  # query -> hard-negative item ids
    lexical: LexicalIndex  # BM25 over `texts`
    ranker_qrels: dict[str, dict[str, float]]  # held out of fine-tuning: the re-ranker learns on them
