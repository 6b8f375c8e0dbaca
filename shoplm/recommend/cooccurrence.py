"""Item-to-item co-occurrence over training sequences, shared by the item-kNN baseline and
the shoplm model's co-occurrence path.

Two items co-occur when one actor has them at most `window` events apart; a pair d events
apart counts weight_a * weight_b / d (close in time = more related), normalised by
sqrt(weight_a * weight_b) (cosine). See Ludewig & Jannach (2018).

The shoplm model keeps C as torch CSR arrays (`csr_tensors`) and reads only the rows of a
batch's recent items (`lag_entries`): memory O(nnz), never an (n x n) matrix.
"""

from __future__ import annotations

import numpy as np
import torch
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


CSR = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (indptr int64 (n + 1,), indices int64 (nnz,), values float32 (nnz,))


def csr_tensors(matrix: sparse.csr_matrix, device: str | torch.device | None = None) -> CSR:
    """A scipy CSR (n, n) matrix as torch arrays (indptr, indices, values)."""
    return (torch.from_numpy(matrix.indptr.astype(np.int64)).to(device),
            torch.from_numpy(matrix.indices.astype(np.int64)).to(device),
            torch.from_numpy(matrix.data.astype(np.float32)).to(device))


def csr_gather(indptr: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The nonzeros of the CSR rows `rows` (m,): (owner, position), each (nnz of those rows,),
    `owner` indexing `rows` and `position` the CSR's indices and values. A row id of
    len(indptr) - 1 (the pad) is an empty row."""
    ptr = torch.cat([indptr, indptr[-1:]])  # row n: empty
    start, count = ptr[rows], ptr[rows + 1] - ptr[rows]  # (m,) each
    owner = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), count)  # (nnz,)
    first = count.cumsum(0) - count  # (m,) where each row's run starts in the output
    position = torch.arange(len(owner), device=rows.device) + (start - first)[owner]
    return owner, position


def lag_entries(csr: CSR, lags: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sum_k weights[p, k] C[lags[p, k]] as entries (position p, item j, value), each (E,), E the
    nonzeros of the rows read; entries of one (p, j) add up. `lags` (P, K) item ids, the pad
    (n) an empty row; `weights` (P, K), the values are differentiable in them."""
    indptr, indices, values = csr
    owner, position = csr_gather(indptr, lags.reshape(-1))  # (E,) each
    return owner // lags.shape[1], indices[position], values[position] * weights.reshape(-1)[owner]
