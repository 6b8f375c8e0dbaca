"""The in-batch softmax against a hand-written cross-entropy."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from shoplm.search.loss import InBatchSoftmaxLoss, LossConfig, in_batch_softmax


def test_matches_manual_cross_entropy():
    torch.manual_seed(0)
    q, d = F.normalize(torch.randn(4, 8), dim=1), F.normalize(torch.randn(6, 8), dim=1)  # 4 positives + 2 negatives
    t = 0.05
    expected = 0.0
    for i in range(4):
        logits = [float(q[i] @ d[j]) / t for j in range(6)]
        expected += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    assert torch.isclose(in_batch_softmax(q, d, t), torch.tensor(expected / 4), rtol=1e-5)


def test_aligned_pairs_score_lower_than_shuffled():
    e = F.normalize(torch.randn(8, 16), dim=1)
    assert in_batch_softmax(e, e) < in_batch_softmax(e, e.roll(1, dims=0))
    assert in_batch_softmax(e, e).item() < 1e-3  # cosine 1 vs ~0 at scale 20


def test_weights_and_symmetric():
    torch.manual_seed(1)
    q, d = F.normalize(torch.randn(3, 8), dim=1), F.normalize(torch.randn(3, 8), dim=1)
    per = F.cross_entropy(q @ d.T / 0.1, torch.arange(3), reduction="none")
    w = torch.tensor([1.0, 2.0, 0.0])
    assert torch.isclose(in_batch_softmax(q, d, 0.1, w), (per * w).sum() / 3)
    back = F.cross_entropy(d @ q.T / 0.1, torch.arange(3), reduction="none")
    assert torch.isclose(in_batch_softmax(q, d, 0.1, symmetric=True), ((per + back) / 2).mean())


def test_module_encodes_then_applies_the_function():
    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)

        def forward(self, features):
            return {"sentence_embedding": self.proj(features["x"])}

    loss = InBatchSoftmaxLoss(Toy(), LossConfig(temperature=0.05, symmetric=False))
    x = torch.randn(3, 4)
    value = loss({"x": x}, {"x": x})
    value.backward()
    assert loss.model.proj.weight.grad is not None
    e = F.normalize(loss.model.proj(x), dim=1)
    assert torch.isclose(value, in_batch_softmax(e, e, 0.05))
