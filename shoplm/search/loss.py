"""In-batch softmax: P(item | query) over the batch's items, the other queries' positives and
hard negatives acting as negatives (Henderson et al., 2017; Karpukhin et al., 2020 "DPR").

    loss = cross_entropy(q @ d.T / t, arange(B))

`in_batch_softmax` is the pure function; `InBatchSoftmaxLoss` is the thin module that
encodes the texts with a sentence-transformers model and calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def in_batch_softmax(q: torch.Tensor, d: torch.Tensor, temperature: float = 0.05,
                     weights: torch.Tensor | None = None, symmetric: bool = False) -> torch.Tensor:
    """Mean (weighted) cross-entropy of each query against all documents.

    q: (B, dim) query vectors; d: (B + H, dim) document vectors, d[i] the positive of q[i]
    for i < B, then H hard negatives shared by every query. Both L2-normalised, so the
    logits are cosines / temperature (0.05 = scale 20, sentence-transformers' default).
    weights: (B,) per-pair weights (relevance or event weight); None = all 1.
    symmetric: also the document-to-query direction over the B positives (Radford et al.,
    2021 "CLIP"), which helps when the same item is the answer to several phrasings.
    """
    B = q.shape[0]
    labels = torch.arange(B, device=q.device)  # (B,)
    logits = q @ d.T / temperature  # (B, B + H)
    per_pair = F.cross_entropy(logits.float(), labels, reduction="none")  # (B,)
    if symmetric:
        per_pair = (per_pair + F.cross_entropy(logits[:, :B].T.float(), labels, reduction="none")) / 2
    if weights is None:
        return per_pair.mean()
    return (per_pair * weights).sum() / weights.sum()


@dataclass
class LossConfig:
    temperature: float = 0.05
    symmetric: bool = True


class InBatchSoftmaxLoss(nn.Module):
    """Encodes queries and documents with `model` (a SentenceTransformer), then `in_batch_softmax`."""

    def __init__(self, model: nn.Module, cfg: LossConfig):
        super().__init__()
        self.model, self.cfg = model, cfg

    def embed(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.normalize(self.model(features)["sentence_embedding"], dim=-1)  # (n, dim)

    def forward(self, query_features: dict[str, torch.Tensor], doc_features: dict[str, torch.Tensor],
                weights: torch.Tensor | None = None) -> torch.Tensor:
        return self.from_embeddings(self.embed(query_features), self.embed(doc_features), weights)

    def from_embeddings(self, q: torch.Tensor, d: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        return in_batch_softmax(q, d, self.cfg.temperature, weights, self.cfg.symmetric)
