"""The shoplm model (and SASRec, the same module with text off): learns a deterministic
pattern in a few steps, saves and loads without pickle, treats unseen items by text only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shoplm.recommend.checkpoint import load_model, save_model
from shoplm.recommend.train import TrainConfig, TrainedUserModel, id_drop_rates, training_set
from shoplm.recommend.recommender import FitData
from shoplm.recommend.cooccurrence import co_occurrence
from shoplm.recommend.sequences import Cases, Histories, Sequences
from shoplm.recommend.model import UserModel, UserModelConfig, pad_left

N = 12


def cycles(n_users=24, length=8, seed=0):
    """Each user walks i, i+1, i+2, ... (mod N) from a random start: the next item is always +1."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, N, n_users)
    items = [(s + np.arange(length)) % N for s in starts]
    return Sequences([f"u{i}" for i in range(n_users)], [i.astype(np.int64) for i in items],
                     [np.ones(length, np.float32) for _ in items], [np.arange(length, dtype=np.float64) for _ in items])


def text_vectors(seed=1):
    vectors = np.random.default_rng(seed).normal(size=(N, 16)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def cases_of(train: Sequences) -> Cases:
    return Cases(train.actors, Histories([s[:-1] for s in train.items], [w[:-1] for w in train.weights]),
                 np.array([s[-1] for s in train.items]))


def small(encoder="transformer", **kw):
    return lambda n, d: UserModelConfig(n_items=n, text_dim=d, dim=32, n_layers=1, n_heads=2, n_experts=2,
                                        max_len=10, dropout=0.0, encoder=encoder,
                                        **{"temperature": 0.07, "text_lags": 3, "new_item_neighbours": 0, **kw})


@pytest.mark.parametrize("name,make", [
    ("shoplm", small()),
    ("shoplm-gru", small("gru")),
    ("sasrec", small(use_text=False, text_path=False, history_bias=False, cooc_path=False)),
])
def test_learns_a_deterministic_pattern(name, make):
    train = cycles()
    rec = TrainedUserModel(name, make, TrainConfig(epochs=40, patience=40, batch_size=8, lr=1e-2, id_dropout=0.0,
                                                  id_dropout_rare=0.0, label_smoothing=0.0))
    rec.fit(FitData(train, cases_of(train), text_vectors()))
    scores = rec.score(Histories([np.array([3, 4, 5]), np.array([10, 11])], [np.ones(3), np.ones(2)]))
    assert scores.shape == (2, N)
    assert scores.argmax(axis=1).tolist() == [6, 0], name
    assert rec.log[-1]["valid_ndcg@10"] > 0.9


def test_rare_items_lose_their_id_more_often():
    cfg = TrainConfig(id_dropout=0.1, id_dropout_rare=0.8, id_dropout_half=5.0)
    rates = id_drop_rates(np.array([1, 5, 20, 10**6]), cfg).numpy()
    assert rates == pytest.approx([0.1 + 0.8 * 5 / 6, 0.1 + 0.4, 0.1 + 0.8 * 5 / 25, 0.1], abs=1e-4)
    assert (np.diff(rates) < 0).all()
    assert id_drop_rates(np.array([0]), TrainConfig(id_dropout=0.5, id_dropout_rare=0.8)).item() == 1.0  # capped
    flat = id_drop_rates(np.array([1, 5, 10**6]), TrainConfig(id_dropout=0.2, id_dropout_rare=0.0)).numpy()
    assert flat == pytest.approx([0.2] * 3)
    # training reads each item's rate from its training events; the padding row is never hidden
    train = Sequences(["a", "b"], [np.array([0, 1, 2, 0, 0]), np.array([0, 1])], [np.ones(5, np.float32), np.ones(2, np.float32)],
                      [np.arange(5.0), np.arange(2.0)])
    counts = np.bincount(np.concatenate(train.items), minlength=N)
    model = UserModel(small()(N, 16), torch.from_numpy(text_vectors()), torch.from_numpy(counts > 0))
    data = training_set(model, train, cfg, "cpu")
    assert data.id_drop.shape == (N + 1,) and data.id_drop[-1] == 0.0
    assert data.id_drop[:N].numpy() == pytest.approx(id_drop_rates(counts, cfg).numpy())
    assert data.id_drop[0] < data.id_drop[1] < data.id_drop[2]  # 4, 2 and 1 training events


def test_scoring_weighs_each_id_by_its_training_dropout():
    """Scoring gives a seen item's ID evidence the weight 1 - share x its dropout chance: with
    0/1 chances that is exactly training's view with those IDs hidden, in between it mixes the
    two views; training sets the weights from its own rates; the new-item lift moves new items only."""
    torch.manual_seed(0)
    seen = torch.ones(N, dtype=torch.bool)
    seen[0] = False
    model = UserModel(small()(N, 16), torch.from_numpy(text_vectors()), seen).eval()
    with torch.no_grad():
        model.item_bias.normal_()
        model.new_item_bias.fill_(-1.0)
    history = pad_left([np.array([3, 4, 5]), np.array([7])], 10, model.pad)
    rows, cols = torch.arange(2), torch.full((2,), history.shape[1] - 1)
    hidden = torch.zeros(N + 1)
    hidden[[2, 6]] = 1.0  # these two IDs always hidden in training
    full = model.scores(history)
    model.set_id_weight(hidden, 0.0)
    assert torch.equal(model.id_weight, model.seen) and torch.equal(model.scores(history), full)
    model.set_id_weight(hidden, 1.0)
    with torch.no_grad():
        as_trained = model.logits(history, rows, cols, id_keep=1 - hidden)
    assert torch.allclose(model.scores(history), as_trained, atol=1e-5)
    assert not torch.allclose(model.scores(history)[:, [2, 6]], full[:, [2, 6]])
    assert torch.allclose(model.scores(history)[:, 3:6], full[:, 3:6], atol=1e-5)  # other items' IDs stay whole
    model.set_id_weight(hidden, 0.5)
    assert model.id_weight[[2, 6]].tolist() == [0.5, 0.5] and model.id_weight[0] == 0.0  # new items have no ID
    vectors = model.item_vectors()
    assert torch.allclose(vectors[2], (model._item_vectors(torch.ones(N + 1))[2] + model._item_vectors(1 - hidden)[2]) / 2, atol=1e-6)
    before = model.scores(history)
    with torch.no_grad():
        model.new_item_shift.fill_(5.0)
    lifted = model.scores(history) - before
    assert lifted[:, 0].tolist() == pytest.approx([5.0, 5.0]) and lifted[:, 1:].abs().max() < 1e-5
    # training sets the weights from its dropout rates, before validation picks the epoch
    train = cycles()
    counts = np.bincount(np.concatenate(train.items), minlength=N)
    cfg = TrainConfig(epochs=1, batch_size=8, id_dropout_rare=1.0, id_dropout_half=50.0, id_dropout_scoring=0.5,
                      label_smoothing=0.0)
    rec = TrainedUserModel("shoplm", small(), cfg)
    rec.fit(FitData(train, cases_of(train), text_vectors()))
    expected = 1 - 0.5 * id_drop_rates(counts, cfg).numpy()
    assert rec.model.id_weight[:N].numpy() == pytest.approx(expected, abs=1e-6)
    assert (expected < 0.9).all()


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    seen = torch.ones(N, dtype=torch.bool)
    model = UserModel(small()(N, 16), torch.from_numpy(text_vectors()), seen)
    model.set_cooccurrence(co_occurrence(cycles(), N, window=2))  # CSR arrays of data-dependent length
    model.set_id_weight(torch.linspace(0, 1, N + 1), 0.75)  # scoring's ID weights and the new-item lift are saved
    with torch.no_grad():
        model.new_item_shift.fill_(2.0)
    history = pad_left([np.array([1, 2, 3]), np.array([5])], 10, model.pad)
    before = model.eval().scores(history)
    save_model(model, [f"i{i}" for i in range(N)], tmp_path / "m", {"cold_items": 0.0})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["item_ids.npy", "model.safetensors", "params.json"]
    loaded, item_ids, params = load_model(tmp_path / "m", "cpu")
    assert item_ids[0] == "i0" and params["cold_items"] == 0.0
    assert torch.allclose(loaded.scores(history), before)
    assert torch.equal(loaded.id_weight, model.id_weight) and loaded.new_item_shift.item() == 2.0
    # no pickle anywhere: the id array loads with allow_pickle=False
    np.load(tmp_path / "m" / "item_ids.npy", allow_pickle=False)


def test_unseen_items_get_no_id_embedding():
    seen = torch.ones(N, dtype=torch.bool)
    seen[7] = False
    model = UserModel(small()(N, 16), torch.from_numpy(text_vectors()), seen)
    with torch.no_grad():
        model.item_id.weight.fill_(1.0)
        model.item_bias.fill_(5.0)
        vectors = model.item_vectors()
        text_only = model.adaptor(model.item_whitened, model.item_text)
    assert torch.allclose(vectors[7], text_only[7])
    assert not torch.allclose(vectors[6], text_only[6])


def test_cooccurrence_is_cross_fitted():
    """A training position never sees co-occurrence counted from its own actor's events."""
    from shoplm.recommend.train import cross_fitted_cooccurrence

    train = Sequences(["a", "b"], [np.array([0, 1]), np.array([2, 3])], [np.ones(2, np.float32)] * 2,
                      [np.arange(2.0)] * 2)
    model = UserModel(small()(N, 16), torch.from_numpy(text_vectors()), torch.ones(N, dtype=torch.bool))
    from scipy import sparse

    fold0, fold1 = (sparse.csr_matrix((v.numpy(), i.numpy(), p.numpy()), shape=(N, N)).toarray()
                    for p, i, v in cross_fitted_cooccurrence(model, train, np.array([0, 1]), "cpu"))  # CSR arrays
    assert fold0[0, 1] == 0 and fold0[2, 3] > 0  # actor a (fold 0) sees only b's pairs
    assert fold1[2, 3] == 0 and fold1[0, 1] > 0


def test_new_items_borrow_from_their_text_neighbours():
    """A new item takes the similarity-weighted mean ID vector and popularity of its nearest
    seen items by text; a neighbour whose ID is hidden (ID dropout) lends nothing."""
    text = torch.from_numpy(text_vectors())
    text[7] = torch.nn.functional.normalize(text[3] + text[5] + 0.1 * text[0], dim=0)  # 3 and 5 are nearest
    seen = torch.ones(N, dtype=torch.bool)
    seen[7] = False
    model = UserModel(small(new_item_neighbours=2)(N, 16), text, seen)
    with torch.no_grad():
        model.item_id.weight.normal_()
        model.item_bias.normal_()
        model.borrow_id.fill_(0.5)
        text_only = model.adaptor(model.item_whitened, model.item_text)
        w3, w5 = float(text[7] @ text[3]), float(text[7] @ text[5])
        lent = (w3 * model.item_id.weight[3] + w5 * model.item_id.weight[5]) / (w3 + w5)
        assert torch.allclose(model.item_vectors()[7], text_only[7] + 0.5 * lent, atol=1e-5)
        popularity = (w3 * model.item_bias[3] + w5 * model.item_bias[5]) / (w3 + w5)
        assert torch.allclose(model.borrowed(model.item_bias, model.seen)[7], popularity, atol=1e-5)
        hide_3 = torch.ones(N + 1)
        hide_3[3] = 0.0
        assert torch.allclose(model.item_vectors(hide_3)[7], text_only[7] + 0.5 * model.item_id.weight[5], atol=1e-5)
        assert torch.allclose(model.item_vectors()[6], text_only[6] + model.item_id.weight[6])  # seen: its own ID only
        assert torch.equal(model.borrowed(model.item_bias, model.seen)[model.pad], torch.tensor(0.0))
        # the new item's score carries the borrowed popularity (the offset new_item_bias is 0 here)
        history = pad_left([np.array([1])], 10, model.pad)
        rows, cols = torch.tensor([0]), torch.tensor([history.shape[1] - 1])
        with_pop = model.logits(history, rows, cols)[0, 7]
        model.borrow_bias.fill_(0.0)
        assert torch.allclose(with_pop - model.logits(history, rows, cols)[0, 7], popularity, atol=1e-5)


def test_scoring_caches_item_vectors_until_a_weight_changes():
    """Scoring reuses the catalog's item vectors; an optimiser step, a load or a
    direct edit of a weight they depend on makes it recompute them."""
    torch.manual_seed(0)
    seen = torch.ones(N, dtype=torch.bool)
    seen[7] = False  # a new item: its vector borrows its neighbours' ID vectors
    model = UserModel(small(new_item_neighbours=3)(N, 16), torch.from_numpy(text_vectors()), seen).eval()

    def fresh():
        with torch.no_grad():
            return model._item_vectors(None)

    with torch.no_grad():
        first = model.item_vectors()
        assert model.item_vectors() is first  # cached
        assert torch.equal(first, fresh())
    history = pad_left([np.array([1, 2, 3])], 10, model.pad)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)  # as fit_user_model steps
    rows = torch.zeros(1, dtype=torch.long)
    model.train()
    model.logits(history, rows, torch.full_like(rows, 2))[0, 4].backward()  # a gradient through the cache-free path
    optimizer.step()
    model.eval()
    with torch.no_grad():
        after_step = model.item_vectors()
        assert not torch.equal(after_step, first)
        assert torch.equal(after_step, fresh())
        model.borrow_id.fill_(0.5)  # an in-place edit of one input
        assert torch.equal(model.item_vectors(), fresh())
        assert not torch.equal(model.item_vectors(), after_step)
    other = UserModel(small(new_item_neighbours=3)(N, 16), torch.from_numpy(text_vectors()), seen).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.item_vectors()
        other.load_state_dict({**model.state_dict(), "item_id.weight": torch.zeros(N + 1, 32)})
        assert torch.equal(other.item_vectors()[3], other._item_vectors(None)[3])
        assert torch.equal(other.item_vectors()[3], other.adaptor(other.item_whitened, other.item_text)[3])
    with torch.enable_grad():
        assert model.item_vectors().requires_grad  # training never reads the cache


