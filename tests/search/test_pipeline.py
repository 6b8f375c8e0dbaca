"""The search pipeline over the bundled MiniLM: a new item is found at once, a removed one is gone,
filters hold, and `shoplm index build` + `shoplm search` work end to end."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shoplm.search.index import ItemFilter
from shoplm.data.records import Item
from shoplm.search.pipeline import SearchPipeline, build_indexes

NEW = Item(item_id="new1", title="Ryobi 40V cordless leaf blower with battery", category="Outdoor > Blowers",
           brand="Ryobi", price=149.0)


@pytest.fixture
def pipeline(items, settings, tmp_path):
    build_indexes(items, settings, tmp_path / "index")
    return SearchPipeline.open(tmp_path / "index", settings)


def test_add_then_find_by_title_without_rebuild(pipeline):
    assert "new1" not in pipeline.search(["ryobi cordless leaf blower"], k=5).ids[0]
    pipeline.add([NEW])
    assert pipeline.search(["ryobi cordless leaf blower"], k=5).ids[0][0] == "new1"


def test_remove_then_no_longer_found(pipeline):
    pipeline.add([NEW])
    pipeline.remove(["new1"])
    assert "new1" not in pipeline.search(["ryobi cordless leaf blower"], k=14).ids[0]


def test_known_answers(pipeline):
    top = pipeline.search(["angle bracket", "deck stain", "claw hammer"], k=1).ids[:, 0]
    assert list(top) == ["b1", "p2", "h1"]


def test_filter_category_and_price_gets_k_matching(pipeline, items):
    flt = ItemFilter(category="Tools > Power Tools", min_price=50, max_price=130)
    matching = {i.item_id for i in items if i.category.startswith("Tools > Power Tools") and 50 <= i.price <= 130}
    assert len(matching) == 4
    hits = pipeline.search(["paint"], k=4, filter=flt)  # a query that matches none of them lexically
    assert set(hits.ids[0]) == matching
    hits = pipeline.search(["drill"], k=3, filter=flt)
    assert len(set(hits.ids[0])) == 3 and set(hits.ids[0]) <= matching


def test_cli_index_build_and_search(catalog_files, settings, tmp_path, monkeypatch):
    from shoplm.cli import app

    items_path, _ = catalog_files
    store = f"sqlite:///{tmp_path / 'shop.db'}"
    monkeypatch.setenv("SHOPLM_EMBEDDING_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "--items", str(items_path), "--store", store]).exit_code == 0
    built = runner.invoke(app, ["index", "build", "--store", store, "--out", str(tmp_path / "idx")])
    assert built.exit_code == 0, built.output
    found = runner.invoke(app, ["search", "cordless drill", "--k", "3", "--index", str(tmp_path / "idx"), "--store", store,
                                "--filter", "category=Tools", "--filter", "price=..100", "--json"])
    assert found.exit_code == 0, found.output
    page = json.loads(found.stdout[found.stdout.index("{"):])
    rows = page["items"]
    # the drills in Tools under 100 that are available; the saws and the hammer do not match the query
    assert {r["item_id"] for r in rows} == {"d2", "d4"} and page["total"] == 2
    assert all(r["price"] < 100 and r["category"].startswith("Tools") for r in rows)
    bad = runner.invoke(app, ["search", "x", "--index", str(tmp_path / "idx"), "--store", store,
                              "--filter", "price=cheap"])
    assert bad.exit_code != 0 and "LOW..HIGH" in bad.output


def test_lexical_rows_kept_in_step_through_adds_updates_and_removals(pipeline):
    import dataclasses

    import numpy as np

    def fresh():
        return pipeline.vectors.rows(pipeline.lexical.ids)

    assert np.array_equal(pipeline.lexical_rows(), fresh())
    for step in range(3):  # added items: only their rows are looked up
        pipeline.add([dataclasses.replace(NEW, item_id=f"new{step}")])
        assert np.array_equal(pipeline.lexical_rows(), fresh())
    pipeline.add([dataclasses.replace(NEW, item_id="new1", title="Ryobi hedge trimmer")])  # an update moves its row
    assert np.array_equal(pipeline.lexical_rows(), fresh())
    pipeline.remove(["new0"])
    assert np.array_equal(pipeline.lexical_rows(), fresh())
    # BM25 first, the vectors later (an experiment arm's sibling is kept in step after the main pipeline)
    pipeline.lexical.add(["late"], ["a late item"])
    assert pipeline.lexical_rows()[-1] == -1
    pipeline.vectors.add(["late"], pipeline.encoder.encode(["a late item"]))
    assert np.array_equal(pipeline.lexical_rows(), fresh()) and pipeline.lexical_rows()[-1] >= 0


def test_searches_while_items_are_added_from_another_thread(pipeline):
    """Reads take no lock: a search or a result set computed while another thread adds items
    answers over the rows there were when it started (a POST during a search gave a 500)."""
    import dataclasses
    import threading

    errors, done = [], threading.Event()

    def add() -> None:
        try:
            for i in range(300):
                pipeline.add([dataclasses.replace(NEW, item_id=f"race{i}", title=f"Ryobi cordless blower {i}")])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            done.set()

    writer = threading.Thread(target=add)
    writer.start()
    reads = 0
    while not done.is_set() or reads < 50:
        try:
            pipeline.matches("ryobi cordless blower", 0.3, 20)
            pipeline.search(["ryobi cordless blower"], k=5, filter=ItemFilter(max_price=500))
            pipeline.search(["ryobi cordless blower"], k=5)
        except Exception as error:  # noqa: BLE001
            errors.append(error)
            break
        reads += 1
    writer.join()
    assert not errors, errors[:1]
    assert pipeline.search(["ryobi cordless blower 299"], k=1).ids[0][0] == "race299"
