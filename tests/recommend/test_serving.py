"""The serving form of the user model (shoplm/recommend/serving.py) scores a history as the
torch module does, on every configuration the module has."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shoplm.recommend import model as model_module
from shoplm.recommend.model import UserModel, UserModelConfig, pad_left
from shoplm.recommend.serving import ServingModel
from tests.recommend.test_sparse_paths import random_cooc, seen_mask, unit_vectors

N = 40


def trained_like(seed: int = 0, **kw) -> UserModel:
    """A model away from its start in every term (random weights, biases, lags, scales)."""
    torch.manual_seed(seed)
    cfg = UserModelConfig(**{"n_items": N, "text_dim": 16, "dim": 32, "n_layers": 2, "n_heads": 2, "n_experts": 2,
                             "max_len": 12, "dropout": 0.3, "text_lags": 3, "new_item_neighbours": 4, **kw})
    model = UserModel(cfg, unit_vectors(N, seed=seed) if cfg.use_text else None, seen_mask(N, seed=seed))
    model.set_cooccurrence(random_cooc(N, density=0.1, seed=seed))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        model.history_scale.fill_(0.7)
        model.cooc_scale.fill_(3.0)
        model.new_item_shift.fill_(-0.4)
        model.id_weight.mul_(torch.rand_like(model.id_weight))  # partly ID-less seen items
    return model.eval()


def histories(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # one item (a visitor's first event), repeats, and longer than max_len (the last 12 are read)
    return [np.array([3]), np.array([5, 5]), rng.integers(0, N, 7), rng.integers(0, N, 30), np.arange(N)[::-3]]


def assert_same(model: UserModel, form: ServingModel) -> None:
    for history in histories():
        with torch.no_grad():
            want = model.scores(pad_left([history], model.cfg.max_len, model.pad))[0].numpy()
        got = form.scores(history)
        assert got.shape == (N,) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("kw", [
    {},
    {"encoder": "gru"},
    {"logits": "dot"},
    {"new_item_neighbours": 0},
    {"use_text": False, "text_path": False, "history_bias": False, "cooc_path": False},  # SASRec
    {"n_layers": 1, "n_heads": 4},
])
def test_serving_form_scores_as_the_module(kw):
    model = trained_like(**kw)
    form = ServingModel(model)
    assert not model.training  # the export leaves the module as it found it (dropout off)
    assert_same(model, form)


def test_serving_form_above_the_text_cache(monkeypatch):
    """Above SIM_CACHE_ITEMS the direct text path multiplies by the texts, as the module does."""
    monkeypatch.setattr(model_module, "SIM_CACHE_ITEMS", N // 2)
    model = trained_like(seed=3)
    form = ServingModel(model)
    assert model.text_similarity() is None and form.text_sim is None and form.item_text is not None
    assert_same(model, form)


def test_engine_scores_through_the_serving_form(tmp_path):
    """A saved model loaded by the engine's scorer on the CPU uses the serving form, whose
    scores are the module's."""
    from shoplm.engine.scoring import UserModelScorer
    from shoplm.recommend.checkpoint import save_model

    model = trained_like(seed=5)
    ids = [f"i{i}" for i in range(N)]
    save_model(model, ids, tmp_path / "model", {})
    scorer = UserModelScorer(tmp_path / "model", "cpu")
    assert scorer.serving is not None
    rows = np.arange(N)[::-1].copy()  # model item i sits at row N - 1 - i
    history = [("i4", 1.0), ("nope", 1.0), ("i9", 1.0)]  # an item the model does not know is skipped
    got = scorer.scores(history, rows, N + 2)
    with torch.no_grad():
        want = scorer.model.scores(pad_left([np.array([4, 9])], 12, N))[0].numpy()
    np.testing.assert_allclose(got[rows], want, atol=1e-4)
    assert np.isnan(got[N:]).all()  # rows the model does not know
