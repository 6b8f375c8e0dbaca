"""Query suggestions (autocomplete): whole queries a shopper may mean after a few characters.

    suggester = Suggester.build(clicked_queries(events), items)  # events, items: shoplm records
    suggester.suggest("dr", k=3)  # -> [Suggestion("drill", 4.0), Suggestion("drills", 3.0), Suggestion("drill 18v", 1.0)]
    suggester.suggest("d", k=3, boost={"DeWalt": 2.0})  # texts naming a liked brand or category count double

Candidates come from two sources, their scores added up:
- past queries of the shop, `query_weight` x how often each led to a click (`clicked_queries`),
  and their sub-phrases (n-grams under the title rules below), `subphrase_weight` x clicks;
- the catalog, so that a new shop without queries has suggestions too: brands, category names
  at every level of "A > B > C", and 1-3-word n-grams of titles that neither start nor end on
  a stop word or a bare symbol ("/", "&") and are not pure numbers, each scored by its document
  frequency (how many items have it in their title, brand or category).
With the default `query_weight=2`, a query that led to one click outranks a catalog phrase
that one item has, and ties against a phrase two items have. Sub-phrases of past queries
("kitchen sink" of "stainless kitchen sink") raised, on Home Depot validation queries (see
`suggest_eval`), the share whose word being typed is completed after 3 characters from 0.654
to 0.668 and the share shown whole after 8 from 0.079 to 0.082; their weight is half a query's
so that a shop's frequent full queries stay above their parts. 4-word n-grams gained nothing
there (0.078 after 8 characters) for 1.6 times the texts.

Matching is on normalised text (NFKC, case-folded, whitespace runs as one space): a suggestion
matches when it starts with the typed prefix; then, only if fewer than k do, suggestions with a
later word starting with it ("dri" -> "cordless drill"). A trailing space is kept, since it says
the word is finished: "drill " matches "drill bit" and not "drills". Best score first; equal
scores in alphabetical order.

Lookup: the texts are sorted once, so a prefix is a contiguous range found by `bisect` (the
standard library's binary search over the list of texts, which no numpy string array matches
without fixed-width copies of every text). Every text has a unique rank (by score, then
alphabet), so the top k of a range are its k smallest ranks (`np.argpartition`) and ties need
no second key. Ranges longer than `cache_above` texts (short prefixes: "s", "dr") have their
top `max_k` precomputed at build time, so no lookup scans more than `cache_above` ranks.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from shoplm.data.records import Event, Item
from shoplm.data.text import normalise
from shoplm.errors import ConfigError

STOP_WORDS = frozenset(STOPWORDS_EN)  # the 33 English words the BM25 index drops as well
ENGAGEMENTS = ("click", "view", "add_to_cart", "purchase")
_EDGE_PUNCTUATION = "()[]{}<>,;:!?\"'*#|"  # stripped from both ends of a title word: "(4-pack)" -> "4-pack"
_NUMBER = re.compile(r"[\W\d_]+")  # a word without letters: "12", "1/2", "7-1/4"
_SYMBOL = re.compile(r"[\W_]+")  # a word without letters or digits: "/", "&", "-"
_AFTER_ALL = "\U0010ffff"  # sorts after every text that starts with a prefix: the end of its range


class Suggestion(NamedTuple):
    text: str  # normalised
    score: float  # query_weight * clicks + catalog document frequency, times any boost


@dataclass(frozen=True)
class SuggestConfig:
    """How candidates are made and scored, and the size of the lookup cache."""

    query_weight: float = 2.0  # one click on a past query is worth this many items having a catalog phrase
    subphrase_weight: float = 1.0  # what one click on a past query lends each of its sub-phrases
    max_ngram: int = 3  # longest title n-gram in words; Home Depot queries have 3 words at the median
    min_df: int = 1  # title n-grams fewer items have are dropped (brands and categories are always kept)
    catalog: bool = True  # False: past queries only (the baseline of `evaluate_typing`)
    word_starts: bool = True  # also match the prefix at the start of a later word, below text-start matches
    max_k: int = 50  # depth of the precomputed top lists; also the pool a `boost` re-ranks
    cache_above: int = 1024  # prefixes matching more texts than this are precomputed (1024 ranks: ~10 us)
    sample_items: int = 200_000  # a larger catalog's title phrases are counted over a sample of this many items
    max_phrases: int = 500_000  # catalog texts kept, most frequent first (Home Depot's 54,667 items give 371,777)

    def __post_init__(self) -> None:
        weights_ok = min(self.query_weight, self.subphrase_weight) >= 0
        if not weights_ok or min(self.max_ngram, self.min_df, self.max_k, self.cache_above) < 1:
            raise ConfigError(f"SuggestConfig {self}: expected query_weight, subphrase_weight >= 0 and max_ngram, "
                              "min_df, max_k, cache_above >= 1; the defaults are query_weight=2, "
                              "subphrase_weight=1, max_ngram=3, min_df=1, max_k=50, cache_above=1024")


def typed(prefix: str) -> str:
    """What a prefix matches: `normalise(prefix)`, plus one space when it ends on whitespace after a word."""
    text = normalise(prefix)
    return text + " " if text and prefix[-1:].isspace() else text


def clicked_queries(events: Iterable[Event], window_s: float = 1800.0) -> list[tuple[str, float]]:
    """(normalised query, times it led to a click) for every query that did, sorted by query.

    Events are grouped by session, else by user (as `search.data.pairs_from_events` does). A
    click, view, add_to_cart or purchase up to `window_s` seconds (30 minutes) after a search
    credits the latest search before it, once: a search the shopper refined before engaging did
    not lead there. An engagement that carries its own `query` counts for that query, unless
    it is the query of that recent search (which then counts once, not twice).
    """
    by_actor: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_actor[f"s:{e.session_id}" if e.session_id else f"u:{e.user_id}"].append(e)
    counts: Counter[str] = Counter()
    for actor_events in by_actor.values():
        last, last_time, credited = "", -math.inf, False
        for e in sorted(actor_events, key=lambda e: e.timestamp):  # stable: equal times keep file order
            if e.event_type == "search" and e.query and normalise(e.query):
                last, last_time, credited = normalise(e.query), e.timestamp, False
            elif e.event_type in ENGAGEMENTS:
                within = e.timestamp - last_time <= window_s
                own = normalise(e.query) if e.query else ""
                if own and not (own == last and within):  # names a query this actor did not just search
                    counts[own] += 1
                elif within and not credited:
                    counts[last] += 1
                    credited = True
    return sorted((query, float(n)) for query, n in counts.items())


def title_words(title: str) -> list[str]:
    """Normalised words of a title, edge punctuation stripped: "Drill (2-Pack)" -> ["drill", "2-pack"]."""
    return [w for w in (word.strip(_EDGE_PUNCTUATION) for word in normalise(title).split()) if w]


def title_ngrams(words: Sequence[str], max_n: int) -> set[str]:
    """1..max_n-word n-grams that neither start nor end on a stop word or a bare symbol and hold a
    word with letters: ["drill", "bit", "1/2", "in."] -> "drill", "drill bit", "bit 1/2 in.", ..."""
    edge = [w in STOP_WORDS or _SYMBOL.fullmatch(w) is not None for w in words]
    letters = [_NUMBER.fullmatch(w) is None for w in words]
    out = set()
    for start in range(len(words)):
        if edge[start]:
            continue
        gram, has_letters = words[start], letters[start]
        for end in range(start, min(start + max_n, len(words))):
            if end > start:
                gram, has_letters = f"{gram} {words[end]}", has_letters or letters[end]
            if has_letters and not edge[end]:
                out.add(gram)
    return out


def catalog_phrases(items: Iterable[Item], max_ngram: int = 3, min_df: int = 1, sample_items: int = 200_000,
                    max_phrases: int = 500_000) -> Counter[str]:
    """Normalised phrase -> how many items have it: brands, category levels, title n-grams
    (those with fewer than `min_df` items dropped). Brands and categories are counted over
    every item; in a catalog of more than `sample_items` items the title n-grams are counted
    over a seeded sample of that many and scaled up, and only the `max_phrases` most frequent
    texts are kept (brands and categories always): at a million items every title's phrases
    counted whole held over a gigabyte per worker, for phrases one or two items have."""
    items = items if isinstance(items, Sequence) else list(items)
    df: Counter[str] = Counter()
    named: Counter[str] = Counter()
    sampled = len(items) > sample_items
    for item in items:
        names = {normalise(n) for n in [item.brand or "", *item.category_path]} - {""}
        named.update(names)
        if not sampled:
            df.update(names | title_ngrams(title_words(item.title), max_ngram))
    if sampled:
        picks = np.sort(np.random.default_rng(0).choice(len(items), sample_items, replace=False))
        for i in picks.tolist():
            df.update(title_ngrams(title_words(items[i].title), max_ngram))
        scale = len(items) / sample_items
        df = Counter({text: round(n * scale) for text, n in df.items()})
        for text, n in named.items():  # a brand or category: its exact count, or its titles' if larger
            df[text] = max(df[text], n)
    kept = {text: n for text, n in df.items() if n >= min_df or text in named}
    if len(kept) > max_phrases:
        phrases = sorted((x for x in kept.items() if x[0] not in named), key=lambda x: (-x[1], x[0]))
        kept = {**dict(phrases[:max(0, max_phrases - len(named))]), **{t: kept[t] for t in named}}
    return Counter(kept)


def _later_words(text: str) -> Iterator[str]:
    """"a b c" -> "b c", "c"."""
    space = text.find(" ")
    while space != -1:
        yield text[space + 1:]
        space = text.find(" ", space + 1)


def _smallest(ranks: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k smallest of `ranks` (unique ints), smallest first."""
    if len(ranks) > k:
        positions = np.argpartition(ranks, k - 1)[:k]  # (k,)
        return positions[np.argsort(ranks[positions])]
    return np.argsort(ranks)


