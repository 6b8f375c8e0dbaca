"""BM25 parity with a hand-computed Lucene BM25, plus save/load and add/remove."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shoplm.search.lexical import LexicalIndex

DOCS = ["red apple pie", "green apple", "apple apple tart with red berries", "blue cheese"]


def lucene_bm25(query: list[str], docs: list[list[str]], k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Lucene's BM25 (what bm25s calls method="lucene"): idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
    tf part = tf / (tf + k1 * (1 - b + b * |d| / avgdl))."""
    n, avgdl = len(docs), sum(len(d) for d in docs) / len(docs)
    scores = []
    for doc in docs:
        score = 0.0
        for term in set(query):
            df = sum(term in d for d in docs)
            if df == 0:
                continue
            tf = doc.count(term)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            score += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
        scores.append(score)
    return scores


def test_scores_match_hand_computed_lucene_bm25():
    index = LexicalIndex([f"d{i}" for i in range(len(DOCS))], DOCS, stem=False)
    tokenized = index.tokenize(DOCS)  # stop words ("with") removed, as the index does
    for query in ["apple", "red apple", "cheese tart", "apple berries"]:
        expected = lucene_bm25(index.tokenize([query])[0], tokenized)
        np.testing.assert_allclose(index.scores(query), expected, rtol=1e-5)


def test_search_orders_by_score_and_pads():
    index = LexicalIndex(["a", "b", "c", "d"], DOCS, stem=False)
    hits = index.search(["red apple", "zebra"], k=5)
    expected = lucene_bm25(["red", "apple"], index.tokenize(DOCS))  # a > c > b, no ties
    assert list(hits.ids[0][:3]) == [["a", "b", "c", "d"][i] for i in np.argsort(expected)[::-1][:3]]
    assert list(hits.ids[0][3:]) == ["", ""] and np.all(np.isneginf(hits.scores[0][3:]))
    assert list(hits.ids[1]) == [""] * 5


def test_stemming_matches_plural():
    index = LexicalIndex(["a", "b"], ["angle brackets galvanized", "deck paint"])
    assert index.search(["angle bracket"], 1).ids[0][0] == "a"


def test_mask_keeps_k_results_from_allowed_items():
    index = LexicalIndex(["a", "b", "c", "d"], DOCS, stem=False)
    hits = index.search(["apple"], 2, mask=np.array([True, True, False, True]))
    assert list(hits.ids[0]) == ["b", "a"]


def test_add_remove_and_save_load(tmp_path):
    index = LexicalIndex(["a", "b"], DOCS[:2], stem=False)
    index.add(["n"], ["cordless leaf blower"])
    assert index.search(["leaf blower"], 1).ids[0][0] == "n"
    index.save(tmp_path / "lex")
    loaded = LexicalIndex.load(tmp_path / "lex")
    np.testing.assert_allclose(loaded.scores("apple"), index.scores("apple"))
    loaded.remove(["n"])
    assert loaded.search(["leaf blower"], 1).ids[0][0] == ""
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_mismatched_lengths_are_refused():
    from shoplm.errors import IndexMismatch

    with pytest.raises(IndexMismatch):
        LexicalIndex(["a"], ["x", "y"])
