"""The re-ranker: its features by hand, the candidate union, that LambdaMART learns a signal
and round-trips through its files, and that the pipeline, the training command and the
evaluation use it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from shoplm.lm.encoder import CROSS_DIR, RERANKER_DIR, model_fingerprint
from shoplm.errors import IndexMismatch
from shoplm.search.index import ItemFilter
from shoplm.search.lexical import LexicalIndex
from shoplm.metrics import ranking_metrics
from shoplm.search.rerank import FEATURES, Reranker, candidate_rows, features, labels, load_reranker
from tests.search.conftest import evaluation_order

F = {name: i for i, name in enumerate(FEATURES)}


def test_features_by_hand():
    titles = ["Simpson Strong-Tie 12-Gauge Angle Bracket", "Everbilt 8 in. Shelf Bracket", "Behr Deck Stain 1 gal."]
    lexical = LexicalIndex(["b1", "b2", "p1"], titles)
    query = lexical.tokenize(["12-gauge angle brakcet"])[0]
    x = features(query, lexical.terms([0, 1, 2]), np.array([5.0, 1.0, 0.0]), np.array([0.8, 0.6, 0.1]),
                 lexical.document_frequency(), len(lexical))
    assert x.shape == (3, len(FEATURES))
    assert list(x[:, F["bm25_gap"]]) == [0.0, -4.0, -5.0] and list(x[:, F["dense_rank"]]) == [0, 1, 2]
    # query terms: "12", "gaug", "angl", "brakcet" (misspelt: not in the catalog)
    assert x[0, F["query_terms"]] == 4 and x[0, F["known_term_share"]] == 0.75
    assert x[0, F["term_share"]] == 0.75 and x[1, F["term_share"]] == 0.0
    assert x[0, F["head_match"]] == 1.0 and x[2, F["head_match"]] == 0.0  # "angl" is among b1's last two terms
    assert x[0, F["query_numbers"]] == 1 and x[0, F["numbers_matched"]] == 1 and x[1, F["numbers_matched"]] == 0
    assert list(x[:, F["title_terms"]]) == [len(t) for t in lexical.terms([0, 1, 2])]
    idf = {t: np.log(1 + (3 - df + 0.5) / (df + 0.5)) for t, df in {"12": 1, "gaug": 1, "angl": 1, "brakcet": 0}.items()}
    assert x[0, F["idf_share"]] == pytest.approx((idf["12"] + idf["gaug"] + idf["angl"]) / sum(idf.values()))
    assert x[0, F["max_idf"]] == pytest.approx(idf["brakcet"])  # unknown terms are the rarest
    assert x[0, F["bigrams_matched"]] == 2  # "12 gaug", "gaug angl"; "angl brakcet" is not in the title
    first = lexical.terms([0])[0].index("12")
    assert x[0, F["first_match"]] == pytest.approx(first / len(lexical.terms([0])[0])) and x[1, F["first_match"]] == 1.0
    # "brakcet" ~ "bracket" (rapidfuzz ratio 86): b1 fuzzily has all four terms, b2 one, p1 none
    assert list(x[:, F["fuzzy_term_share"]]) == [1.0, 0.25, 0.0]
    assert x[0, F["partial_ratio"]] > x[1, F["partial_ratio"]] > x[2, F["partial_ratio"]] and x[:, F["partial_ratio"]].max() <= 1


def test_compounds_match_run_together_terms():
    lexical = LexicalIndex(["k", "d"], ["Brass Doorknob Set", "Door Knob Plate"])
    for query, expected in (("door knob", [1, 0]), ("doorknob", [0, 1]), ("door hinge", [0, 0])):
        x = features(lexical.tokenize([query])[0], lexical.terms([0, 1]), np.zeros(2), np.zeros(2),
                     lexical.document_frequency(), len(lexical))
        assert list(x[:, F["compounds_matched"]]) == expected, query


def test_spelling_correction_against_the_catalog():
    lexical = LexicalIndex(["b1", "s1", "m1"], ["Angle Bracket", "Deck Stain", "Milwaukee M18 Drill"])

    def fixed(query):
        return lexical.corrected(lexical.tokenize([query])[0])

    assert fixed("angle brakcet") == ["angl", "bracket"]
    assert fixed("angle bracket") is None  # nothing unknown: nothing to correct
    assert fixed("deckstain") == ["deck", "stain"]  # run together: split into two catalog terms
    assert fixed("m19 drill") is None  # model numbers are left alone
    assert fixed("qwxz") is None  # nothing close
    assert lexical.scores("brakcet").max() == 0 and lexical.corrected_scores("brakcet").argmax() == 0
    assert lexical.corrected_scores("bracket") is None
    lexical.add(["h1"], ["Claw Hammer"])  # the vocabulary follows the catalog
    assert fixed("hammr") == ["hammer"]
    lexical.remove(["h1"])
    assert fixed("hammr") is None


def test_document_frequency_follows_add_and_remove():
    lexical = LexicalIndex(["a", "b"], ["red drill", "red saw"])
    assert lexical.document_frequency()["red"] == 2
    lexical.add(["c"], ["blue drill drill"])
    assert lexical.document_frequency()["drill"] == 2 and lexical.document_frequency()["blue"] == 1
    lexical.remove(["a", "c"])
    df = lexical.document_frequency()
    assert df == LexicalIndex(["b"], ["red saw"]).document_frequency() and "blue" not in df


def test_candidates_are_the_union_of_both_top_lists():
    bm25 = np.array([0.0, 3.0, 0.0, 1.0, 0.5])
    dense = np.array([0.9, 0.1, 0.2, 0.3, 0.0])
    assert list(candidate_rows(bm25, dense, 2)) == [0, 1, 3]  # BM25: 1, 3; dense: 0, 3
    assert list(candidate_rows(np.zeros(5), dense, 2)) == [0, 3]  # no term matches: no lexical candidate
    corrected = np.array([0.0, 0.0, 2.0, 0.0, 0.0])
    assert list(candidate_rows(bm25, dense, 2, corrected)) == [0, 1, 2, 3]  # plus the spelling-corrected top


def test_labels_are_relevance_in_thirds():
    assert list(labels(np.array([0.0, 0.33, 0.67, 1.0, 1.33, 2.0]))) == [0, 1, 2, 3, 4, 6]


def _synthetic(n_queries: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Relevance follows term_share and head_match; the BM25 and dense columns are noise."""
    rng = np.random.default_rng(seed)
    groups, relevances = [], []
    for _ in range(n_queries):
        x = rng.random((30, len(FEATURES))).astype(np.float32)
        x[:, F["head_match"]] = rng.random(30) < 0.3
        relevances.append(np.where(x[:, F["head_match"]] > 0, 2.0 * (x[:, F["term_share"]] > 0.5), 0.0))
        groups.append(x)
    return groups, relevances