def _range(keys: list[str], prefix: str) -> tuple[int, int]:
    lo = bisect_left(keys, prefix)
    return lo, bisect_left(keys, prefix + _AFTER_ALL, lo)


def _long_ranges(keys: list[str], above: int) -> dict[str, tuple[int, int]]:
    """Every prefix of the sorted `keys` that starts more than `above` of them -> its range. Each
    level refines only the long ranges of the one before, which a longer prefix cannot leave."""
    out: dict[str, tuple[int, int]] = {}
    level, length = [(0, len(keys))], 1
    while level:
        refined = []
        for lo, hi in level:
            i = lo
            while i < hi:
                if len(keys[i]) < length:  # the key is the previous level's prefix itself
                    i += 1
                    continue
                prefix = keys[i][:length]
                j = bisect_left(keys, prefix + _AFTER_ALL, i, hi)
                if j - i > above:
                    out[prefix] = (i, j)
                    refined.append((i, j))
                i = j
        level, length = refined, length + 1
    return out


class Suggester:
    """Scored suggestion texts, sorted, with the lookup structures of the module docstring.

    texts: n unique normalised texts in sorted order (a text's id is its position), scores:
    float64[n], rank: int32[n] (0 = best score, ties alphabetical), word_keys/word_ids: every
    text's tail from each later word on, sorted, and the id it came from (int32[m])."""

    def __init__(self, texts: list[str], scores: np.ndarray, config: SuggestConfig = SuggestConfig()):
        n = len(texts)
        self.texts, self.scores, self.config = texts, scores, config
        order = np.lexsort((np.arange(n), -scores))  # (n,) best first; equal scores by position = alphabet
        self.rank = np.empty(n, dtype=np.int32)
        self.rank[order] = np.arange(n, dtype=np.int32)
        tails = sorted((tail, i) for i, text in enumerate(texts) if config.word_starts and " " in text
                       for tail in _later_words(text))
        self.word_keys = [tail for tail, _ in tails]
        self.word_ids = np.fromiter((i for _, i in tails), dtype=np.int32, count=len(tails))  # (m,)
        self.top = {prefix: lo + _smallest(self.rank[lo:hi], config.max_k)
                    for prefix, (lo, hi) in _long_ranges(texts, config.cache_above).items()}
        self.word_top: dict[str, np.ndarray] = {}
        for prefix, (lo, hi) in _long_ranges(self.word_keys, config.cache_above).items():
            first = _range(texts, prefix)
            if first[1] - first[0] < config.max_k:  # else text-start matches alone fill any k <= max_k
                self.word_top[prefix] = self._best_words(prefix, *first, config.max_k, cached=False)

    @classmethod
    def build(cls, queries: Iterable[tuple[str, float]], items: Sequence[Item],
              config: SuggestConfig = SuggestConfig()) -> "Suggester":
        """Past (query, clicks) pairs plus the catalog phrases of `items`: a text gets
        query_weight * its clicks + subphrase_weight * the clicks of the queries it is a
        sub-phrase of + its document frequency. Queries with no click are left out."""
        scores: dict[str, float] = {}
        if config.catalog:
            scores = {text: float(df) for text, df in catalog_phrases(
                items, config.max_ngram, config.min_df, config.sample_items, config.max_phrases).items()}
        for query, weight in queries:
            text = normalise(query)
            if not text or weight <= 0:
                continue
            scores[text] = scores.get(text, 0.0) + config.query_weight * float(weight)
            if config.subphrase_weight:
                for part in title_ngrams(title_words(text), config.max_ngram) - {text}:
                    scores[part] = scores.get(part, 0.0) + config.subphrase_weight * float(weight)
        texts = sorted(scores)
        return cls(texts, np.fromiter((scores[t] for t in texts), dtype=np.float64, count=len(texts)), config)

    def __len__(self) -> int:
        return len(self.texts)

    def __contains__(self, text: str) -> bool:
        """Whether `text`, normalised, is one of the suggestions."""
        text = normalise(text)
        i = bisect_left(self.texts, text)
        return i < len(self.texts) and self.texts[i] == text

    def suggest(self, prefix: str, k: int = 5, boost: Mapping[str, float] | None = None) -> list[Suggestion]:
        """The k best suggestions for what was typed: text-start matches, then later-word matches.

        boost: brand or category name (a path counts by its last level) -> multiplier for the
        suggestions that contain it as whole words, e.g. {"DeWalt": 2.0} for a DeWalt fan. It
        re-orders the best `max_k` candidates of each kind; an empty prefix gives []."""
        text = typed(prefix)
        if not text or k < 1 or not self.texts:
            return []
        depth = max(k, self.config.max_k) if boost else k
        lo, hi = _range(self.texts, text)
        out = self._scored(self._best(text, lo, hi, depth), boost)
        if hi - lo < k and self.config.word_starts:
            out += self._scored(self._best_words(text, lo, hi, depth - (hi - lo)), boost)
        return out[:k]

    def _best(self, text: str, lo: int, hi: int, depth: int) -> np.ndarray:
        """Ids of the `depth` best texts in [lo, hi), best first."""
        if hi - lo > self.config.cache_above and depth <= self.config.max_k:
            return self.top[text][:depth]
        return lo + _smallest(self.rank[lo:hi], depth)

    def _best_words(self, text: str, lo: int, hi: int, depth: int, cached: bool = True) -> np.ndarray:
        """Ids of the `depth` best texts with a later word starting with `text`, leaving out the
        text-start matches [lo, hi); best first."""
        wlo, whi = _range(self.word_keys, text)
        if cached and whi - wlo > self.config.cache_above and depth <= self.config.max_k and text in self.word_top:
            return self.word_top[text][:depth]
        ids = self.word_ids[wlo:whi]
        ids = np.unique(ids[(ids < lo) | (ids >= hi)])  # a text with two matching words once
        return ids[_smallest(self.rank[ids], depth)]

    def _scored(self, ids: np.ndarray, boost: Mapping[str, float] | None) -> list[Suggestion]:
        if not boost:
            return [Suggestion(self.texts[i], float(self.scores[i])) for i in ids.tolist()]
        levels = {normalise(name.split(">")[-1]): float(m) for name, m in boost.items()}
        names = [(f" {level} ", multiplier) for level, multiplier in levels.items() if level]
        scored = []
        for i in ids.tolist():
            score, padded = float(self.scores[i]), f" {self.texts[i]} "
            for name, multiplier in names:
                if name in padded:
                    score *= multiplier
            scored.append((-score, i))
        scored.sort()  # best first, then alphabetical: ids are alphabetical positions
        return [Suggestion(self.texts[i], -negative) for negative, i in scored]
