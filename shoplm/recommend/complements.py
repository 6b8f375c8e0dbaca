"""Complements: what is bought together with a cart, not what resembles it.

A *basket* is what one actor bought or put in the cart in one visit: the events of type
`purchase` or `add_to_cart` that share a session_id (an order), else a user's events of
one calendar day (UTC). Two items co-occur when they are in one basket; a basket of m
distinct items adds (m - 1) ** -basket_decay to each of its pairs, so a large basket,
whose pairs say little each, does not drown the small ones (each item of it spreads about
one unit over its partners at decay 1).

The complement score of item b for one context item a is asymmetric cosine
(Aiolli, 2013, as in item-based collaborative filtering):

    score(b | a) = C[a, b] / (n_a ** alpha * n_b ** (1 - alpha))

with n the number of baskets an item is in. alpha = 0.5 is the plain cosine; alpha
towards 1 is the conditional probability P(b | a), which favours staples (bananas on a
grocery catalog are bought with everything). A cart of several items sums their rows. A
context item with no basket of its own (a new product) borrows the rows of its nearest
items by text, weighted by cosine: the text model stands in until it is bought.

Everything here is sparse (scipy CSR, memory O(pairs)): no items x items dense matrix, so
it works on any catalog size. `Complements.fit(baskets, n)` and `.scores(context_rows)`
serve both the engine (shoplm/engine/engine.py) and the basket-completion evaluation
(shoplm/recommend/basket.py), so what is measured is what is served.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import polars as pl
from scipy import sparse

from shoplm.lm.vectors import rows_at

BASKET_TYPES = ("purchase", "add_to_cart")
SECONDS_PER_DAY = 86_400


def basket_frame(events: pl.DataFrame) -> pl.DataFrame:
    """basket (str), item_id, timestamp of the purchase and cart events in `events` (the
    store's events frame): one row per item and basket, the first time it went in."""
    frame = events.filter(pl.col("event_type").is_in(BASKET_TYPES) & pl.col("item_id").is_not_null())
    day = (pl.col("timestamp") // SECONDS_PER_DAY).cast(pl.Int64).cast(pl.String)
    key = pl.when(pl.col("session_id").is_not_null()).then(pl.lit("s:") + pl.col("session_id")) \
        .otherwise(pl.lit("u:") + pl.col("user_id").fill_null("") + pl.lit("@") + day)
    return (frame.with_columns(key.alias("basket"))
            .group_by(["basket", "item_id"]).agg(pl.col("timestamp").min())
            .sort(["basket", "timestamp", "item_id"]))


def baskets_from_frame(frame: pl.DataFrame, rows: dict[str, int]) -> list[np.ndarray]:
    """`basket_frame` rows -> one int64 array of item rows per basket (items not in `rows` left out)."""
    index = frame.with_columns(pl.col("item_id").replace_strict(rows, default=-1, return_dtype=pl.Int64).alias("row"))
    index = index.filter(pl.col("row") >= 0)
    grouped = index.group_by("basket", maintain_order=True).agg(pl.col("row"))
    return [np.asarray(r, dtype=np.int64) for r in grouped["row"].to_list()]


class Complements:
    """Co-purchase complements over item rows 0..n-1."""

    def __init__(self, matrix: sparse.csr_matrix, counts: np.ndarray, alpha: float):
        self.matrix = matrix  # float32 (n, n) CSR: score(col | row), zero diagonal
        self.counts = counts  # float64[n]: baskets each item is in
        self.alpha = alpha

    @property
    def n_items(self) -> int:
        return self.matrix.shape[0]

    @classmethod
    def fit(cls, baskets: Sequence[np.ndarray], n_items: int, alpha: float = 0.5,
            basket_decay: float = 1.0) -> "Complements":
        """From baskets of item rows (duplicates within a basket count once)."""
        rows, cols, weights = [], [], []
        for b, items in enumerate(baskets):
            items = np.unique(items)
            if len(items) < 2:
                continue
            rows.append(np.full(len(items), b))
            cols.append(items)
            weights.append(np.full(len(items), (len(items) - 1) ** (-basket_decay / 2)))
        if not rows:
            return cls(sparse.csr_matrix((n_items, n_items), dtype=np.float32), np.zeros(n_items), alpha)
        weighted = sparse.csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                                     shape=(len(baskets), n_items))  # (baskets, n): sqrt of each pair's weight
        together = (weighted.T @ weighted).tocsr()  # (n, n): sum of pair weights
        together.setdiag(0)
        together.eliminate_zeros()
        counts = np.bincount(np.concatenate(cols), minlength=n_items).astype(np.float64)  # baskets of >= 2 items
        safe = np.maximum(counts, 1.0)
        left = sparse.diags(safe ** -alpha)
        right = sparse.diags(safe ** -(1.0 - alpha))
        return cls((left @ together @ right).astype(np.float32).tocsr(), counts, alpha)

    def grown(self, n_items: int) -> "Complements":
        """The same complements over a row space of `n_items` >= n rows (rows added since have none)."""
        extra = n_items - self.n_items
        if extra <= 0:
            return self
        matrix = sparse.csr_matrix((self.matrix.data, self.matrix.indices,
                                    np.concatenate([self.matrix.indptr, np.full(extra, self.matrix.indptr[-1])])),
                                   shape=(n_items, n_items))
        return Complements(matrix, np.concatenate([self.counts, np.zeros(extra)]), self.alpha)

    def known(self, row: int) -> bool:
        return 0 <= row < self.n_items and self.matrix.indptr[row + 1] > self.matrix.indptr[row]

    def context_weights(self, context: Sequence[int], vectors: np.ndarray | None = None,
                        neighbours: int = 5, floor: float = 0.5) -> dict[int, float]:
        """{row: weight} whose rows make up the context's complements: each context row that
        has baskets weighs 1; one without (a new item) is replaced by its `neighbours`
        nearest rows by text (`vectors`, L2-normalised, row space) that have baskets and a
        cosine of at least `floor` (look-alikes, not just any item), weighted by cosine
        (summing to 1)."""
        out: dict[int, float] = {}
        for row in context:
            if self.known(row):
                out[row] = out.get(row, 0.0) + 1.0
            elif vectors is not None and 0 <= row < len(vectors):
                for near, w in self._text_stand_ins(row, vectors, neighbours, floor):
                    out[near] = out.get(near, 0.0) + w
        return out

    def _text_stand_ins(self, row: int, vectors: np.ndarray, k: int, floor: float) -> list[tuple[int, float]]:
        n = min(self.n_items, len(vectors))
        candidates = np.flatnonzero(np.diff(self.matrix.indptr[: n + 1]) > 0)  # rows with baskets
        candidates = candidates[candidates != row]
        if not len(candidates):
            return []
        sims = rows_at(vectors, candidates) @ rows_at(vectors, row)  # (c,)
        top = np.argsort(-sims, kind="stable")[:k]
        top = top[sims[top] >= max(floor, 1e-9)]
        total = sims[top].sum()
        return [(int(candidates[t]), float(sims[t] / total)) for t in top] if len(top) else []

    def scores(self, context: Sequence[int], vectors: np.ndarray | None = None, neighbours: int = 5,
               floor: float = 0.5, n_rows: int | None = None) -> np.ndarray:
        """float64[n_rows or n]: the summed complement rows of the context (see `context_weights`)."""
        return self.weighted(self.context_weights(context, vectors, neighbours, floor), n_rows)

    def weighted(self, weights: dict[int, float], n_rows: int | None = None) -> np.ndarray:
        """float64[n_rows or n]: sum of weight * the row's complements over `weights` ({row: weight})."""
        out = np.zeros(self.n_items if n_rows is None else n_rows)
        if not weights:
            return out
        rows = np.fromiter(weights, dtype=np.int64)
        query = sparse.csr_matrix((np.fromiter(weights.values(), dtype=np.float64),
                                   (np.zeros(len(rows), dtype=np.int64), rows)), shape=(1, self.n_items))
        summed = (query @ self.matrix).toarray()[0]  # (n,)
        m = min(len(out), len(summed))
        out[:m] = summed[:m]
        return out

    def strongest(self, context: Sequence[int], row: int) -> int | None:
        """The context row with the largest complement score for `row` (for the reason shown)."""
        best, best_score = None, 0.0
        for c in context:
            if self.known(c) and row < self.n_items:
                value = self.matrix[c, row]
                if value > best_score:
                    best, best_score = c, float(value)
        return best
