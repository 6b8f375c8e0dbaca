"""`shoplm jobs embed --in-process` and `shoplm index build --embeddings`: a catalog encoded
elsewhere is indexed without encoding it again, with the same vectors as a plain build."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from shoplm.cli import app
from shoplm.config import Settings
from shoplm.data.text import item_texts
from shoplm.lm.encoder import Encoder
from shoplm.search.index import load_index
from tests.jobs.test_ray_jobs import _write_items
from tests.reliability.conftest import catalog


@pytest.fixture
def shop(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPLM_EMBEDDING_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("shoplm.jobs.batch.PART_ROWS", 10)
    _write_items(tmp_path / "items.csv", catalog(35))
    return tmp_path


def _run(*args):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_in_process_embed_resumes_and_the_index_is_built_without_encoding(shop, monkeypatch):
    from shoplm.jobs.batch import read_embeddings

    _run("jobs", "embed", "--items", str(shop / "items.csv"), "--out", str(shop / "vectors"), "--in-process")
    parts = sorted((shop / "vectors").glob("part-*.parquet"))
    assert len(parts) == 4 and json.loads((shop / "vectors" / "embeddings.json").read_text())["count"] == 35
    got = read_embeddings(shop / "vectors")
    assert got.fingerprint == Encoder.from_settings(Settings()).fingerprint and got.hashes.shape == (35, 16)

    # a re-run keeps every file whose items and texts are unchanged: only the changed item's file is encoded
    items = catalog(35)
    items[12] = dataclasses.replace(items[12], title="A changed title")
    _write_items(shop / "items.csv", items)
    before = {p.name: p.stat().st_mtime_ns for p in parts}
    _run("jobs", "embed", "--items", str(shop / "items.csv"), "--out", str(shop / "vectors"), "--in-process")
    changed = [p.name for p in parts if p.stat().st_mtime_ns != before[p.name]]
    assert changed == ["part-00001.parquet"]

    store = f"sqlite:///{shop / 'shop.db'}"
    _run("ingest", "--items", str(shop / "items.csv"), "--store", store)
    encoded = []
    original = Encoder.encode
    monkeypatch.setattr(Encoder, "encode", lambda self, texts, *a, **k: encoded.extend(texts) or original(self, texts, *a, **k))
    built = _run("index", "build", "--store", store, "--out", str(shop / "idx"), "--embeddings", str(shop / "vectors"))
    assert "35 vectors from" in built.output and encoded == []  # every vector came from the job

    monkeypatch.setattr(Encoder, "encode", original)
    index = load_index(shop / "idx" / "vectors")
    fresh = Encoder.from_settings(Settings()).encode(item_texts(items, Settings().item_text_template))
    rows = index.rows([i.item_id for i in items])
    cosine = np.einsum("nd,nd->n", index.vectors[rows], fresh)  # batches differ: bf16 noise where the CPU has it
    assert cosine.min() >= 0.9999, cosine.min()


def test_embeddings_of_another_model_are_refused(shop):
    _run("jobs", "embed", "--items", str(shop / "items.csv"), "--out", str(shop / "vectors"), "--in-process")
    manifest = shop / "vectors" / "embeddings.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "fingerprint": "another-model"}))
    store = f"sqlite:///{shop / 'shop.db'}"
    _run("ingest", "--items", str(shop / "items.csv"), "--store", store)
    result = CliRunner().invoke(app, ["index", "build", "--store", store, "--out", str(shop / "idx"),
                                      "--embeddings", str(shop / "vectors")])
    assert result.exit_code != 0 and "another-model" in str(result.exception) and not (shop / "idx").exists()
