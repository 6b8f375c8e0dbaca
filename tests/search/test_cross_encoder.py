"""The cross-encoder: which candidates it reads, that it learns the softmax objective and
round-trips through its directory, and that the re-ranker, the pipeline and the model
directory carry it consistently."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shoplm.search.cross_encoder import CROSS_DIR, CrossConfig, CrossEncoder, cross_rows, train_cross_encoder
from shoplm.lm.encoder import RERANKER_DIR, default_model_dir
from shoplm.errors import IndexMismatch
from shoplm.search.rerank import CROSS, FEATURES, Reranker, add_cross, load_reranker

from tests.search.conftest import CATALOG, evaluation_order

F = {name: i for i, name in enumerate(FEATURES)}
TEXTS = {i: t for i, t, *_ in CATALOG}
# each query names one item; the rest of the catalog are its negatives
POSITIVES = [("cordless drill batteries", "d1"), ("hammer drill corded", "d2"), ("drill attachment", "d3"),
             ("circular saw", "s1"), ("hand saw wood", "s2"), ("claw hammer", "h1"), ("house paint", "p1"),
             ("deck stain", "p2"), ("paint roller", "p3"), ("angle bracket", "b1"), ("shelf bracket", "b2"),
             ("light bulb", "l1"), ("motion sensor light", "l2"), ("compact driver kit", "d4")]
NEGATIVES = {q: [i for i in TEXTS if i != item] for q, item in POSITIVES}


def test_cross_rows_are_the_fused_top():
    bm25_rank = np.array([0, 1, 2, 3, 4, 5])
    dense_rank = np.array([5, 0, 4, 1, 3, 2])
    # 1/(60 + bm25 rank) + 1/(60 + dense rank): candidate 1 (ranks 1, 0) .03306, 3 (3, 1) .03227, 0 (0, 5) .03205
    assert cross_rows(bm25_rank, dense_rank, 3).tolist() == [1, 3, 0]
    assert len(cross_rows(bm25_rank, dense_rank, 10)) == 6


class _ByLength:
    def scores(self, query, texts):
        return np.array([len(t) for t in texts], dtype=np.float32)


class _Parity:
    def scores(self, query, texts):
        return np.array([len(t) % 2 for t in texts], dtype=np.float32)


def test_add_cross_fills_only_the_candidates_it_reads():
    x = np.zeros((5, len(FEATURES)), dtype=np.float32)
    x[:, CROSS] = np.nan
    x[:, F["bm25_rank"]] = [4, 3, 2, 1, 0]
    x[:, F["dense_rank"]] = [4, 3, 2, 1, 0]
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    add_cross(x, _ByLength(), "q", texts.__getitem__, 2)
    assert x[3, CROSS] == 4 and x[4, CROSS] == 5 and np.isnan(x[:3, CROSS]).all()
    untouched = np.full((5, len(FEATURES)), np.nan, dtype=np.float32)
    assert np.isnan(add_cross(untouched.copy(), None, "q", texts.__getitem__, 2)[:, CROSS]).all()
    assert np.isnan(add_cross(untouched.copy(), _ByLength(), "q", texts.__getitem__, 0)[:, CROSS]).all()


def _top1(encoder: CrossEncoder) -> int:
    """Queries whose own item the encoder scores above the whole rest of the catalog."""
    ids = list(TEXTS)
    return sum(ids[int(np.argmax(encoder.scores(q, [TEXTS[i] for i in ids])))] == item for q, item in POSITIVES)


def test_cross_encoder_learns_the_softmax_objective_and_round_trips(tmp_path):
    base = default_model_dir()
    untrained = train_cross_encoder(base, TEXTS, POSITIVES, NEGATIVES, CrossConfig(steps=0, seed=3))
    trained = train_cross_encoder(base, TEXTS, POSITIVES, NEGATIVES,
                                  CrossConfig(steps=60, batch_size=7, group=4, lr=1e-4, seed=3))
    before, after = _top1(untrained), _top1(trained)
    assert after >= 12 and after > before + 4, (before, after)
    trained.save(tmp_path / CROSS_DIR)
    loaded = CrossEncoder.load(tmp_path / CROSS_DIR)
    texts = list(TEXTS.values())
    assert np.allclose(loaded.scores("angle bracket", texts), trained.scores("angle bracket", texts), atol=1e-5)
    assert CrossEncoder.load(tmp_path / "none") is None
    (tmp_path / CROSS_DIR / "head.safetensors").unlink()  # as an older shoplm saved it: a [CLS] head inside the body
    with pytest.raises(IndexMismatch, match="retrain the model directory"):
        CrossEncoder.load(tmp_path / CROSS_DIR)


def test_the_head_reads_the_mean_of_the_pair_token_vectors():
    """The logit is the head over the mean of the pair's token vectors, padding left out: the
    vectors all-MiniLM-L6-v2 was trained to be read by (its [CLS] pooler was never trained)."""
    import torch

    encoder = train_cross_encoder(default_model_dir(), TEXTS, POSITIVES, NEGATIVES, CrossConfig(steps=0, seed=3))
    model, tok = encoder.model, encoder.tokenizer
    with torch.inference_mode():
        alone = tok(["angle bracket"], ["simpson strong-tie 2 in. angle"], return_tensors="pt")
        hidden = model.body(**alone).last_hidden_state[0]
        expected = model.head(hidden.mean(0)).item()
        padded = tok(["angle bracket", "a much longer query about a garden hose reel"],
                     ["simpson strong-tie 2 in. angle", "hose reel cart with wheels and a crank"], padding=True,
                     return_tensors="pt")
        assert np.isclose(model(**alone).item(), expected, atol=1e-5)
        assert np.isclose(model(**padded)[0].item(), expected, atol=1e-4)


def test_length_sorted_chunks_give_the_one_batch_logits_in_input_order():
    """`read` pads each chunk of similar lengths only to its own longest; the logits are those of
    one padded batch, in the caller's order (a wrong un-sort would pass a shape check)."""
    import torch

    encoder = train_cross_encoder(default_model_dir(), TEXTS, POSITIVES, NEGATIVES, CrossConfig(steps=0, seed=3))
    queries = [q for q, _ in POSITIVES]
    texts = [TEXTS[i] for _, i in POSITIVES][::-1]  # mixed lengths, so sorting reorders
    with torch.inference_mode():
        one_batch = encoder._logits(queries, texts).numpy()
        chunked = encoder.read(queries, texts, chunk=3).numpy()
    assert np.allclose(chunked, one_batch, atol=1e-4)
    assert np.allclose(encoder.scores("angle bracket", texts), [encoder._logits(["angle bracket"], [t]).item() for t in texts],
                       atol=1e-4)
    assert encoder.read([], []).shape == (0,)


