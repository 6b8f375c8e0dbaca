"""The lexical index: BM25 (bm25s) over the same item text the encoder reads.

`LexicalIndex(ids, texts).search(queries, k) -> Hits` with BM25 as in Lucene
(Robertson et al., 1994; idf = ln(1 + (N - df + 0.5) / (df + 0.5)), k1 = 1.5, b = 0.75),
stop words removed and Snowball stemming in the catalog's language (`language`, ISO 639-1,
default "en"), so "brackets" matches "bracket" and "Bohrmaschinen" "Bohrmaschine". Chinese
("zh") is written without spaces and does not inflect: its texts are segmented into words by
jieba's search mode (`lcut_for_search`, which also yields the shorter words inside a long
one), or into overlapping character bigrams where jieba is not installed, and not stemmed.
`corrected` spells a query's unknown terms as the catalog's closest ones ("brakcet" ->
"bracket"), for the re-ranker's candidates.

bm25s builds a static sparse matrix of precomputed scores. So the index is a **base** (that
matrix, over the items of its last build) plus a **tail**: the items added since, scored by
hand with the same formula, idf = ln(1 + (N - df + 0.5) / (df + 0.5)) and
tf / (tf + k1 (1 - b + b dl / avgdl)), with N, df and avgdl counted over base and tail
together. A removed item is masked out of the base. An added or changed item is searchable
at its next query, with no rebuild: at 54,667 Home Depot titles a rebuild took about 3 s,
at a million items about a minute. Once the tail or the removed items pass `COMPACT_MIN`
(or `COMPACT_SHARE` of the base), a background thread rebuilds the base over the current
items. Searches meanwhile go on against the old base and tail, and the changes made during
the rebuild are replayed onto the new one, so the next query scores every item exactly as a
fresh index would. Until then a tail item's scores use the combined statistics while the base keeps
those of its build: close, not identical. `compact()` rebuilds now (`save` does).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import bm25s
import numpy as np

from shoplm.atomic import recover_dir, staged_dir
from shoplm.config import LANGUAGES
from shoplm.errors import IndexMismatch, IndexNotBuilt
from shoplm.search.index import Hits, top_k
from shoplm.search.synonyms import SynonymMap

VERSION = 1
COMPACT_MIN = 2_000  # tail (or removed) items that start a background rebuild of the base ...
COMPACT_SHARE = 0.02  # ... or this share of the base, whichever is larger
SPELLING_MIN = 80.0  # rapidfuzz ratio (0-100) a catalog term needs to stand in for an unknown one
DIGIT = re.compile(r"\d")  # number-bearing terms: sizes, gauges, model numbers (also read by shoplm.search.rerank)


BM25S_STOPWORDS = {"da", "de", "en", "es", "fr", "it", "nl", "no", "pt", "ru", "sv", "tr", "zh"}  # bm25s's lists; others keep every word
TOKEN = r"(?u)\b\w\w+\b"  # bm25s's default: words of 2+ characters
WORD = r"(?u)\b\w+\b"  # segmented Chinese: one character is often a word (钻, drill)


SURFACE_WORD = re.compile(r"\w+")


def surface_words(text: str) -> set[str]:
    """The distinct words of `text` the speller knows: lower-cased, 3+ letters, no digit."""
    return {w for w in SURFACE_WORD.findall(text.lower()) if len(w) >= 3 and not DIGIT.search(w)}


def _stemmer(language: str):
    import Stemmer

    return Stemmer.Stemmer(LANGUAGES[language])


def _segmenter() -> Callable[[str], list[str]]:
    """Chinese text -> words: jieba's search mode, else overlapping character bigrams (announced)."""
    try:
        import jieba
    except ImportError:
        warnings.warn("jieba is not installed: Chinese text is split into character bigrams; pip install jieba")
        return lambda text: [a + b for a, b in zip(text, text[1:]) if not (a.isspace() or b.isspace())]
    jieba.setLogLevel(logging.WARNING)  # it logs its dictionary load at INFO
    return jieba.lcut_for_search


