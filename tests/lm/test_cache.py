"""The embedding cache shared by processes: neither drops the other's vectors."""

from __future__ import annotations

import numpy as np

from shoplm.lm.cache import EmbeddingCache


class FakeEncoder:
    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, texts, show_progress=False, progress=None):
        self.calls.append(list(texts))
        return np.stack([np.full(4, len(t), dtype=np.float32) for t in texts])


def test_two_writers_keep_both_sets(tmp_path):
    first, second = EmbeddingCache(tmp_path, "m", 4), EmbeddingCache(tmp_path, "m", 4)  # both load an empty cache
    first.encode(FakeEncoder(), ["drill", "saw"])
    second.encode(FakeEncoder(), ["hammer"])  # saved last; must not drop drill and saw
    encoder = FakeEncoder()
    third = EmbeddingCache(tmp_path, "m", 4)
    vectors = third.encode(encoder, ["saw", "hammer", "drill"])
    assert encoder.calls == [] and len(third) == 3
    assert vectors[:, 0].tolist() == [3.0, 6.0, 5.0]
