"""Offline evaluation of query suggestions: does the shopper's query show up while they type it?

    evaluate_typing(past=[("cordless drill", 3.0)], future=["cordless drill kit"], items=catalog)
    # -> {"queries@3": 1.0, "shoplm@3": 1.0, "baseline@3": 0.0, "baseline_word@3": 1.0, ..., "suggest_p99_us": ...}
    # when "cordless drill kit" is a title phrase of the catalog; the past "cordless drill" completes its first word

For each future query (normalised) and prefix length L, among the queries longer than L:
- `shoplm@L`: the share whose full text is among the top k suggestions after typing L characters;
- `shoplm_word@L`: the share where a top-k suggestion gets the query's words right up to and
  including the word being typed (it completes that word, so accepting it saves typing);
- `baseline@L`, `baseline_word@L`: the same for plain prefix match over the past queries, ranked
  by weight (`BASELINE`: no catalog, no sub-phrases, no later-word matches);
- `shoplm_reachable`, `baseline_reachable`: the share of all future queries that are among the
  suggestions at all, the ceiling of `shoplm@L` for any prefix length (past queries of Home
  Depot's judged set never repeat across the split, so there the baseline's is about 0).

`evaluate_suggest` runs it on judged queries: the train/dev split `shoplm eval search` uses
(settings.search_dev_fraction, settings.search_split_seed) gives the past (train) and the
future (dev) queries. With `validation=True`, the train queries alone are split again
(VALIDATION_FRACTION, seed search_split_seed + 1), so that choices can be measured without
ever looking at the dev queries.

Home Depot (`shoplm data convert homedepot $SHOPLM_DATA_DIR/homedepot var/hd`, then `shoplm eval
suggest --items var/hd/items.csv --judgments var/hd/judgments.csv`), top 5, 7,549 past and 1,862
dev queries: after 3 / 5 / 8 characters shoplm shows the whole query for 0.016 / 0.054 / 0.086 of
them and the baseline for 0.0005; shoplm completes the word being typed for 0.672 / 0.652 / 0.422,
the baseline for 0.579 / 0.481 / 0.198. Only 0.138 of the dev queries are suggestion texts at all:
the judged queries are distinct, so a dev query is almost never a past one (1 is, once
normalised), and most of the others are no title phrase of up to 3 words (longer queries,
typos, plurals, word orders no title has). A train query's weight is its number of judged
items with relevance > 0 (the stand-in for clicks); the 25 with none are left out.
"""

from __future__ import annotations

import time
from typing import Iterable, Sequence

import numpy as np

from shoplm.config import Settings
from shoplm.data.records import Item, Judgment
from shoplm.search.data import qrels_by_query, split_queries
from shoplm.search.suggest import SuggestConfig, Suggester, normalise

BASELINE = SuggestConfig(query_weight=1.0, subphrase_weight=0.0, catalog=False, word_starts=False)
VALIDATION_FRACTION = 0.2  # of the train queries, when `validation=True`


def completes_word(query: str, typed_text: str, suggestion: str) -> bool:
    """Whether `suggestion` has the words of `query` up to and including the one being typed
    (the next one when `typed_text` ends on a space): "cordless dr" + "cordless drill bit"
    completes "cordless drill kit"; "cordless driver" does not."""
    words = len(typed_text.split()) + (1 if typed_text.endswith(" ") else 0)
    return suggestion.split()[:words] == query.split()[:words]


def evaluate_typing(past: Iterable[tuple[str, float]], future: Iterable[str], items: Sequence[Item],
                    prefix_lengths: Sequence[int] = (3, 5, 8), k: int = 5,
                    config: SuggestConfig = SuggestConfig()) -> dict[str, float]:
    """Every share of the module docstring, per prefix length, in one pass; plus `queries@L`
    (how many future queries are longer than L), the shoplm Suggester's `build_seconds` and the
    median and 99th percentile of its `suggest` calls in microseconds (`suggest_p50_us`, `suggest_p99_us`)."""
    past = list(past)
    started = time.perf_counter()
    systems = {"shoplm": Suggester.build(past, items, config)}
    out = {"build_seconds": time.perf_counter() - started, "suggestions": float(len(systems["shoplm"]))}
    systems["baseline"] = Suggester.build(past, [], BASELINE)
    queries = [q for q in (normalise(q) for q in future) if q]
    for name, suggester in systems.items():
        out[f"{name}_reachable"] = sum(q in suggester for q in queries) / max(len(queries), 1)
    seconds = []
    for length in prefix_lengths:
        longer = [q for q in queries if len(q) > length]
        out[f"queries@{length}"] = float(len(longer))
        for name, suggester in systems.items():
            exact = word = 0
            for query in longer:
                prefix = query[:length]
                tick = time.perf_counter()
                texts = [s.text for s in suggester.suggest(prefix, k)]
                if name == "shoplm":
                    seconds.append(time.perf_counter() - tick)
                exact += query in texts
                word += any(completes_word(query, prefix, text) for text in texts)
            out[f"{name}@{length}"] = exact / max(len(longer), 1)
            out[f"{name}_word@{length}"] = word / max(len(longer), 1)
    if seconds:
        out["suggest_p50_us"], out["suggest_p99_us"] = (float(v) * 1e6 for v in np.percentile(seconds, [50, 99]))
    return out


def judged_past_and_future(judgments: Iterable[Judgment], settings: Settings,
                           validation: bool = False) -> tuple[list[tuple[str, float]], list[str]]:
    """(past queries weighted by their number of judged items with relevance > 0 -- the stand-in
    for "led to a click"; those with none are left out --, future queries), from the split above."""
    qrels = qrels_by_query(judgments)
    split = split_queries(qrels, settings.search_dev_fraction, settings.search_split_seed)
    train, future = split.train, split.dev
    if validation:
        train, future = split_queries(train, VALIDATION_FRACTION, settings.search_split_seed + 1)
    past = [(q, float(sum(r > 0 for r in qrels[q].values()))) for q in train]
    return [(q, w) for q, w in past if w > 0], future


def evaluate_suggest(items: Sequence[Item], judgments: Iterable[Judgment], settings: Settings,
                     config: SuggestConfig = SuggestConfig(), validation: bool = False, k: int = 5,
                     prefix_lengths: Sequence[int] = (3, 5, 8)) -> dict:
    """The result document of `shoplm eval suggest`: {split, n_past, n_future, k, metrics}."""
    past, future = judged_past_and_future(judgments, settings, validation)
    metrics = evaluate_typing(past, future, items, prefix_lengths, k, config)
    return {"split": "validation (part of train)" if validation else "dev", "n_past": len(past),
            "n_future": len(future), "k": k, "prefix_lengths": list(prefix_lengths), "metrics": metrics}