def test_training_records_its_steps_and_gives_the_fresh_head_its_own_rate():
    cfg = CrossConfig(steps=3, batch_size=2, group=3, lr=0.0, head_lr=1e-2, seed=3)
    untrained = train_cross_encoder(default_model_dir(), TEXTS, POSITIVES, NEGATIVES, CrossConfig(steps=0, seed=3))
    trained = train_cross_encoder(default_model_dir(), TEXTS, POSITIVES, NEGATIVES, cfg)
    assert trained.trained_steps == 3 and untrained.trained_steps == 0
    before, after = dict(untrained.model.named_parameters()), dict(trained.model.named_parameters())
    assert not np.allclose(after["head.weight"].detach(), before["head.weight"].detach())
    body = [name for name in after if not name.startswith("head.")]
    assert len(body) > 90 and all(name.startswith("body.") for name in body)
    assert all(np.array_equal(after[n].detach(), before[n].detach()) for n in body)  # body rate 0: untouched


def test_model_directory_carries_the_cross_encoder_its_ranker_expects(tmp_path):
    rng = np.random.default_rng(0)
    groups = [rng.random((20, len(FEATURES))).astype(np.float32) for _ in range(40)]
    relevances = [(g[:, CROSS] > 0.7) * 2.0 for g in groups]
    Reranker.fit(groups, relevances, seed=1, threads=1, cross_depth=20).save(tmp_path / RERANKER_DIR)
    with pytest.raises(IndexMismatch, match="retrain it with `shoplm train search`"):
        load_reranker(tmp_path)
    assert load_reranker(tmp_path, use_cross=False).cross is None  # served without it: the column stays missing
    train_cross_encoder(default_model_dir(), TEXTS, POSITIVES, NEGATIVES, CrossConfig(steps=0)).save(tmp_path / CROSS_DIR)
    ranker = load_reranker(tmp_path)
    assert ranker.cross is not None and ranker.cross_depth == 20
    assert json.loads((tmp_path / RERANKER_DIR / "ranker.json").read_text())["cross_depth"] == 20


def test_pipeline_reads_the_cross_encoder_as_the_evaluation_does(items, settings, tmp_path):
    """`shoplm search` and `rerank_all` (the evaluation) fill the cross column the same way."""
    from shoplm.search.pipeline import SearchPipeline, build_indexes

    build_indexes(items, settings, tmp_path / "index")
    reranked = SearchPipeline.open(tmp_path / "index", settings)

    rng = np.random.default_rng(4)
    groups = [rng.random((30, len(FEATURES))).astype(np.float32) for _ in range(300)]
    relevances = [2.0 * (g[:, CROSS] > 0.5) for g in groups]  # the ranker trusts the cross column alone
    reranked.ranker = Reranker.fit(groups, relevances, seed=1, threads=1, cross_depth=6)
    reranked.ranker.cross = _Parity()
    queries = ["angle bracket galvanized", "cordless drill", "paint"]
    hits = reranked.search(queries, k=14)
    expected = evaluation_order(reranked, queries, 14)
    for i in range(len(queries)):
        served, evaluated = dict(zip(hits.ids[i], hits.scores[i])), dict(zip(expected.ids[i], expected.scores[i]))
        assert served.keys() == evaluated.keys() and all(np.isclose(served[x], evaluated[x]) for x in served)
    reranked.ranker.cross = None  # the same ranker without the cross-encoder's scores orders differently
    assert reranked.search(queries, k=14).scores.tolist() != hits.scores.tolist()
