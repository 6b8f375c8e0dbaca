"""From language-model text vectors to the recommendation model's item space: PCA whitening
once, then a learned mixture of linear experts (UniSRec's adaptor, Hou et al., KDD 2022)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TextAdaptor(nn.Module):
    """Whitening + mixture of experts: (n, text_dim) -> (n, dim).

    The catalog's text vectors are PCA-whitened once (`whiten`, a fixed projection onto
    the top `dim` components scaled to unit variance: the isotropy fix of Su et al., 2021,
    which UniSRec learns as "parametric whitening"). Each of K experts then maps the
    whitened vector with a learned (dim, dim) matrix plus bias, started at the identity;
    a softmax gate over the raw text mixes them. Doing the whitening once keeps the learned
    part small, so the whole catalog can be re-encoded at every step on a CPU."""

    def __init__(self, dim: int, n_experts: int, text_dim: int):
        super().__init__()
        self.proj = nn.Parameter(torch.eye(dim).repeat(n_experts, 1, 1)
                                 + 0.01 * torch.randn(n_experts, dim, dim))  # (K, dim, dim)
        self.bias = nn.Parameter(torch.zeros(n_experts, dim))  # (K, dim)
        self.gate = nn.Linear(text_dim, n_experts, bias=False)
        nn.init.zeros_(self.gate.weight)

    def forward(self, whitened: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """whitened: (n, dim), text: (n, text_dim) -> (n, dim)."""
        experts = torch.einsum("nd,kde->nke", whitened, self.proj) + self.bias  # (n, K, dim)
        gate = torch.softmax(self.gate(text), dim=-1)  # (n, K)
        return (gate[:, :, None] * experts).sum(dim=1)  # (n, dim)


def whitening(text: torch.Tensor, dim: int) -> torch.Tensor:
    """(n, text_dim) -> (n, dim): centred, projected on the top principal components, each
    scaled to variance 1/dim (so a whitened vector has norm ~1). Components beyond
    text_dim (dim > text_dim) are zero."""
    centred = text - text.mean(dim=0)  # (n, text_dim)
    eigvals, eigvecs = torch.linalg.eigh(torch.cov(centred.T))  # ascending
    top = min(dim, text.shape[1], max(len(text) - 1, 1))
    w = eigvecs[:, -top:].flip(-1) / eigvals[-top:].flip(-1).clamp_min(1e-6).sqrt()  # (text_dim, top)
    return F.pad(centred @ w / dim ** 0.5, (0, dim - top))  # (n, dim)
