"""The co-occurrence path, its spread to new items and the text neighbours are kept sparse
(no (n x n) matrix), so they stay on at any catalog size: they give the dense formulas'
scores and gradients on a small catalog, and every path is on above SIM_CACHE_ITEMS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import sparse
from torch.nn import functional as F

from shoplm.recommend import model as model_module
from shoplm.recommend import neighbours as neighbours_module
from shoplm.recommend.cooccurrence import co_occurrence, csr_tensors
from shoplm.recommend.model import UserModel, UserModelConfig, pad_left
from shoplm.recommend.neighbours import borrowed, text_neighbours
from shoplm.recommend.recommender import FitData
from shoplm.recommend.sequences import Cases, Histories, Sequences
from shoplm.recommend.train import TrainConfig, TrainedUserModel, cross_fitted_cooccurrence, model_config


# --- the dense formulas the sparse paths replace (the model before them) ---
def dense_neighbours(item_text, seen, k, pad):
    similarity = item_text @ item_text[:-1].T  # (n + 1, n)
    n = similarity.shape[1]
    similarity = similarity[:-1].masked_fill(seen[:-1] == 0, -torch.inf)
    similarity = similarity.masked_fill(torch.eye(n, dtype=torch.bool), -torch.inf)
    top, index = similarity.topk(min(k, n - 1), dim=1)
    w = top.clamp_min(0).nan_to_num(0.0, posinf=0.0, neginf=0.0)
    return F.pad(index, (0, 0, 0, 1), value=pad), F.pad(w, (0, 0, 0, 1))


def dense_cooc(csr, n):
    indptr, indices, values = csr
    dense = torch.zeros(n + 1, n)  # the pad row zero
    dense[torch.repeat_interleave(torch.arange(n), indptr.diff()), indices] = values
    return dense


def dense_spread(matrix, neighbours):
    index, w = neighbours[0][:-1], neighbours[1][:-1]
    w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-9)
    n = matrix.shape[1]
    dense = torch.zeros(n, n).scatter_add_(1, index.clamp_max(n - 1), w)  # an empty slot (the pad) has weight 0
    return matrix @ dense.T  # (n + 1, n)


def dense_logits(model, history, rows, cols, id_keep=None, csr=None):
    """model.logits with the co-occurrence path computed densely, as before."""
    model.cfg.cooc_path = False
    try:
        out = model.logits(history, rows, cols, id_keep)
    finally:
        model.cfg.cooc_path = True
    keep = model.id_keep_weights(id_keep)
    matrix = dense_cooc(model.cooccurrence() if csr is None else csr, model.cfg.n_items)
    lags, weights = model._lags(history, rows, cols, model.cooc_lags)
    scores = torch.einsum("pk,pkn->pn", weights, matrix[lags]) * keep[:-1]
    neighbours = model.text_neighbours()
    if neighbours is not None:
        scores = scores + torch.einsum("pk,pkn->pn", weights, dense_spread(matrix, neighbours)[lags]) * (1 - keep[:-1])
    return out + model.cooc_scale * scores


def unit_vectors(n, d=16, seed=0):
    return F.normalize(torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)), dim=1)


def random_cooc(n, density=0.05, seed=0):
    c = sparse.random(n, n, density=density, random_state=seed, format="csr", dtype=np.float32)
    c = (c + c.T).tocsr()
    c.setdiag(0)
    c.eliminate_zeros()
    return c


def random_model(n, seen, neighbours=4, seed=0):
    torch.manual_seed(seed)
    cfg = UserModelConfig(n_items=n, text_dim=16, dim=32, n_layers=1, n_heads=2, n_experts=2, max_len=10,
                          dropout=0.0, text_lags=3, new_item_neighbours=neighbours)
    model = UserModel(cfg, unit_vectors(n, seed=seed), seen)
    model.set_cooccurrence(random_cooc(n, seed=seed))
    with torch.no_grad():  # away from the start, so that every term and its gradient matter
        model.cooc_lags.normal_()
        model.text_lags.normal_()
        model.item_bias.normal_()
        model.cooc_scale.fill_(3.0)
    return model


def positions(n, pad, seed=0, batch=16):
    rng = np.random.default_rng(seed)
    history = pad_left([rng.integers(0, n, rng.integers(1, 10)) for _ in range(batch)], 10, pad)
    rows, cols = torch.nonzero(history != pad, as_tuple=True)
    return history, rows, cols


def seen_mask(n, share=0.8, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random(n) < share)


def test_neighbours_are_those_of_the_full_similarity(monkeypatch):
    n = 90
    text, seen = unit_vectors(n), seen_mask(n)
    item_text, seen_f = F.pad(text, (0, 0, 0, 1)), F.pad(seen.float(), (0, 1))
    expected = dense_neighbours(item_text, seen_f, 5, n)
    monkeypatch.setattr(neighbours_module, "CHUNK_CELLS", 7 * 70)  # several chunks of rows
    index, weight = text_neighbours(item_text, seen_f, 5, n)
    assert torch.equal(index, expected[0])
    assert torch.allclose(weight, expected[1], atol=1e-6)
    assert index[-1].tolist() == [n] * 5 and weight[-1].tolist() == [0.0] * 5  # the pad
    assert not (index[:-1] == torch.arange(n)[:, None]).any()  # never itself
    assert seen[index[:-1]].all()  # seen items only
    # fewer seen items than neighbours: the empty slots lend nothing, as before
    few = torch.zeros(n + 1)
    few[[3, 10, 42]] = 1.0
    got, want = text_neighbours(item_text, few, 5, n), dense_neighbours(item_text, few, 5, n)
    assert torch.allclose(got[1], want[1], atol=1e-6)
    assert (got[1][:, 3:] == 0).all() and (got[0][:, 3:] == n).all()
    values = torch.from_numpy(np.random.default_rng(1).normal(size=(n + 1, 4)).astype(np.float32))
    assert torch.allclose(borrowed(values, few, got), borrowed(values, few, want), atol=1e-5)


def test_approximate_neighbours_match_the_exact_ones(monkeypatch):
    """Above EXACT_NEIGHBOUR_ITEMS a FAISS inverted file finds the neighbours: (nearly) the
    exact ones, never the item itself, never an unseen item, best first."""
    n = 2000  # 1,800 seen items in 46 lists, 16 of them searched
    rng = np.random.default_rng(3)
    lines = torch.from_numpy(rng.normal(size=(100, 32)).astype(np.float32))  # product lines of ~20 items
    text = F.normalize(F.normalize(lines, dim=1)[rng.integers(0, 100, n)] + 0.1 * unit_vectors(n, d=32, seed=3), dim=1)
    seen = seen_mask(n, 0.9, seed=3)
    item_text, seen_f = F.pad(text, (0, 0, 0, 1)), F.pad(seen.float(), (0, 1))
    exact = text_neighbours(item_text, seen_f, 10, n)
    approx = text_neighbours(item_text, seen_f, 10, n, exact_max_items=0)
    assert approx[0].shape == exact[0].shape == (n + 1, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx[0][:-1].tolist(), exact[0][:-1].tolist())])
    assert 0.95 < recall < 1.0, recall  # approximate, and close
    assert not (approx[0][:-1] == torch.arange(n)[:, None]).any()
    assert seen[approx[0][:-1]].all()
    assert approx[0][-1].eq(n).all() and approx[1][-1].eq(0).all()
    cos = (item_text[:-1, None, :] * item_text[approx[0][:-1]]).sum(-1).clamp_min(0)  # (n, K) the weights are cosines
    assert torch.allclose(approx[1][:-1], cos, atol=1e-5)
    assert (approx[1][:-1].diff(dim=1) <= 1e-6).all()  # best first


@pytest.mark.parametrize("scoring", [False, True])
def test_sparse_logits_and_gradients_equal_the_dense_ones(scoring):
    """Training (a 0/1 ID draw and a cross-fitted C) and scoring (fractional ID weights, the
    model's own C): the logits and every gradient as with the dense (n + 1, n) matrices."""
    n = 150
    model = random_model(n, seen_mask(n))
    history, rows, cols = positions(n, model.pad)
    if scoring:
        model.set_id_weight(torch.rand(n + 1), 0.75)
        id_keep, csr = None, None
    else:
        id_keep = (torch.rand(n + 1) > 0.4).float()
        csr = csr_tensors(random_cooc(n, seed=7))  # as a cross-fitting fold's C
    model.train()
    got = model.logits(history, rows, cols, id_keep, csr)
    want = dense_logits(model, history, rows, cols, id_keep, csr)
    assert got.shape == (len(rows), n)
    assert torch.allclose(got, want, atol=1e-5)
    # the paths matter in this test: C moves kept items' scores, its spread C' ID-less ones'
    keep = model.id_keep_weights(id_keep)
    lags, weights = model._lags(history, rows, cols, model.cooc_lags)
    csr_used = model.cooccurrence() if csr is None else csr
    cooc = model._cooc_scores(csr_used, lags, weights, keep)
    assert (cooc * keep[:-1] > 0).any() and (cooc * (1 - keep[:-1]) > 0).any()
    mix = torch.randn_like(got)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad((got * mix).sum(), params, allow_unused=True)
    dense_grads = torch.autograd.grad((want * mix).sum(), params, allow_unused=True)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    for name, g, d in zip(names, grads, dense_grads):
        assert (g is None) == (d is None), name
        if g is not None:
            assert torch.allclose(g, d, atol=1e-4, rtol=1e-4), name
    by_name = dict(zip(names, grads))
    assert by_name["cooc_lags"].abs().sum() > 0 and by_name["cooc_scale"].abs() > 0


def cycles(n, n_users=40, length=8, seed=0):
    rng = np.random.default_rng(seed)
    items = [(s + np.arange(length)) % n for s in rng.integers(0, n, n_users)]
    return Sequences([f"u{i}" for i in range(n_users)], [i.astype(np.int64) for i in items],
                     [np.ones(length, np.float32) for _ in items], [np.arange(length, dtype=np.float64) for _ in items])


def test_every_path_is_on_above_the_cache_size(monkeypatch):
    """A catalog above SIM_CACHE_ITEMS (and above EXACT_NEIGHBOUR_ITEMS, so FAISS): no text
    similarity cache, yet co-occurrence, its spread, the neighbours and borrowing are all on,
    the scores finite and those of the dense formulas, and the model trains."""
    n = 60
    monkeypatch.setattr(model_module, "SIM_CACHE_ITEMS", 20)
    monkeypatch.setattr(neighbours_module, "EXACT_NEIGHBOUR_ITEMS", 20)
    from shoplm.config import Settings

    assert model_config(Settings(), 10 * n, 384).cooc_path  # no size limit on the path
    seen = seen_mask(n, seed=1)
    model = random_model(n, seen, seed=1)
    assert model.text_similarity() is None
    index, weight = model.text_neighbours()
    assert index.shape == (n + 1, 4) and (weight[:-1] > 0).all() and seen[index[:-1]].all()
    assert model.spread_table() is not None
    assert model.borrowed(model.item_bias, model.seen) is not None
    history, rows, cols = positions(n, model.pad, seed=1)
    model.eval()
    with torch.no_grad():
        scores = model.scores(history)
        lags, weights = model._lags(history, rows, cols, model.cooc_lags)
        cooc = model._cooc_scores(model.cooccurrence(), lags, weights, model.id_weight)
        assert torch.isfinite(scores).all()
        assert (cooc[:, seen] > 0).any() and (cooc[:, ~seen] > 0).any()  # C on seen items, C' on new ones
        want = dense_logits(model, history, rows, cols)
        assert torch.allclose(model.logits(history, rows, cols), want, atol=1e-5)
        # the direct text path multiplies by the texts instead of reading the cache
        text = model._recent_text_scores(history, rows, cols)
        monkeypatch.setattr(model_module, "SIM_CACHE_ITEMS", 10 * n)
        assert model.text_similarity() is not None
        assert torch.allclose(text, model._recent_text_scores(history, rows, cols), atol=1e-5)
    monkeypatch.setattr(model_module, "SIM_CACHE_ITEMS", 20)
    model._text_sim = None
    # training: cross-fitted C as CSR arrays, a few epochs on the +1 cycle
    train = cycles(n)
    folds = cross_fitted_cooccurrence(model, train, np.arange(len(train)) % 2, "cpu")
    assert all(len(f) == 3 and f[0].shape == (n + 1,) for f in folds)
    cases = Cases(train.actors, Histories([s[:-1] for s in train.items], [w[:-1] for w in train.weights]),
                  np.array([s[-1] for s in train.items]))
    text = unit_vectors(n, seed=2).numpy()
    rec = TrainedUserModel("shoplm", lambda n_items, d: UserModelConfig(
        n_items=n_items, text_dim=d, dim=16, n_layers=1, n_heads=2, n_experts=2, max_len=10, text_lags=3,
        new_item_neighbours=3), TrainConfig(epochs=2, batch_size=16, lr=1e-2, new_item_exposure=0.0), "cpu")
    rec.fit(FitData(train, cases, text))
    assert rec.model.cooc_values.numel() > 0 and rec.model.text_similarity() is None
    assert rec.model.text_neighbours() is not None and len(rec.log) == 2
    out = rec.score(cases.histories)
    assert out.shape == (len(train), n) and np.isfinite(out).all()
    assert co_occurrence(train, n, 3).nnz == rec.model.cooc_values.numel()


def test_a_saved_model_keeps_its_neighbours(tmp_path, monkeypatch):
    """The neighbours are found once and saved with the model (a FAISS pass over a big
    catalog takes minutes); a state dict saved without them loads and finds them again."""
    from shoplm.recommend.checkpoint import load_model, save_model

    n = 50
    model = random_model(n, seen_mask(n, seed=4), seed=4).eval()
    history = pad_left([np.array([1, 2, 3]), np.array([7])], 10, model.pad)
    before = model.scores(history)
    found = model.text_neighbours()
    save_model(model, [f"i{i}" for i in range(n)], tmp_path / "m", {})

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")

    monkeypatch.setattr(model_module, "text_neighbours", no_search)
    loaded, _, _ = load_model(tmp_path / "m", "cpu")
    assert torch.equal(loaded.neighbour_index, found[0]) and torch.equal(loaded.neighbour_weight, found[1])
    assert torch.allclose(loaded.scores(history), before, atol=1e-6)
    monkeypatch.undo()
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("neighbour_")}
    again = UserModel(model.cfg)
    again.load_state_dict(old)
    assert again.neighbour_index.numel() == 0
    assert torch.allclose(again.eval().scores(history), before, atol=1e-6)
    assert torch.equal(again.neighbour_index, found[0])