def _ndcg(ranker_scores, groups, relevances) -> float:
    runs = [[str(j) for j in np.argsort(-ranker_scores(x), kind="stable")] for x in groups]
    qrels = [{str(j): float(r) for j, r in enumerate(rel) if r > 0} for rel in relevances]
    return ranking_metrics(runs, qrels, ks=(10,), mrr_k=10)["ndcg@10"]


def test_reranker_learns_the_signal_and_round_trips(tmp_path):
    groups, relevances = _synthetic(300, 0)
    ranker = Reranker.fit(groups, relevances, seed=1, threads=1)
    test_groups, test_relevances = _synthetic(100, 1)
    learned = _ndcg(ranker.scores, test_groups, test_relevances)
    by_bm25 = _ndcg(lambda x: x[:, F["bm25"]], test_groups, test_relevances)
    assert learned > 0.95 and by_bm25 < 0.6
    ranker.save(tmp_path / "ranker")
    loaded = Reranker.load(tmp_path / "ranker")
    assert np.array_equal(loaded.scores(test_groups[0]), ranker.scores(test_groups[0]))
    assert Reranker.load(tmp_path / "none") is None
    meta = json.loads((tmp_path / "ranker" / "ranker.json").read_text())
    (tmp_path / "ranker" / "ranker.json").write_text(json.dumps({**meta, "features": ["bm25"]}))
    with pytest.raises(IndexMismatch, match="shoplm train search"):
        Reranker.load(tmp_path / "ranker")


