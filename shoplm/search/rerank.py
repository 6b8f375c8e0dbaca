"""The re-ranker: LambdaMART (LightGBM) over each query's hybrid candidates.

Fusion gives BM25 and the dense model one weight for every query; which one to trust
depends on the query (a model number or a size wants exact terms, a misspelt or vague
query the dense model) and on how an item's title matches it. A learning-to-rank model
(Burges, 2010, "From RankNet to LambdaRank to LambdaMART"; LightGBM's `lambdarank`
objective optimises NDCG directly) scores each candidate from a few such features:

- the BM25 score and the dense cosine, raw, as the gap to the query's best candidate,
  and as ranks among the candidates;
- the share of query terms found in the title, whether one of them is among the title's
  last two terms (Home Depot titles, like most shops', end with the product type), how
  many of the query's number-bearing terms (sizes, gauges, model numbers) the title has;
- the share of the query's idf the title matches, the query's bigrams found in the title,
  where in the title the first match is, the query's rarest term's idf;
- the query's length, its share of terms the catalog has at all (misspellings), the title's length;
- fuzzy matches for misspelt and run-together queries (`fuzzy_features`);
- late interaction (`shoplm.search.late`): the mean and the minimum over the query's tokens of
  their best cosine among the title's token vectors (MaxSim), every candidate (`add_late`);
- the cross-encoder's score (`shoplm.search.cross_encoder`) for the candidates that reciprocal-rank
  fusion of BM25 and the dense model puts in its top `cross_depth`, missing for the rest.

Candidates are the union of the top `depth` of each system, so the re-ranker can bring up
an item that fusion would have left below the cut, and of BM25 over the query with its
unknown terms spelling-corrected against the catalog (`LexicalIndex.corrected`). It learns
on judged queries held out of the encoder's fine-tuning (`shoplm.search.train.fit_reranker`): the
fine-tuned model's scores of its own training queries are inflated. Saved as LightGBM's text model plus `ranker.json`,
never a pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from shoplm.atomic import recover_dir, staged_dir
from shoplm.errors import IndexMismatch, NoTrainingData
from shoplm.lm.encoder import CROSS_DIR, RERANKER_DIR
from shoplm.search.cross_encoder import CrossEncoder, cross_rows
from shoplm.search.index import Hits
from shoplm.search.late import maxsim
from shoplm.search.lexical import DIGIT

VERSION = 4  # 2: fuzzy matching features and spelling-corrected BM25 candidates; 3: the cross-encoder's score; 4: MaxSim
FEATURES = ("bm25", "bm25_gap", "bm25_rank", "dense", "dense_gap", "dense_rank", "term_share", "head_match",
            "numbers_matched", "query_numbers", "query_terms", "known_term_share", "title_terms", "idf_share",
            "bigrams_matched", "first_match", "max_idf", "fuzzy_term_share", "compounds_matched", "partial_ratio",
            "cross", "maxsim_mean", "maxsim_min")
CROSS = FEATURES.index("cross")  # NaN (missing to LightGBM) beyond the cross-encoder's depth, or without one
LATE = FEATURES.index("maxsim_mean")  # and the next: `shoplm.search.late.maxsim`, NaN where no token vectors were given
FUZZY_MIN = 80.0  # rapidfuzz ratio (0-100) at which a title term counts as a (misspelt) query term


def candidate_rows(bm25: np.ndarray, dense: np.ndarray, depth: int, corrected: np.ndarray | None = None) -> np.ndarray:
    """int64 sorted rows: the top `depth` items by BM25 (score > 0), the top `depth` by cosine
    and, when the query was spelling-corrected, the top `depth` by the `corrected` BM25."""
    rows = np.union1d(_top_matches(bm25, depth), np.argpartition(-dense, min(depth, len(dense) - 1))[:depth])
    return rows if corrected is None else np.union1d(rows, _top_matches(corrected, depth))


def _top_matches(bm25: np.ndarray, depth: int) -> np.ndarray:
    top = np.argpartition(-bm25, min(depth, len(bm25) - 1))[:depth]
    return top[bm25[top] > 0]


def features(query_terms: Sequence[str], item_terms: Sequence[Sequence[str]], bm25: np.ndarray, dense: np.ndarray,
             document_frequency: Mapping[str, int], n_items: int) -> np.ndarray:
    """float32 (m, len(FEATURES)) for one query's m candidates. `query_terms` / `item_terms`:
    the BM25 tokens (stemmed, stop words out); `bm25`, `dense`: (m,) each candidate's scores;
    `document_frequency`: term -> items whose text has it, of `n_items` (idf as BM25's)."""
    m = len(item_terms)
    out = np.zeros((m, len(FEATURES)), dtype=np.float32)
    if m == 0:
        return out
    terms = set(query_terms)
    numbers = [t for t in terms if DIGIT.search(t)]
    idf = {t: np.log(1 + (n_items - document_frequency.get(t, 0) + 0.5) / (document_frequency.get(t, 0) + 0.5))
           for t in terms}
    total_idf = sum(idf.values()) or 1.0
    bigrams = set(zip(query_terms, query_terms[1:]))
    out[:, 0], out[:, 1] = bm25, bm25 - bm25.max()
    out[:, 2] = np.argsort(np.argsort(-bm25, kind="stable"), kind="stable")
    out[:, 3], out[:, 4] = dense, dense - dense.max()
    out[:, 5] = np.argsort(np.argsort(-dense, kind="stable"), kind="stable")
    for j, title in enumerate(item_terms):
        present = set(title)
        matched = terms & present
        out[j, 6] = len(matched) / max(len(terms), 1)
        out[j, 7] = float(bool(terms.intersection(title[-2:])))
        out[j, 8] = sum(t in present for t in numbers)
        out[j, 12] = len(title)
        out[j, 13] = sum(idf[t] for t in matched) / total_idf
        out[j, 14] = len(bigrams.intersection(zip(title, title[1:])))
        out[j, 15] = min((title.index(t) for t in matched), default=len(title)) / max(len(title), 1)
    out[:, 9], out[:, 10] = len(numbers), len(terms)
    out[:, 11] = sum(document_frequency.get(t, 0) > 0 for t in terms) / max(len(terms), 1)
    out[:, 16] = max(idf.values(), default=0.0)
    out[:, 17:20] = fuzzy_features(query_terms, item_terms)
    out[:, CROSS] = np.nan
    out[:, LATE:LATE + 2] = np.nan
    return out


def add_late(x: np.ndarray, query_tokens: np.ndarray | None, item_tokens: Sequence[np.ndarray] | None) -> np.ndarray:
    """Fills `x`'s MaxSim columns in place from the query's and each candidate's token vectors
    (`shoplm.search.late`); left missing when either is None."""
    if query_tokens is not None and item_tokens is not None and len(x):
        x[:, LATE:LATE + 2] = maxsim(query_tokens, item_tokens)
    return x


def add_cross(x: np.ndarray, cross, query: str, text_of: Callable[[int], str], depth: int) -> np.ndarray:
    """Fills `x`'s cross column in place for the `depth` candidates that reciprocal-rank fusion
    of their BM25 and dense ranks puts first; `text_of(j)`: candidate j's item text (asked only
    for those). `cross`: a `CrossEncoder`, or None (the column stays missing)."""
    if cross is None or depth <= 0 or not len(x):
        return x
    top = cross_rows(x[:, 2], x[:, 5], depth)
    x[top, CROSS] = cross.scores(query, [text_of(j) for j in top])
    return x


def fuzzy_features(query_terms: Sequence[str], item_terms: Sequence[Sequence[str]]) -> np.ndarray:
    """float32 (m, 3) for misspelt and run-together queries, which exact term matches miss
    (on Home Depot dev, together +0.013 NDCG@10 for the re-ranker):
    - the share of query terms with a title term within rapidfuzz ratio `FUZZY_MIN`
      ("brakcet" ~ "bracket"; exact matches count too);
    - compounds: query terms that are two adjacent title terms run together, plus adjacent
      query terms that form one title term ("deckover" ~ "deck over");
    - rapidfuzz's partial_ratio of the query within the title, in [0, 1].
    rapidfuzz does the string distances in C++; the query is compared once with the
    candidates' distinct terms, not once per candidate."""
    from rapidfuzz import fuzz, process

    out = np.zeros((len(item_terms), 3), dtype=np.float32)
    terms = list(dict.fromkeys(query_terms))
    if not terms or not len(item_terms):
        return out
    column: dict[str, int] = {}
    flat = np.fromiter((column.setdefault(t, len(column)) for title in item_terms for t in title), dtype=np.int64)
    lengths = np.fromiter(map(len, item_terms), dtype=np.int64, count=len(item_terms))  # (m,)
    if len(flat):
        close = process.cdist(terms, list(column), scorer=fuzz.ratio, score_cutoff=FUZZY_MIN, workers=1) > 0  # (q, V)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[lengths > 0]
        found = np.logical_or.reduceat(close[:, flat], starts, axis=1)  # (q, titles with terms)
        out[lengths > 0, 0] = found.mean(axis=0)
    joined = {a + b for a, b in zip(query_terms, query_terms[1:])}
    for j, title in enumerate(item_terms):
        out[j, 1] = len(joined.intersection(title)) + len({a + b for a, b in zip(title, title[1:])}.intersection(terms))
    out[:, 2] = process.cdist([" ".join(query_terms)], [" ".join(t) for t in item_terms],
                              scorer=fuzz.partial_ratio, workers=1)[0] / 100
    return out


def labels(relevance: np.ndarray) -> np.ndarray:
    """int labels for LightGBM: relevance in thirds (Home Depot's means of three ratings are exact)."""
    return np.clip(np.round(np.asarray(relevance, dtype=np.float64) * 3), 0, 30).astype(np.int32)


class Reranker:
    """`Reranker.fit(groups, relevances)` -> `.scores(features) -> (m,)`; `save` / `load`.
    `cross`: the cross-encoder whose scores fill the "cross" feature of the top `cross_depth`
    candidates (`load_reranker` sets both from the model directory; None = the column stays missing)."""

    def __init__(self, booster, meta: dict):
        self.booster, self.meta = booster, meta
        self.cross, self.cross_depth = None, int(meta.get("cross_depth", 0))

    @classmethod
    def fit(cls, groups: Sequence[np.ndarray], relevances: Sequence[np.ndarray], seed: int = 13, threads: int = 0,
            rounds: int = 600, cross_depth: int = 0) -> "Reranker":
        """groups: per query (m_i, len(FEATURES)) features; relevances: per query (m_i,) graded
        relevance (0 = not relevant or not judged). Small trees (7 leaves of at least 100
        candidates), a low rate and a fixed number of rounds: on Home Depot (dev NDCG@10, 13
        features) 7 leaves gave 0.4127 against 0.4025 for 31, early stopping on a tenth of the
        held-out queries stopped after 5 rounds on noise (0.4026), and with these 17 features
        600 rounds at rate 0.025 gave 0.4160 against 0.4137 for 300 at 0.05. LambdaRank's pairs
        reach down to rank 60 (LightGBM's default is 30): a query has ~180
        candidates and relevant ones sit deep, and in 5-fold cross-validation on the held-out
        queries (22 features, 2 seeds) truncation 20 gave 0.4468, 40 0.4480, 60 0.4482, 100
        0.4461 (dev, 8 seeds: 0.4456 -> 0.4468 for 60). `cross_depth`: how
        many candidates per query the cross-encoder scored in `groups` (kept, so serving does the same)."""
        import lightgbm as lgb

        y = [labels(r) for r in relevances]
        keep = [i for i, r in enumerate(y) if r.any()]  # a group without a relevant item teaches nothing
        if not keep:
            raise NoTrainingData("no held-out query has a relevant item among its candidates; "
                                 "the re-ranker has nothing to learn from")
        gain = list(range(int(max(r.max() for r in y)) + 1))  # linear: gain = relevance, as the metric
        params = {"objective": "lambdarank", "label_gain": gain, "learning_rate": 0.025, "num_leaves": 7,
                  "min_data_in_leaf": 100, "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8,
                  "lambdarank_truncation_level": 60, "seed": seed, "deterministic": True, "num_threads": threads,
                  "verbose": -1}
        train = lgb.Dataset(np.concatenate([groups[i] for i in keep]), np.concatenate([y[i] for i in keep]),
                            group=[len(y[i]) for i in keep], feature_name=list(FEATURES))
        booster = lgb.train(params, train, num_boost_round=rounds)
        return cls(booster, {"version": VERSION, "features": list(FEATURES), "queries": len(keep), "rounds": rounds,
                             "cross_depth": cross_depth})

    def scores(self, features: np.ndarray) -> np.ndarray:
        """float64 (m,): higher is better; only the order within one query means anything."""
        if len(features) == 0:
            return np.zeros(0)
        return self.booster.predict(features, num_iteration=self.meta["rounds"], num_threads=1)

    def save(self, directory: Path) -> None:
        with staged_dir(directory) as tmp:
            self.booster.save_model(str(tmp / "ranker.txt"), num_iteration=self.meta["rounds"])
            (tmp / "ranker.json").write_text(json.dumps(self.meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> "Reranker | None":
        """The re-ranker saved in `directory`, or None when there is none."""
        import lightgbm as lgb

        directory = recover_dir(Path(directory))
        if not (directory / "ranker.json").is_file():
            return None
        meta = json.loads((directory / "ranker.json").read_text())
        if meta.get("version") != VERSION or meta.get("features") != list(FEATURES):
            raise IndexMismatch(f"{directory}: re-ranker version {meta.get('version')} with features "
                                f"{meta.get('features')}; this shoplm reads version {VERSION} with {list(FEATURES)}. "
                                "Retrain it with `shoplm train search`")
        return cls(lgb.Booster(model_file=str(directory / "ranker.txt")), meta)


def load_reranker(model: Path, use_cross: bool = True, device: str = "cpu", bf16: bool = False) -> Reranker | None:
    """The re-ranker a fine-tuned model directory carries (`shoplm train search`), with its
    cross-encoder when it has one and `use_cross`; None when the directory has no re-ranker."""
    ranker = Reranker.load(Path(model) / RERANKER_DIR)
    if ranker is not None and use_cross and ranker.cross_depth > 0:
        ranker.cross = CrossEncoder.load(Path(model) / CROSS_DIR, device=device, bf16=bf16)
        if ranker.cross is None:
            raise IndexMismatch(f"{model}: the re-ranker was trained with a cross-encoder, but {Path(model) / CROSS_DIR} "
                                "is missing; copy the whole model directory, or retrain it with `shoplm train search`")
    return ranker


def query_candidates(lexical, item_vectors: np.ndarray, query: str, query_vector: np.ndarray,
                     depth: int, cross=None, cross_depth: int = 0, query_tokens: np.ndarray | None = None,
                     item_tokens: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One query against a whole catalog held as arrays (evaluation and training): its candidate
    rows (of `lexical` / `item_vectors`, which must be in the same order) and their features,
    the top `cross_depth` read by the cross-encoder `cross` when there is one, and MaxSim from
    the query's token vectors and the catalog's (`item_tokens`, in the same order) when given."""
    tokens = lexical.tokenize([query])[0]  # once: BM25, its spelling correction and the features read them
    bm25 = lexical.token_scores(tokens)  # (n,)
    dense = item_vectors @ query_vector  # (n,)
    fixed = lexical.corrected(tokens)
    rows = candidate_rows(bm25, dense, depth, None if fixed is None else lexical.token_scores(fixed))
    x = candidate_features(lexical, query, tokens, rows, bm25[rows], dense[rows], cross, cross_depth, query_tokens,
                           None if item_tokens is None else [item_tokens[r] for r in rows])
    return rows, x


def candidate_features(lexical, query: str, query_terms: Sequence[str], positions: np.ndarray, bm25: np.ndarray,
                       dense: np.ndarray, cross=None, cross_depth: int = 0, query_tokens: np.ndarray | None = None,
                       item_tokens: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """float32 (m, len(FEATURES)) for one query's m candidates: the one feature path that
    serving (`SearchPipeline`), evaluation and training (`query_candidates`) share. Only how
    candidates are found differs: offline from exact scores over the whole catalog, in serving
    from the filtered ANN and BM25 top-k. `positions`: each candidate's row in `lexical` (-1: an
    item BM25 does not hold, with no terms and no text); `bm25`, `dense`: (m,) their scores;
    `item_tokens`: their token vectors (MaxSim), `cross`: a cross-encoder for the top `cross_depth`."""
    positions = np.asarray(positions)
    terms = [t if p >= 0 else [] for t, p in zip(lexical.terms(np.maximum(positions, 0)), positions)]
    x = features(query_terms, terms, bm25, dense, lexical.document_frequency(), len(lexical))
    add_late(x, query_tokens, item_tokens)
    return add_cross(x, cross, query, lambda j: lexical.texts[positions[j]] if positions[j] >= 0 else "", cross_depth)


def rerank_all(ranker: Reranker, lexical, item_vectors: np.ndarray, queries: Sequence[str],
               query_vectors: np.ndarray, depth: int, k: int, progress: Callable[[int], None] = lambda n: None,
               query_tokens: Sequence[np.ndarray] | None = None, item_tokens: Sequence[np.ndarray] | None = None):
    """Hits (n, k): every query's candidates ordered by the re-ranker (MaxSim from the token
    vectors of the queries and of the catalog, in `lexical`'s order, when given)."""
    ids = np.asarray(lexical.ids, dtype=object)
    out = Hits(np.full((len(queries), k), "", dtype=object), np.full((len(queries), k), -np.inf, dtype=np.float32))
    for i, (query, vector) in enumerate(zip(queries, query_vectors)):
        rows, x = query_candidates(lexical, item_vectors, query, vector, depth, ranker.cross, ranker.cross_depth,
                                   None if query_tokens is None else query_tokens[i], item_tokens)
        scores = ranker.scores(x)
        order = np.argsort(-scores, kind="stable")[:k]
        out.ids[i, :len(order)], out.scores[i, :len(order)] = ids[rows[order]], scores[order]
        progress(1)  # a `shoplm.progress.Counter`: one more query done
    return out