def test_new_items_are_calibrated_to_their_share_of_the_top_slots():
    """After calibration, items without training events take `new_item_exposure` times their
    catalog share of the top-k slots over the given histories; no new items, no shift."""
    from shoplm.recommend.model import model_scores
    from shoplm.recommend.train import calibrate_new_items, new_item_share

    n = 40
    rng = np.random.default_rng(0)
    text = rng.normal(size=(n, 16)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    seen = torch.ones(n, dtype=torch.bool)
    seen[:8] = False  # 20% of the catalog is new
    items = [rng.integers(8, n, rng.integers(1, 6)) for _ in range(300)]  # histories of seen items
    histories = Histories(items, [np.ones(len(h), np.float32) for h in items])
    for exposure in (1.0, 2.0):
        torch.manual_seed(0)
        model = UserModel(small(new_item_neighbours=3)(n, 16), torch.from_numpy(text), seen).eval()
        with torch.no_grad():
            model.new_item_bias.fill_(-3.0)  # new items start far down, as an under-calibrated model has them
        before = model.new_item_shift.item()
        shift = calibrate_new_items(model, histories, TrainConfig(new_item_exposure=exposure), "cpu", k=5)
        assert model.new_item_shift.item() == pytest.approx(before + shift)
        assert model.new_item_bias.item() == -3.0  # the offset that ID-less seen items share is not moved
        scores = torch.from_numpy(model_scores(model, histories, 64, "cpu"))
        share = new_item_share(scores, ~seen, 0.0, k=5)
        assert share == pytest.approx(0.2 * exposure, abs=0.02), exposure
        assert new_item_share(scores, ~seen, -0.5, k=5) < share  # lower offsets show them less
    # more exposure than 8 new items can fill in a top 5: all of them there, at a finite shift
    shift = calibrate_new_items(model, histories, TrainConfig(new_item_exposure=10.0), "cpu", k=5)
    assert abs(shift) < 1e3
    assert new_item_share(torch.from_numpy(model_scores(model, histories, 64, "cpu")), ~seen, 0.0, k=5) == 1.0
    all_seen = UserModel(small()(n, 16), torch.from_numpy(text), torch.ones(n, dtype=torch.bool)).eval()
    assert calibrate_new_items(all_seen, histories, TrainConfig(), "cpu") == 0.0
    assert all_seen.new_item_shift.item() == 0.0