def test_fingerprint_leaves_the_reranker_and_cross_encoder_out(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    before = model_fingerprint(tmp_path)
    (tmp_path / RERANKER_DIR).mkdir()
    (tmp_path / RERANKER_DIR / "ranker.json").write_text("{}")
    (tmp_path / RERANKER_DIR / "ranker.txt").write_text("tree")
    (tmp_path / CROSS_DIR).mkdir()
    (tmp_path / CROSS_DIR / "config.json").write_text('{"num_labels": 1}')
    (tmp_path / CROSS_DIR / "model.safetensors").write_text("weights")
    assert model_fingerprint(tmp_path) == before
    (tmp_path / "config.json").write_text('{"changed": 1}')
    assert model_fingerprint(tmp_path) != before


@pytest.fixture
def reranked(items, settings, tmp_path):
    """The pipeline over the tiny catalog with a re-ranker that trusts term matches only."""
    from shoplm.search.pipeline import SearchPipeline, build_indexes

    build_indexes(items, settings, tmp_path / "index")
    pipeline = SearchPipeline.open(tmp_path / "index", settings)
    groups, relevances = _synthetic(300, 2)
    pipeline.ranker = Reranker.fit(groups, relevances, seed=1, threads=1)
    pipeline.lexical.terms(())
    return pipeline


def test_pipeline_orders_by_the_reranker_and_keeps_the_contract(reranked, items):
    from shoplm.data.records import Item

    queries = ["angle bracket galvanized", "motion sensor light", "drill", "angle brakcet"]
    hits = reranked.search(queries, k=14)
    # the service's order is the evaluation's (`rerank_all` over whole-catalog arrays), which a plain fusion is not
    expected = evaluation_order(reranked, queries, 14)
    for i in range(len(queries)):  # the same score for every item (ties may sit in either order)
        served, evaluated = dict(zip(hits.ids[i], hits.scores[i])), dict(zip(expected.ids[i], expected.scores[i]))
        assert served.keys() == evaluated.keys() and all(np.isclose(served[x], evaluated[x]) for x in served)
    assert np.all(np.diff(hits.scores, axis=1) <= 0)
    reranked.ranker = None
    assert reranked.search(queries, k=14).ids.tolist() != hits.ids.tolist()
    flt = ItemFilter(category="Tools > Power Tools", min_price=50, max_price=130)
    matching = {i.item_id for i in items if i.category.startswith("Tools > Power Tools") and 50 <= i.price <= 130}
    assert set(reranked.search(["paint"], k=4, filter=flt).ids[0]) == matching
    reranked.ranker = Reranker.fit(*_synthetic(300, 2), seed=1, threads=1)
    new = Item(item_id="new1", title="Ryobi 40V cordless leaf blower", category="Outdoor", brand="Ryobi", price=149.0)
    reranked.add([new])
    assert reranked.search(["ryobi cordless leaf blower"], k=5).ids[0][0] == "new1"
    reranked.remove(["new1"])
    assert "new1" not in reranked.search(["ryobi cordless leaf blower"], k=15).ids[0]


def test_train_search_writes_a_reranker_that_eval_uses(catalog_files, tmp_path, monkeypatch):
    """Below RANKER_MIN_QUERIES no re-ranker is trained; with the floor lowered the tiny set gets
    one, `eval search` reports hybrid_ft as its ranking and hybrid_ft_fusion beside it, and the
    catalog vectors encoded for it are in the cache, so the evaluation encodes no item again."""
    import shoplm.search.train
    from shoplm.cli import app

    items_path, judgments_path = catalog_files
    for name, value in {"SEARCH_BATCH_SIZE": "4", "SEARCH_EPOCHS": "1", "SEARCH_DEV_FRACTION": "0.4",
                        "SEARCH_RANKER_FRACTION": "0.5", "ENCODER_BF16": "false", "TORCH_THREADS": "1",
                        "SEARCH_CROSS_STEPS": "2", "SEARCH_CROSS_DEPTH": "40",
                        "EMBEDDING_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(f"SHOPLM_{name}", value)
    runner = CliRunner()
    args = ["train", "search", "--items", str(items_path), "--judgments", str(judgments_path), "--seed", "1"]
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "plain")]).exit_code == 0
    assert not (tmp_path / "plain" / RERANKER_DIR).exists() and not (tmp_path / "plain" / CROSS_DIR).exists()
    monkeypatch.setattr(shoplm.search.train, "RANKER_MIN_QUERIES", 1)
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    assert "re-ranker:" in result.output
    ranker = load_reranker(tmp_path / "model")  # with the cross-encoder trained beside it
    assert ranker.cross is not None and ranker.cross_depth == 40

    import shoplm.lm.encoder

    encoded = []
    original, original_tokens = shoplm.lm.encoder.Encoder.encode, shoplm.lm.encoder.Encoder.encode_tokens
    monkeypatch.setattr(shoplm.lm.encoder.Encoder, "encode",
                        lambda self, texts, **kw: encoded.append((self.path, len(texts))) or original(self, texts, **kw))
    monkeypatch.setattr(shoplm.lm.encoder.Encoder, "encode_tokens", lambda self, texts, **kw:
                        encoded.append((self.path, len(texts))) or original_tokens(self, texts, **kw))
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", "search", "--items", str(items_path), "--judgments", str(judgments_path),
                                 "--model", str(tmp_path / "model"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    models = json.loads(out.read_text())["models"]
    assert list(models) == ["bm25", "dense", "hybrid", "dense_ft", "hybrid_ft_fusion", "hybrid_ft"]
    assert all(0 <= v <= 1 for m in models.values() for v in m.values())
    fine_tuned = [n for path, n in encoded if Path(path) == tmp_path / "model"]
    # its queries only: training cached its 14 item vectors and their token vectors
    assert fine_tuned and max(fine_tuned) < 14
    assert max(n for path, n in encoded if Path(path) != tmp_path / "model") == 14  # the base model's catalog


def test_pipeline_candidates_include_the_spelling_corrected_matches(reranked, monkeypatch):
    """With the dense side silenced, a query whose only term is misspelt finds nothing by plain
    BM25; its correction brings the catalog's brackets in as candidates, filters still hold."""
    from shoplm.search.index import Hits

    def no_dense(q, depth, *args):
        return Hits(np.full((len(q), depth), "", dtype=object), np.full((len(q), depth), -np.inf, dtype=np.float32))

    monkeypatch.setattr(reranked.vectors, "search", no_dense)
    monkeypatch.setattr(reranked.vectors, "search_rows", no_dense)
    brackets = {i for i, t in zip(reranked.lexical.ids, reranked.lexical.texts) if "bracket" in t.lower()}
    assert brackets and reranked.lexical.scores("brakcets").max() == 0
    found = {x for x in reranked.search(["brakcets"], k=10).ids[0] if x}
    assert found == brackets
    assert not any(reranked.search(["brakcets"], k=10, filter=ItemFilter(category="Paint")).ids[0])


def test_a_reranked_page_encodes_its_query_once(reranked, monkeypatch):
    """The ranking's token vectors and the result set's vector come from one encoder pass."""
    calls = []
    encode_tokens = type(reranked.encoder).encode_tokens
    monkeypatch.setattr(type(reranked.encoder), "encode_tokens",
                        lambda self, texts, **kw: calls.append(list(texts)) or encode_tokens(self, texts, **kw))
    monkeypatch.setattr(type(reranked.encoder), "encode_query", lambda self, text: pytest.fail("a second pass"))
    hits = reranked.search(["cordless drill"], k=5)
    matches = reranked.matches("cordless drill", 0.3, 20)
    reranked.search(["cordless drill"], k=5)
    assert calls.count(["cordless drill"]) == 1 and hits.ids[0][0]  # (the others: the items' tokens, on first use)
    np.testing.assert_array_equal(matches.query, reranked.query_vector("cordless drill"))
