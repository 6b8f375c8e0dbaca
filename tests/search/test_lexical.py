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


def _fresh(index: LexicalIndex) -> LexicalIndex:
    return LexicalIndex(list(index.ids), list(index.texts), stem=False)


def test_an_added_item_is_searchable_at_once_without_a_rebuild():
    index = LexicalIndex([f"d{i}" for i in range(len(DOCS))], DOCS, stem=False)
    index.scores("apple")
    assert index.builds == 1
    index.add(["n", "d1"], ["cordless leaf blower", "green apple crumble"])  # a new item and a changed one
    assert index.search(["leaf blower"], 1).ids[0][0] == "n"
    assert index.search(["crumble"], 1).ids[0][0] == "d1"
    assert index.builds == 1  # the base matrix was not rebuilt
    assert index.ids == ["d0", "d2", "d3", "n", "d1"]  # the base's items still here, then the tail
    # the tail is scored by hand with N, df and avgdl over base (as built) and tail together
    base, tail = index.tokenize(DOCS), index.tokenize(index.texts[3:])
    for query in ["apple", "leaf blower", "green apple crumble"]:
        expected = lucene_bm25(index.tokenize([query])[0], base + tail)[len(base):]
        np.testing.assert_allclose(index.scores(query)[3:], expected, rtol=1e-5)


def test_removed_items_leave_at_once_from_base_and_tail():
    index = LexicalIndex(["a", "b", "c", "d"], DOCS, stem=False)
    index.scores("apple")
    index.add(["n"], ["apple strudel"])
    index.remove(["a", "n"])
    assert index.ids == ["b", "c", "d"] and len(index.scores("apple")) == 3
    hits = index.search(["apple strudel"], 4)
    assert "a" not in hits.ids[0] and "n" not in hits.ids[0] and index.builds == 1


def test_compaction_scores_exactly_as_a_fresh_index_and_replays_what_came_meanwhile(monkeypatch):
    index = LexicalIndex(["a", "b", "c", "d"], DOCS, stem=False)
    index.scores("apple")
    index.add(["n"], ["apple strudel"])
    build = index._build

    def busy(ids, texts):  # while the base is rebuilt, the catalog changes
        built = build(ids, texts)
        index.add(["m"], ["red apple tart"])
        index.remove(["b"])
        return built

    monkeypatch.setattr(index, "_build", busy)
    index.compact()
    monkeypatch.undo()
    assert index.ids == ["a", "c", "d", "n", "m"]
    assert index.search(["red apple tart"], 1).ids[0][0] in ("m", "c")
    assert "b" not in index.search(["green apple"], 5).ids[0]
    index.compact()
    for query in ["apple", "red apple tart", "strudel", "cheese"]:
        np.testing.assert_allclose(index.scores(query), _fresh(index).scores(query), rtol=1e-6)


def test_a_long_tail_is_compacted_in_the_background(monkeypatch):
    import time

    import shoplm.search.lexical as lexical

    monkeypatch.setattr(lexical, "COMPACT_MIN", 3)
    index = LexicalIndex(["a", "b", "c", "d"], DOCS, stem=False)
    index.scores("apple")
    for i in range(5):
        index.add([f"n{i}"], [f"garden hose {i}"])
    deadline = time.monotonic() + 20
    while (index.builds < 2 or index._log is not None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert index.builds >= 2 and len(index._tail) <= 3
    index.compact()
    np.testing.assert_allclose(index.scores("garden hose"), _fresh(index).scores("garden hose"), rtol=1e-6)


def test_a_saved_index_holds_exactly_the_current_items(tmp_path):
    index = LexicalIndex(["a", "b", "c", "d"], DOCS, stem=False)
    index.scores("apple")
    index.add(["n"], ["apple strudel"])
    index.remove(["c"])
    index.save(tmp_path / "lex")
    loaded = LexicalIndex.load(tmp_path / "lex")
    assert loaded.ids == index.ids
    np.testing.assert_allclose(loaded.scores("apple strudel"), _fresh(index).scores("apple strudel"), rtol=1e-6)
    loaded.add(["x"], ["apple crumble"])  # the lengths came back with it: the tail is scored as before
    assert loaded.search(["crumble"], 1).ids[0][0] == "x" and loaded.builds == 0


def test_the_speller_words_are_kept_in_step_with_adds_changes_and_removals():
    from shoplm.search.spelling import Speller

    index = LexicalIndex([f"d{i}" for i in range(len(DOCS))], DOCS, stem=False)
    speller = Speller(index)
    counts = index.surface_words()[0]  # counted once here; every change below only adjusts the counts
    index.add(["n", "d1"], ["Cordless Zanzibar blower", "green apple crumble"])  # a new item and a changed one
    assert speller.correct("zanzibr blower") == "zanzibar blower"
    assert index.surface_words()[0] is counts and counts["crumble"] == 1 and counts["green"] == 1
    index.remove(["d0"])
    fresh = LexicalIndex(list(index.ids), list(index.texts), stem=False)
    assert index.surface_words()[0] == fresh.surface_words()[0]
    assert sorted(index.surface_words()[1]) == sorted(fresh.surface_words()[1])