class LexicalIndex:
    """BM25 over item texts; rows follow `ids`."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str], k1: float = 1.5, b: float = 0.75,
                 stem: bool = True, language: str = "en"):
        if len(ids) != len(texts):
            raise IndexMismatch(f"{len(ids)} ids for {len(texts)} texts; pass one text per item id")
        self.k1, self.b, self.stem, self.language = k1, b, stem, language
        self._stemmer = _stemmer(language) if stem and LANGUAGES[language] else None
        self._segment = _segmenter() if LANGUAGES[language] is None else None
        self._stopwords = language if language in BM25S_STOPWORDS else None
        self._pattern = TOKEN if self._segment is None else WORD
        self.ids: list[str] = list(ids)
        self.texts: list[str] = list(texts)
        self._retriever: bm25s.BM25 | None = None
        # the base: the retriever's items (in its rows), which of them are still here, their
        # lengths in tokens; the tail: items added since the build, id -> (tf, length)
        self._base_ids: list[str] = []
        self._base_alive = np.zeros(0, dtype=bool)
        self._base_lengths = np.zeros(0, dtype=np.float64)
        self._tail: dict[str, tuple[Counter, int]] = {}
        self._tail_df: Counter = Counter()
        self._scoring: tuple | None = None  # (version, kept base rows, tail matrix ...), see _scorer()
        self._log: list[tuple[str, str, str | None]] | None = None  # changes made while a rebuild runs
        self._write = threading.RLock()  # add/remove against a rebuild's swap
        self.builds = 0  # how many times the base was built (tests read it)
        self._ids_array: np.ndarray | None = None
        self._terms: list[list[str]] | None = None
        self._df: Counter = Counter()
        self._vocab: tuple[int, list[str]] | None = None  # (version, terms), see corrected()
        self._words: Counter | None = None  # surface word -> items, see surface_words()
        self._word_list: tuple[int, list[str]] | None = None  # (version, the words)
        self.version = 0  # bumped by add/remove, so callers can key caches over positions on it
        self.shifts = 0  # bumped when a removal moved positions; between two bumps items are only appended
        self.synonyms = SynonymMap()  # query-time expansion (shoplm/search/synonyms.py), swapped in whole by the engine

    def __len__(self) -> int:
        return len(self.ids)

    def stem_word(self, word: str) -> str:
        """One lower-cased word as a BM25 term (stop words come back as themselves)."""
        return self._stemmer.stemWord(word) if self._stemmer is not None else word

    def _tokenized(self, texts: Sequence[str], return_ids: bool):
        texts = list(texts) if self._segment is None else [" ".join(self._segment(t)) for t in texts]
        return bm25s.tokenize(texts, token_pattern=self._pattern, stopwords=self._stopwords, stemmer=self._stemmer,
                              return_ids=return_ids, show_progress=False)

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        return self._tokenized(texts, return_ids=False)

    def _built(self) -> bm25s.BM25 | None:
        """The base retriever, built over every current item when there is none (None for an
        empty catalog: bm25s cannot index nothing)."""
        if self._retriever is None and self.ids:
            with self._write:
                if self._retriever is None:
                    self._install(*self._build(list(self.ids), list(self.texts)))
        return self._retriever

    def _build(self, ids: list[str], texts: list[str]) -> tuple[bm25s.BM25, list[str], np.ndarray]:
        tokenized = self._tokenized(texts, return_ids=True)
        retriever = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        retriever.index(tokenized, show_progress=False)
        self.builds += 1
        return retriever, ids, np.asarray([len(doc) for doc in tokenized.ids], dtype=np.float64)

    def _install(self, retriever: bm25s.BM25, ids: list[str], lengths: np.ndarray) -> None:
        """A built base over exactly `ids`; the tail and the masks start empty."""
        self._retriever, self._base_ids, self._base_lengths = retriever, ids, lengths
        self._base_alive = np.ones(len(ids), dtype=bool)
        self._base_row = {item: row for row, item in enumerate(ids)}
        self._tail, self._tail_df, self._scoring = {}, Counter(), None

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Add or replace items: searchable at the next query, without rebuilding the base."""
        with self._write:
            if self._retriever is None:
                current = set(self.ids)
                self._remove([i for i in ids if i in current])
            else:  # a look-up per item: a scan of `ids` is tens of ms per added item at a million
                self._remove([i for i in ids if self._in_base_or_tail(i)])
            self.ids += list(ids)
            self.texts += list(texts)
            added = self.tokenize(texts)
            if self._terms is not None:  # kept in step: re-tokenizing a large catalog per added item costs seconds
                self._terms += added
                self._df.update(t for terms in added for t in set(terms))
            if self._words is not None:
                self._words.update(w for text in texts for w in surface_words(text))
            if self._retriever is not None:
                for item, terms in zip(ids, added):
                    self._tail[item] = (Counter(terms), len(terms))
                    self._tail_df.update(set(terms))
            if self._log is not None:
                self._log += [("add", item, text) for item, text in zip(ids, texts)]
            self._changed()

    def _in_base_or_tail(self, item: str) -> bool:
        row = self._base_row.get(item)
        return item in self._tail or (row is not None and bool(self._base_alive[row]))

    def remove(self, ids: Sequence[str]) -> None:
        with self._write:
            self._remove(ids)
            self._changed()

    def _remove(self, ids: Sequence[str]) -> None:
        gone = set(ids)
        if not gone:
            return
        keep = [i for i, item in enumerate(self.ids) if item not in gone]
        if self._words is not None:
            kept = set(keep)
            words = [w for i, text in enumerate(self.texts) if i not in kept for w in surface_words(text)]
            self._words.subtract(words)
            for word in set(words):  # drop words no item has any more
                if self._words[word] <= 0:
                    del self._words[word]
        self.shifts += len(keep) < len(self.ids)
        self.ids = [self.ids[i] for i in keep]
        self.texts = [self.texts[i] for i in keep]
        if self._terms is not None:
            kept = set(keep)
            self._df.subtract(t for i, terms in enumerate(self._terms) if i not in kept for t in set(terms))
            self._df = +self._df  # drop terms no item has any more
            self._terms = [self._terms[i] for i in keep]
        if self._retriever is not None:
            for item in gone:
                self._remove_from_base(item)
        if self._log is not None:
            self._log += [("remove", item, None) for item in gone]

    def _changed(self) -> None:
        self._ids_array, self._scoring = None, None
        self.version += 1
        if self._retriever is not None:
            stale = max(len(self._tail), int((~self._base_alive).sum()))
            if stale > max(COMPACT_MIN, COMPACT_SHARE * len(self._base_ids)) and self._log is None:
                threading.Thread(target=self.compact, name="bm25-compaction", daemon=True).start()

    def compact(self) -> None:
        """Rebuild the base over the current items, in this thread; searches and changes go on
        meanwhile (the changes are replayed onto the new base when it is swapped in)."""
        with self._write:
            if self._log is not None:
                return  # a rebuild is already running
            self._log = []
            ids, texts = list(self.ids), list(self.texts)
        try:
            built = self._build(ids, texts) if ids else None
        except BaseException:
            with self._write:
                self._log = None
            raise
        with self._write:
            log, self._log = self._log, None
            if built is None:
                return
            self._install(*built)
            for op, item, text in log:  # the changes made while it was built, in order
                if op == "remove":
                    self._remove_from_base(item)
                else:
                    self._remove_from_base(item)
                    terms = self.tokenize([text])[0]
                    self._tail[item] = (Counter(terms), len(terms))
                    self._tail_df.update(set(terms))
            self._changed()

    def _remove_from_base(self, item: str) -> None:
        if item in self._tail:
            self._tail_df.subtract(self._tail.pop(item)[0].keys())
            self._tail_df = +self._tail_df
        elif item in self._base_row:
            self._base_alive[self._base_row[item]] = False

    def _scorer(self) -> tuple:
        """(kept base rows in position order, tail term -> column, tail tf matrix (n_tail, terms)
        as CSC, tail lengths, N, avgdl, base df per tail column): what `token_scores` reads,
        derived once per version."""
        scoring = self._scoring
        if scoring is not None and scoring[0] == self.version:
            return scoring[1]
        from scipy import sparse

        kept = np.flatnonzero(self._base_alive)
        tail = list(self._tail.values())
        columns: dict[str, int] = {}
        rows, cols, tfs = [], [], []
        for row, (tf, _) in enumerate(tail):
            for term, count in tf.items():
                rows.append(row)
                cols.append(columns.setdefault(term, len(columns)))
                tfs.append(count)
        matrix = sparse.csc_matrix((np.asarray(tfs, dtype=np.float64), (rows, cols)), shape=(len(tail), len(columns)))
        lengths = np.asarray([length for _, length in tail], dtype=np.float64)
        n = len(self._base_ids) + len(tail)
        avgdl = (self._base_lengths.sum() + lengths.sum()) / max(1, n)
        indptr, vocab = self._retriever.scores["indptr"], self._retriever.vocab_dict
        base_df = np.asarray([(indptr[vocab[t] + 1] - indptr[vocab[t]]) if t in vocab else 0 for t in columns],
                             dtype=np.float64)
        out = (kept, columns, matrix, lengths, n, avgdl, base_df)
        self._scoring = (self.version, out)
        return out

    def _tail_scores(self, tokens: Sequence[str], scorer: tuple) -> np.ndarray:
        """float64[n_tail]: BM25 (Lucene) of each tail item, N, df and avgdl over base and tail."""
        _, columns, matrix, lengths, n, avgdl, base_df = scorer
        out = np.zeros(len(lengths))
        if not len(lengths):
            return out
        norm = self.k1 * (1 - self.b + self.b * lengths / max(avgdl, 1e-9))  # (n_tail,)
        for token in tokens:  # a repeated term counts again, as in bm25s
            col = columns.get(token)
            if col is None:
                continue
            df = base_df[col] + self._tail_df[token]
            idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = matrix[:, col].toarray().ravel()  # (n_tail,)
            out += idf * tf / (tf + norm)
        return out

    def terms(self, positions: Sequence[int]) -> list[list[str]]:
        """The BM25 tokens of the items at `positions` (stemmed, stop words out), tokenized once."""
        if self._terms is None:
            self._terms = self.tokenize(self.texts)
            self._df = Counter(t for terms in self._terms for t in set(terms))
        return [self._terms[p] for p in positions]

    def surface_words(self) -> tuple[Counter, list[str]]:
        """(word -> how many items' texts have it, the words): the texts' own lower-cased words of
        3+ letters without a digit, what the speller corrects to. Counted once and kept in step
        with add and remove: counting a million titles again after every added item took
        seconds, and the first search after each POST /v1/items waited for it."""
        with self._write:
            if self._words is None:
                self._words = Counter(w for text in self.texts for w in surface_words(text))
            if self._word_list is None or self._word_list[0] != self.version:
                self._word_list = (self.version, list(self._words))
            return self._words, self._word_list[1]

    def document_frequency(self) -> Counter:
        """term -> how many items' texts have it (kept in step with add and remove)."""
        self.terms(())
        return self._df

    def scores(self, query: str) -> np.ndarray:
        """float32[n_items]: the BM25 score of every item for one query (0 = no term matches)."""
        return self.token_scores(self.tokenize([query])[0])

    def token_scores(self, tokens: Sequence[str]) -> np.ndarray:
        """`scores` of a query already tokenized (stemmed, stop words out), its synonyms' terms
        added: the base's rows still here, then the tail's (the order of `ids`)."""
        if not self.ids:  # bm25s cannot index an empty corpus; a new shop starts empty
            return np.zeros(0, dtype=np.float32)
        with self._write:  # one consistent base, tail and positions
            retriever = self._built()
            scorer = self._scorer()
            tokens = list(self.synonyms.expand(tokens))
            known = [t for t in tokens if t in retriever.vocab_dict]
            base = retriever.get_scores(known) if known else np.zeros(len(self._base_ids))
            scores = np.concatenate([base[scorer[0]], self._tail_scores(tokens, scorer)])
        return scores.astype(np.float32, copy=False)

    def query_terms(self, query: str) -> list[str]:
        """The terms BM25 scores for `query`: its tokens and those its synonyms add (highlighting reads them)."""
        return self.synonyms.expand(self.tokenize([query])[0])

    def corrected(self, tokens: Sequence[str]) -> list[str] | None:
        """The query's tokens with each term no item has (3+ letters, no digit: model numbers
        are left alone; a synonym's term is known) replaced by the closest catalog term (rapidfuzz's Indel similarity
        >= `SPELLING_MIN`, the most frequent among the best), or else split into two catalog
        terms ("deckover" -> "deck over"); None when no term changed. About one Home Depot
        query in seven has such a term ("brakcet"), which plain BM25 cannot match at all."""
        from rapidfuzz import fuzz, process

        df = self.document_frequency()
        if self._vocab is None or self._vocab[0] != self.version:
            self._vocab = (self.version, [t for t, n in df.items() if n > 0 and len(t) >= 3])
        out, changed = [], False
        for token in tokens:
            if df.get(token, 0) > 0 or len(token) < 3 or DIGIT.search(token) or token in self.synonyms:
                out.append(token)  # known, short, a number, or a synonym of known terms
                continue
            close = process.extract(token, self._vocab[1], scorer=fuzz.ratio, score_cutoff=SPELLING_MIN, limit=5)
            split = next(([token[:i], token[i:]] for i in range(2, len(token) - 1)
                          if df.get(token[:i], 0) > 0 and df.get(token[i:], 0) > 0), None)
            if close:
                out.append(max(close, key=lambda c: (c[1], df[c[0]]))[0])
            elif split:
                out += split
            else:
                out.append(token)
                continue
            changed = True
        return out if changed else None

    def corrected_scores(self, query: str) -> np.ndarray | None:
        """BM25 scores (float32[n_items]) of the spelling-`corrected` query; None when the
        query needs no correction."""
        tokens = self.corrected(self.tokenize([query])[0])
        return None if tokens is None else self.token_scores(tokens)

    def search(self, queries: Sequence[str], k: int, mask: np.ndarray | None = None, block: int = 256) -> Hits:
        """Top-k items per query by BM25. `mask` (bool[n_items]) keeps only those items, so a
        filter still yields k results whenever k items pass it. Items with score 0 (no query
        term) are not returned; rows are padded with id "" and score -inf."""
        parts = [Hits(np.zeros((0, k), dtype=object), np.zeros((0, k), dtype=np.float32))]
        for start in range(0, len(queries), block):  # a block of 256 x 54k scores is 56 MB
            parts.append(self.top(np.stack([self.scores(q) for q in queries[start:start + block]]), k, mask))
        return Hits(np.concatenate([p.ids for p in parts]), np.concatenate([p.scores for p in parts]))

    def top(self, scores: np.ndarray, k: int, mask: np.ndarray | None = None) -> Hits:
        """`search` from BM25 scores already computed ((b, n_items), from `scores`; not
        modified), for a caller that also needs the scores themselves (the re-ranker)."""
        ids = self._ids_array
        if ids is None or len(ids) < scores.shape[1]:
            ids = self._ids_array = np.asarray(self.ids, dtype=object)
        scores = np.where(scores > 0, scores, -np.inf)  # (b, n_items)
        if mask is not None:  # items added since the caller's mask was made are not in it
            n = scores.shape[1]
            mask = mask[:n] if len(mask) >= n else np.concatenate([mask, np.zeros(n - len(mask), dtype=bool)])
            scores[:, ~mask] = -np.inf
        return top_k(scores, ids, k)

    def save(self, directory: Path) -> None:
        """`directory/{ids.json,texts.json,params.json}` plus bm25s's own .npy arrays; written to a
        temp directory first and swapped in, so a crash leaves the old index or the new one."""
        if self._retriever is not None and (self._tail or not self._base_alive.all()):
            self.compact()  # the saved matrix holds exactly the current items
        with staged_dir(directory) as tmp:
            self._built().save(str(tmp / "bm25s"), show_progress=False)
            (tmp / "ids.json").write_text(json.dumps(self.ids))
            (tmp / "texts.json").write_text(json.dumps(self.texts))
            np.save(tmp / "lengths.npy", self._base_lengths)  # tokens per item: the tail's avgdl after a load
            params = {"version": VERSION, "kind": "bm25s", "k1": self.k1, "b": self.b, "stem": self.stem,
                      "language": self.language, "count": len(self.ids)}
            (tmp / "params.json").write_text(json.dumps(params, indent=2))

    @classmethod
    def load(cls, directory: Path, language: str | None = None) -> "LexicalIndex":
        """The index `save` wrote; `language`, when given, must be the one it was built in
        (queries are tokenized as its items were)."""
        directory = recover_dir(directory)
        if not (directory / "params.json").is_file():
            raise IndexNotBuilt(f"no lexical index in {directory} (params.json missing); run `shoplm index build` first")
        params = json.loads((directory / "params.json").read_text())
        built = params.get("language", "en")  # indexes saved before the setting existed are English
        if language is not None and built != language:
            raise IndexMismatch(f"the lexical index in {directory} was built for language {built!r}, the settings "
                                f"say {language!r}; rebuild it with `shoplm index build` (or set SHOPLM_LANGUAGE={built})")
        index = cls(json.loads((directory / "ids.json").read_text()), json.loads((directory / "texts.json").read_text()),
                    k1=params["k1"], b=params["b"], stem=params["stem"], language=built)
        retriever = bm25s.BM25.load(str(directory / "bm25s"), show_progress=False)
        if (directory / "lengths.npy").is_file():
            lengths = np.load(directory / "lengths.npy")
        else:  # saved before the lengths were kept
            lengths = [len(doc) for doc in index._tokenized(index.texts, return_ids=True).ids]
        index._install(retriever, list(index.ids), np.asarray(lengths, dtype=np.float64))
        return index
