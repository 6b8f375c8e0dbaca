"""Batches without duplicate texts, the LR schedule, and a tiny fine-tuning run that writes a
directory the encoder loads."""

from __future__ import annotations

import json
import random

import numpy as np
from typer.testing import CliRunner

from shoplm.lm.encoder import Encoder
from shoplm.search.data import Pair
from shoplm.search.train import SearchTrainConfig, lr_at, make_batches, split_budget


def test_batches_never_repeat_a_text():
    texts = {"a": "drill", "b": "saw", "c": "drill", "d": "hammer", "e": "paint"}  # a and c share a title
    pairs = [Pair("q1", "a", 1), Pair("q1", "b", 1), Pair("q2", "c", 1), Pair("q3", "d", 1), Pair("q4", "e", 1)]
    negatives = {"q1": ["d"], "q2": ["e"], "q3": ["a"], "q4": ["b"]}
    batches = make_batches(pairs, negatives, texts, batch_size=3, rng=random.Random(0))
    assert sum(len(b.queries) for b in batches) == len(pairs)  # every pair trained on once
    for batch in batches:
        assert len(set(batch.queries)) == len(batch.queries)
        assert len(set(batch.docs)) == len(batch.docs)
        assert not set(batch.queries) & set(batch.docs)


def test_lr_warmup_then_decay():
    cfg = SearchTrainConfig(lr=1.0, warmup=0.1)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == 0.1 and lrs[9] == 1.0 and lrs[99] < 0.02
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))


def _tiny(monkeypatch, **settings: str) -> None:
    """Settings of a fine-tuning run small enough for a test: SHOPLM_* as given over the defaults here."""
    tiny = {"SEARCH_BATCH_SIZE": "4", "SEARCH_EPOCHS": "1", "SEARCH_DEV_FRACTION": "0.5", "ENCODER_BF16": "false",
            "TORCH_THREADS": "1"}
    for name, value in (tiny | settings).items():
        monkeypatch.setenv(f"SHOPLM_{name}", value)


def test_tiny_training_run_writes_a_loadable_model(catalog_files, tmp_path, monkeypatch):
    from shoplm.cli import app

    items_path, judgments_path = catalog_files
    _tiny(monkeypatch)
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["train", "search", "--items", str(items_path), "--judgments", str(judgments_path),
                                      "--out", str(out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "shoplm_train.json").read_text())
    assert summary["steps"] >= 1 and summary["pairs"] > 0 and summary["config"]["seed"] == 1
    assert summary["planned_steps"] >= summary["steps"] and summary["cut_short"] is False
    assert "fine-tuning did its plan" in result.stdout and "CUT SHORT" not in result.output
    encoder = Encoder(out, bf16=False)
    vectors = encoder.encode(["cordless drill", "deck stain"])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the temp dir was swapped in


def test_training_from_events_only(catalog_files, tmp_path, monkeypatch):
    """A search followed by a click/cart/purchase in the same session is a positive; no judgments needed."""
    import csv

    from shoplm.cli import app
    from tests.search.conftest import JUDGMENTS

    items_path, _ = catalog_files
    events_path = tmp_path / "events.csv"
    with open(events_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "session_id", "event_type", "item_id", "query"])
        for n, (query, item, relevance) in enumerate(j for j in JUDGMENTS if j[2] >= 1):
            writer.writerow([1_700_000_000 + 100 * n, f"s{n}", "search", "", query])
            writer.writerow([1_700_000_000 + 100 * n + 5, f"s{n}", "purchase" if relevance == 2 else "click", item, ""])
    _tiny(monkeypatch, SEARCH_DEV_FRACTION="0.3")
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["train", "search", "--items", str(items_path), "--events", str(events_path),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "shoplm_train.json").read_text())
    assert summary["pairs"] > 0 and Encoder(out, bf16=False).dim == 384


def test_the_cross_encoder_trains_for_less_when_the_whole_would_not_fit():
    """`train search` keeps its bound: fine-tuning gets what the estimated rest leaves (at least a
    quarter), and when even that does not fit the cross-encoder's minutes shrink first."""
    assert split_budget(18, 5, 0) == (13, 0)  # no cross-encoder: fine-tuning gets the rest
    assert split_budget(18, 13, 9) == (5, 9)  # everything fits
    fine_tune, cross = split_budget(18, 15, 9)  # 6 fixed + 9: the cross-encoder gives up 1.5 minutes
    assert (fine_tune, cross) == (4.5, 7.5) and fine_tune + (15 - 9) + cross == 18
    assert split_budget(18, 22.2, 9) == (4.5, 1.0)  # a CPU so slow the reserve passes the total: both floors, as close as it gets
    assert split_budget(18, 3, 2) == (15, 2)


def test_a_run_the_wall_clock_cap_cuts_short_says_so_everywhere(catalog_files, tmp_path, monkeypatch):
    """A cap far below the plan: the console, shoplm_train.json and `eval search` all say how
    much of the plan was done."""
    from shoplm.cli import app

    items_path, judgments_path = catalog_files
    _tiny(monkeypatch, SEARCH_BATCH_SIZE="2", SEARCH_EPOCHS="50", SEARCH_PATIENCE="1000")
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["train", "search", "--items", str(items_path), "--judgments", str(judgments_path),
                                      "--out", str(out), "--max-minutes", "0.001"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "shoplm_train.json").read_text())
    assert summary["cut_short"] is True and 1 <= summary["steps"] < summary["planned_steps"]
    said = " ".join(result.output.split())
    assert f"CUT SHORT: the wall-clock cap (0.001 minutes) stopped fine-tuning after {summary['steps']:,} of " \
           f"{summary['planned_steps']:,} planned steps" in said
    evaluated = CliRunner().invoke(app, ["eval", "search", "--items", str(items_path), "--judgments",
                                         str(judgments_path), "--model", str(out), "--report", str(tmp_path / "report")])
    assert evaluated.exit_code == 0, evaluated.output
    assert "model: CUT SHORT" in " ".join(evaluated.stdout.split())
    assert "CUT SHORT" in (tmp_path / "report" / "report.md").read_text()
