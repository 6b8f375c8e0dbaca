"""The evaluation: ranks (with and without history items) against ranx, the JSON shape,
and the CLI end to end on the generated multi-event-type shop (no code changes needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from shoplm.cli import app
from shoplm.metrics import single_target_metrics
from shoplm.recommend.evaluate import METRICS, case_ranks
from shoplm.recommend.sequences import Cases, Histories

runner = CliRunner()


class Fixed:
    name = "fixed"

    def __init__(self, scores):
        self.scores = scores
        self.cursor = 0  # case_ranks asks for consecutive batches

    def fit(self, data):
        pass

    def score(self, histories):
        batch = self.scores[self.cursor:self.cursor + len(histories)]
        self.cursor += len(histories)
        return batch


def test_ranks_with_excluded_history_agree_with_ranx():
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(0)
    n_cases, n_items = 40, 30
    scores = rng.normal(size=(n_cases, n_items)).astype(np.float32)
    histories = [rng.choice(n_items, size=rng.integers(1, 6), replace=False) for _ in range(n_cases)]
    targets = rng.integers(0, n_items, n_cases)
    cases = Cases([f"u{i}" for i in range(n_cases)], Histories(histories, [np.ones(len(h)) for h in histories]), targets)
    for exclude in (False, True):
        ours = {k: v.mean() for k, v in single_target_metrics(case_ranks(Fixed(scores), cases, exclude, batch=7)).items()}
        run, qrels = {}, {}
        for i in range(n_cases):
            removed = set(histories[i].tolist()) if exclude else set()
            # ranx drops unscored items; a removed target then counts as not found, as in ours
            run[f"q{i}"] = {f"d{j}": float(scores[i, j]) for j in range(n_items) if j not in removed}
            qrels[f"q{i}"] = {f"d{targets[i]}": 1}
        ref = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), ["recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr"])
        for name in METRICS:
            assert ours[name] == pytest.approx(ref[name], abs=1e-9), (exclude, name)


def test_help_has_examples():
    for command in (["train", "recommend", "--help"], ["eval", "recommend", "--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0 and "Example" in result.stdout


def test_cli_train_then_eval_on_a_multi_event_shop(shop, small_settings, tmp_path):
    items, events = shop
    model = tmp_path / "model"
    result = runner.invoke(app, ["train", "recommend", "--items", str(items), "--events", str(events), "--out", str(model)])
    assert result.exit_code == 0, result.output
    assert json.loads((model / "params.json").read_text())["model"]["use_text"] is True
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", "recommend", "--items", str(items), "--events", str(events), "--model", str(model),
                                 "--json", str(out), "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data) == {"dataset", "models", "slices"}
    names = ["popularity", "item_knn", "sasrec", "text_zero_shot", "shoplm"]
    assert list(data["models"]) == names
    assert all(set(m) == set(METRICS) for m in data["models"].values())
    assert set(data["slices"]) == {"history_len", "target_freq"}
    for kind, buckets in data["slices"].items():
        assert set(buckets) <= {"1", "2-3", "4-7", "8+", "0", "1-4", "5+"}
        assert all(list(models) == names for models in buckets.values())
    assert data["dataset"]["test_cases"] == sum(data["dataset"]["slice_counts"]["history_len"].values())
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| shoplm |" in report and (tmp_path / "report" / "history_len_ndcg10.png").is_file()
    # a model trained without cold items is refused for a cold-items evaluation (it saw them)
    result = runner.invoke(app, ["eval", "recommend", "--items", str(items), "--events", str(events), "--model", str(model),
                                 "--cold-items", "0.2", "--json", str(out)])
    assert result.exit_code != 0 and "--cold-items" in str(result.exception)


def test_cli_cold_items_trains_in_the_run(shop, small_settings, tmp_path):
    items, events = shop
    out = tmp_path / "cold.json"
    result = runner.invoke(app, ["eval", "recommend", "--items", str(items), "--events", str(events),
                                 "--cold-items", "0.2", "--exclude-history", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["dataset"]["protocol"]["cold_item_count"] == 6  # 20% of 30 items
    assert data["dataset"]["protocol"]["exclude_history"] is True
    assert set(data["slices"]["cold_items"]) <= {"cold", "warm"}
    assert "cold" in data["slices"]["cold_items"]
