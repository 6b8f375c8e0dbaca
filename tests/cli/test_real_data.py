"""End to end on the real data sets: convert, ingest into SQLite, and check the published counts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shoplm.data.aggregates import dataset_stats
from shoplm.cli import app
from shoplm.data.convert import convert
from shoplm.store.ingest import ingest
from shoplm.store import open_store

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_amazon_scientific_through_the_cli(data_dir, tmp_path):
    out, url = tmp_path / "scientific", f"sqlite:///{tmp_path / 'shop.db'}"
    converted = runner.invoke(app, ["data", "convert", "amazon-recbole", str(data_dir / "amazon-scientific"), str(out)])
    assert converted.exit_code == 0, converted.output
    result = runner.invoke(app, ["ingest", "--items", str(out / "items.csv"), "--events", str(out / "events.csv"),
                                 "--store", url, "--json"])
    assert result.exit_code == 0, result.output
    files = {f["kind"]: f for f in json.loads(result.stdout)["files"]}
    assert (files["items"]["accepted"], files["items"]["rejected"]) == (4_385, 0)
    assert (files["events"]["accepted"], files["events"]["rejected"]) == (59_427, 0)
    stats = json.loads(runner.invoke(app, ["data", "stats", "--store", url, "--json"]).stdout)
    assert (stats["items"], stats["events"], stats["users"]) == (4_385, 59_427, 8_442)
    assert stats["history_length"]["min"] == 5  # every user has at least 5 interactions
    assert stats["events_by_type"]["purchase"] == 59_427


def test_homedepot(data_dir, tmp_path):
    report = convert("homedepot", data_dir / "homedepot", tmp_path / "hd")
    store = open_store(f"sqlite:///{tmp_path / 'hd.db'}")
    result = ingest(store, items=report.files["items"], judgments=report.files["judgments"])
    assert [(f.kind, f.accepted, f.rejected) for f in result.files] == [("items", 54_667, 0), ("judgments", 59_363, 0)]
    relevance = [j.relevance for j in store.judgments()]
    assert len(relevance) == 59_363 and min(relevance) == 0.0 and max(relevance) == 2.0
    store.close()


def test_diginetica(data_dir, tmp_path):
    report = convert("diginetica", data_dir / "diginetica-sample", tmp_path / "dg")
    store = open_store(f"sqlite:///{tmp_path / 'dg.db'}")
    result = ingest(store, events=report.files["events"], allow_unknown_items=True)
    assert (result.files[0].accepted, result.files[0].rejected) == (12_391, 0)
    stats = dataset_stats(store.events_frame(), store.item_ids(), store.counts())
    assert (stats["events"], stats["sessions"], stats["events_by_type"]["view"]) == (12_391, 2_986, 12_391)
    store.close()


def test_diginetica_without_catalog_is_rejected_as_unknown_items(data_dir, tmp_path):
    report = convert("diginetica", data_dir / "diginetica-sample", tmp_path / "dg")
    result = ingest(open_store("memory://"), events=report.files["events"])
    assert result.files[0].rejected == 12_391
    assert all("unknown item" in str(r) for r in result.files[0].rejections[:5])


def test_rees46(data_dir, tmp_path):
    """The sample's 17,434 complete rows (its last, cut-off row counted as truncated) all ingest;
    the store keeps one of each exact duplicate (same time, actor, type and item)."""
    report = convert("rees46", data_dir / "rees46-sample", tmp_path / "rees")
    assert {k: report.counts[k] for k in ("rows", "truncated", "skipped", "events", "items")} == {
        "rows": 17_434, "truncated": 1, "skipped": 0, "events": 17_434, "items": 6_493}
    store = open_store(f"sqlite:///{tmp_path / 'rees.db'}")
    result = ingest(store, items=report.files["items"], events=report.files["events"])
    assert [(f.kind, f.accepted, f.rejected) for f in result.files] == [("items", 6_493, 0), ("events", 17_434, 0)]
    stats = dataset_stats(store.events_frame(), store.item_ids(), store.counts())
    assert stats["events"] + result.files[1].duplicates == 17_434
    assert (stats["users"], stats["sessions"]) == (4_504, 5_066)
    store.close()
