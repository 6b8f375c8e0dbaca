"""Item-to-item co-occurrence over training sequences, shared by the item-kNN baseline and
the shoplm model's co-occurrence path.

Two items co-occur when one actor has them at most `window` events apart; a pair d events
apart counts weight_a * weight_b / d (close in time = more related), normalised by
sqrt(weight_a * weight_b) (cosine). See Ludewig & Jannach (2018).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from shoplm.recommend.sequences import Sequences


def item_weights(train: Sequences, n_items: int) -> np.ndarray:
    """float64[n_items]: summed event weights per item."""
    counts = np.zeros(n_items, dtype=np.float64)
    for items, weights in zip(train.items, train.weights):
        np.add.at(counts, items, weights)
    return counts


def co_occurrence(train: Sequences, n_items: int, window: int, normalise: bool = True) -> sparse.csr_matrix:
    """float32 (n, n) CSR: sum over pairs at most `window` events apart of w_a * w_b / distance,
    divided by sqrt(weight_a * weight_b) (`normalise`; else the sums as they are, which favour
    popular items); the diagonal is zero. Symmetric."""
    rows, cols, vals = [], [], []
    for items, weights in zip(train.items, train.weights):
        for d in range(1, window + 1):
            if len(items) <= d:
                break
            a, b = items[:-d], items[d:]
            w = weights[:-d] * weights[d:] / d
            rows += [a, b]
            cols += [b, a]
            vals += [w, w]
    empty = [np.zeros(0, np.int64)]
    co = sparse.csr_matrix((np.concatenate(vals or [np.zeros(0, np.float32)]),
                            (np.concatenate(rows or empty), np.concatenate(cols or empty))), shape=(n_items, n_items))
    co.setdiag(0)
    co.eliminate_zeros()
    if not normalise:
        return co.astype(np.float32).tocsr()
    norm = 1.0 / np.sqrt(np.maximum(item_weights(train, n_items), 1e-9))  # (n,)
    return (sparse.diags(norm) @ co @ sparse.diags(norm)).astype(np.float32).tocsr()
