"""On the real Amazon Scientific files (no training): the leave-last-out split of the
converted events is exactly the published RecBole split, and the baselines that need no
training rank as measured."""

from __future__ import annotations

import numpy as np
import pytest

from shoplm.data.convert import convert
from shoplm.data.convert.amazon_recbole import read_index, read_interactions
from shoplm.metrics import single_target_metrics
from shoplm.recommend.evaluate import case_ranks
from shoplm.recommend.recommender import FitData
from shoplm.recommend.baselines.item_knn import ItemKNN
from shoplm.recommend.baselines.popularity import Popularity
from shoplm.recommend.sequences import build_sequences, leave_last_out, read_catalog

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scientific(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("scientific")
    convert("amazon-recbole", data_dir / "amazon-scientific", out)
    catalog = read_catalog(out / "items.csv", out / "events.csv")
    weights = {"purchase": 1.0}
    return catalog, leave_last_out(build_sequences(catalog.events, catalog.item_ids, weights))


def test_split_is_the_published_one(scientific, data_dir):
    catalog, split = scientific
    src = data_dir / "amazon-scientific"
    asin = read_index(src / "Scientific.item2index")
    user = read_index(src / "Scientific.user2index")
    ids = catalog.item_ids
    for name, cases in (("test", split.test), ("valid", split.valid)):
        published = {user[r.user]: (asin[r.target], [asin[i] for i in r.history])
                     for r in read_interactions(src / f"Scientific.{name}.inter")}
        assert len(cases) == len(published) == 8442
        for actor, history, target in zip(cases.actors, cases.histories.items, cases.targets):
            want_target, want_history = published[actor]
            assert ids[target] == want_target
            assert [ids[i] for i in history[-50:]] == want_history
    assert sum(len(s) for s in split.train.items) == 59_427 - 2 * 8442


def test_untrained_baselines_on_scientific(scientific):
    catalog, split = scientific
    data = FitData(split.train, split.valid, np.zeros((len(catalog.items), 4), np.float32))
    results = {}
    for model in (Popularity(), ItemKNN(window=3, decay=0.7)):
        model.fit(data)
        ranks = case_ranks(model, split.test, exclude_history=False)
        results[model.name] = {k: v.mean() for k, v in single_target_metrics(ranks).items()}
    assert 0.01 < results["popularity"]["ndcg@10"] < 0.03
    assert results["item_knn"]["ndcg@10"] > 0.06  # measured 0.072
