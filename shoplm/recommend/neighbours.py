"""New items borrow from their nearest seen items by text, as pure tensor functions.

A new item has no co-occurrence, ID vector or popularity of its own. Its `K` nearest seen
items by text cosine (on Amazon, often siblings of the same product line) lend theirs,
weighted by similarity: the k-NN idea of content-based cold start. `UserModel` caches the
neighbours of its catalog and calls these.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def text_neighbours(similarity: torch.Tensor, seen: torch.Tensor, k: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's `k` nearest seen items other than itself by text: indices (n + 1, K) and
    weights cos(e_j, e_k) clamped at 0 (n + 1, K), the pad row pointing at the pad with weight 0.
    `similarity`: (n + 1, n) text cosines, pad row last; `seen`: (n + 1,) > 0 for items with
    training events."""
    n = similarity.shape[1]
    similarity = similarity[:-1].masked_fill(seen[:-1] == 0, -torch.inf)  # (n, n), seen columns only
    similarity = similarity.masked_fill(torch.eye(n, dtype=torch.bool, device=similarity.device), -torch.inf)
    top, index = similarity.topk(min(k, n - 1), dim=1)  # (n, K)
    w = top.clamp_min(0).nan_to_num(0.0, posinf=0.0, neginf=0.0)  # (n, K); -inf (too few seen) -> 0
    return F.pad(index, (0, 0, 0, 1), value=pad), F.pad(w, (0, 0, 0, 1))


def borrowed(values: torch.Tensor, keep: torch.Tensor, neighbours: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(n + 1, ...) per-item `values` -> (n + 1, ...) the weighted mean of each item's text
    neighbours' values, over the neighbours whose ID is kept (`keep` (n + 1,)): in training
    an ID-hidden neighbour has nothing to lend. Zero where no neighbour is kept."""
    index, w = neighbours
    w = w * keep[index]  # (n + 1, K)
    w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-9)
    lent = values[index]  # (n + 1, K, ...)
    return (w.reshape(w.shape + (1,) * (lent.dim() - 2)) * lent).sum(dim=1)


def spread_to_new_items(matrix: torch.Tensor, neighbours: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(n + 1, n) co-occurrence C -> (n + 1, n) C' with C'[h, j] = sum_k w_jk C[h, k] over j's
    text neighbours k, w_jk ∝ cos(e_j, e_k) (sum 1): without it every warm item that co-occurs
    with the history outranks new ones."""
    index, w = neighbours[0][:-1], neighbours[1][:-1]  # (n, K) each
    w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-9)
    n = matrix.shape[1]
    dense = torch.zeros(n, n, device=w.device).scatter_(1, index, w)  # (n new, n seen)
    return matrix @ dense.T  # (n + 1, n)
