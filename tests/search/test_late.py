"""Late interaction (MaxSim) features and the token vector store."""

from __future__ import annotations

import numpy as np
import pytest

from shoplm.lm.cache import EmbeddingCache
from shoplm.lm.encoder import Encoder
from shoplm.search.late import TokenStore, maxsim


def test_maxsim_by_hand():
    query = np.array([[1.0, 0.0], [0.0, 1.0]])  # two query tokens
    items = [np.array([[1.0, 0.0]]),  # meets the first token only
             np.array([[0.6, 0.8], [1.0, 0.0]]),  # the first fully, the second at 0.8
             np.zeros((0, 2))]  # no token at all
    out = maxsim(query, items)
    assert out.shape == (3, 2)
    assert np.allclose(out[0], [0.5, 0.0]) and np.allclose(out[1], [0.9, 0.8]) and np.allclose(out[2], [0.0, 0.0])
    assert np.allclose(maxsim(np.zeros((0, 2)), items), 0.0)


def test_maxsim_equals_the_per_item_loop_on_random_tokens():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(7, 16)).astype(np.float32)
    items = [rng.normal(size=(n, 16)).astype(np.float16) for n in (3, 0, 1, 12, 0, 5)] + [np.zeros((0, 16))]
    expected = np.zeros((len(items), 2), dtype=np.float32)
    for j, item in enumerate(items):
        if len(item):
            best = (query @ item.astype(np.float32).T).max(axis=1)
            expected[j] = best.mean(), best.min()
    assert np.allclose(maxsim(query, items), expected, atol=1e-5)
    assert np.array_equal(maxsim(query, [np.zeros((0, 16))] * 3), np.zeros((3, 2)))


@pytest.fixture(scope="module")
def encoder():
    return Encoder(bf16=False)


def test_token_vectors_come_with_the_pooled_vectors_and_are_stored_once(encoder, items, tmp_path, monkeypatch):
    texts = [i.title for i in items] + [items[0].title]  # a repeated text is encoded once
    cache = EmbeddingCache(tmp_path, encoder.fingerprint, encoder.dim)
    store = TokenStore.of(cache)
    tokens = store.get(encoder, texts, cache)
    lengths = [len(ids) - 2 for ids in encoder.model.tokenizer(texts)["input_ids"]]  # [CLS] and [SEP] left out
    assert [len(t) for t in tokens] == lengths and all(t.dtype == np.float16 for t in tokens)
    assert np.allclose(np.linalg.norm(np.concatenate(tokens).astype(np.float32), axis=1), 1.0, atol=1e-3)
    assert len(store) == len(items)

    # the same pass gave the pooled vectors: the embedding cache has them, as `encode` computes them
    calls = []
    monkeypatch.setattr(Encoder, "encode", lambda self, t, **kw: calls.append(t) or np.zeros((len(t), self.dim)))
    cached = cache.encode(encoder, texts)
    assert calls == []
    monkeypatch.undo()
    assert np.min(np.sum(cached * encoder.encode(texts), axis=1)) > 0.9999

    # saved, read back by another store, and nothing is encoded again
    monkeypatch.setattr(Encoder, "encode_tokens", lambda self, t, **kw: pytest.fail(f"encoded {t} again"))
    again = TokenStore.of(EmbeddingCache(tmp_path, encoder.fingerprint, encoder.dim)).get(encoder, texts[::-1])
    assert all(np.array_equal(a, b) for a, b in zip(again, tokens[::-1]))


def test_maxsim_sees_the_query_term_a_title_lacks(encoder, tmp_path):
    """The minimum over query tokens is what the pooled cosine blurs: a title without the
    colour the query asks for scores low on it."""
    store = TokenStore(tmp_path, encoder.dim)
    query = encoder.encode_tokens(["white shelf bracket"])[1][0]
    with_white, without = store.get(encoder, ["Shelf bracket white steel 8 in.", "Shelf bracket black steel 8 in."])
    (mean_w, min_w), (mean_b, min_b) = maxsim(query, [with_white, without])
    assert min_w > min_b + 0.05 and mean_w > mean_b


class FakeEncoder:
    """Token vectors of a text: one row per character, each the text's length (dim 4)."""

    def encode_tokens(self, texts, progress=None):
        return (np.zeros((len(texts), 4), dtype=np.float32),
                [np.full((len(t), 4), len(t), dtype=np.float16) for t in texts])


def test_two_writers_keep_both_sets(tmp_path):
    first, second = TokenStore(tmp_path, 4), TokenStore(tmp_path, 4)  # both read an empty store
    first.get(FakeEncoder(), ["drill", "saw"])
    second.get(FakeEncoder(), ["hammer"])  # saved last; must not drop drill and saw
    third = TokenStore(tmp_path, 4)
    assert len(third) == 3
    got = third.get(None, ["saw", "hammer", "drill"])  # nothing to encode: no encoder needed
    assert [t.shape for t in got] == [(3, 4), (6, 4), (5, 4)] and [t[0, 0] for t in got] == [3, 6, 5]
