"""`shoplm eval search`: the JSON shape, the report, and the embedding cache on a second run."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from shoplm.lm.encoder import Encoder, default_model_dir
from shoplm.data.readers import read_items, read_judgments
from shoplm.search.evaluate import evaluate_search


def test_eval_json_shape_and_report(catalog_files, tmp_path, monkeypatch):
    from shoplm.cli import app

    items_path, judgments_path = catalog_files
    monkeypatch.setenv("SHOPLM_EMBEDDING_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SHOPLM_SEARCH_DEV_FRACTION", "0.5")
    monkeypatch.setenv("SHOPLM_TORCH_THREADS", "1")
    # the base model stands in for a fine-tuned one: only the shape is under test here
    result = CliRunner().invoke(app, ["eval", "search", "--items", str(items_path), "--judgments", str(judgments_path),
                                      "--model", str(default_model_dir()), "--json", str(tmp_path / "out.json"),
                                      "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "out.json").read_text())
    assert set(data) == {"n_queries", "models"} and data["n_queries"] > 0
    assert list(data["models"]) == ["bm25", "dense", "hybrid", "dense_ft", "hybrid_ft"]
    for metrics in data["models"].values():
        assert list(metrics) == ["ndcg@10", "recall@10", "recall@100", "mrr@10"]
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert data["models"]["dense"] == data["models"]["dense_ft"]
    assert (tmp_path / "report" / "report.md").read_text().count("| bm25 |") == 1
    assert (tmp_path / "report" / "search.png").stat().st_size > 0


def test_second_run_encodes_nothing(catalog_files, settings, monkeypatch):
    items, judgments = read_items(catalog_files[0]), read_judgments(catalog_files[1])
    first = evaluate_search(items, judgments, settings)
    calls = []
    original = Encoder.encode
    monkeypatch.setattr(Encoder, "encode", lambda self, texts, **kw: calls.append(len(texts)) or original(self, texts, **kw))
    second = evaluate_search(items, judgments, settings)
    assert calls == [] and second.models == first.models
