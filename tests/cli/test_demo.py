"""`shoplm demo` (what `make demo` runs) on shop exports: format detection, conversion, the
summary of what is served, clear errors on bad input, and a real storefront served over a
Merchant Center feed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoplm.cli import app
from shoplm.cli.demo import detect_events_format, detect_format
from shoplm.errors import ConvertError
from tests.service import free_port

CONVERT = Path(__file__).parents[1] / "fixtures" / "convert"
FEED = CONVERT / "merchant_center" / "feed.rss.xml"
runner = CliRunner()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """The demo's embeddings go to the test's own cache, never the repository's var/."""
    monkeypatch.setenv("SHOPLM_EMBEDDING_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def demo(*args: str):
    return runner.invoke(app, ["demo", "--no-serve", *args])


def test_merchant_center_feed_without_events_is_converted_ingested_and_served_zero_shot(tmp_path, cache):
    result = demo("--items", str(FEED), "--dir", str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"input: {FEED}, format merchant-center (detected); converting it" in lines
    assert "converted: read 6, accepted 4, rejected 2, items 4" in result.stdout  # the converter's summary
    assert any(line.startswith("recommendations: no events, so no recommendation model is trained") for line in lines)
    assert any(line.startswith("search: served zero-shot") and "no search figure applies" in line for line in lines)
    assert "fast demo settings: none" in lines
    [run] = (tmp_path / "demo" / "feed").glob("run-*")
    assert not (run / "models").exists()  # nothing trained
    assert json.loads((run / "index" / "params.json").read_text())["count"] == 4
    from shoplm.store import open_store

    db = open_store(f"sqlite:///{run / 'shop.db'}")
    try:
        assert sorted(i.item_id for i in db.items()) == ["DRL-18V-01", "JKT-RAIN-L", "JKT-RAIN-M", "JKT-RAIN-S"]
    finally:
        db.close()
    serve_line = next(line for line in lines if line.startswith("serve: "))
    assert f"SHOPLM_SEARCH_INDEX_DIR={run / 'index'}" in serve_line and "SHOPLM_RECOMMEND_MODEL" not in serve_line


def test_with_events_the_figure_is_of_the_served_model_directory(tmp_path, cache, monkeypatch):
    from tests.recommend.conftest import write_shop

    for key, value in {"SHOPLM_RECOMMEND_DIM": "16", "SHOPLM_RECOMMEND_LAYERS": "1", "SHOPLM_RECOMMEND_EPOCHS": "1",
                       "SHOPLM_RECOMMEND_MAX_LEN": "10", "SHOPLM_SASREC_DIM": "16", "SHOPLM_RECOMMEND_BATCH_SIZE": "32",
                       "SHOPLM_RECOMMEND_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)
    items, events = write_shop(tmp_path / "myshop", n_actors=30)
    args = ("--items", str(items), "--events", str(events), "--dir", str(tmp_path / "demo"), "--train-minutes", "1")
    result = demo(*args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    [run] = (tmp_path / "demo" / "myshop").glob("run-*")
    model = run / "models" / "recommend-1min"
    assert (model / "params.json").is_file()
    reproduce = next(line for line in lines if line.startswith("  reproduce: shoplm eval recommend"))
    assert f"--model {model} " in reproduce
    serve_line = next(line for line in lines if line.startswith("serve: "))
    assert f"SHOPLM_RECOMMEND_MODEL={model} " in serve_line
    scored = json.loads((run / "eval" / "recommend-1min.json").read_text())
    assert scored["dataset"]["shoplm_model"] == str(model)
    figure = next(line for line in lines if line.startswith("  figure: shoplm (this model)"))
    assert f"NDCG@10 {scored['models']['shoplm']['ndcg@10']:.4f}" in figure
    assert any("1-minute training budget (DEMO_TRAIN_MINUTES=1)" in line for line in lines)
    assert any(line.startswith("search: served zero-shot") for line in lines)  # 6 distinct queries: too few
    again = demo(*args)  # the same files: the model and its evaluation are reused, the figure is the same
    assert again.exit_code == 0, again.output
    assert f"reusing {model} (trained before on these files)" in again.stdout and figure in again.stdout.splitlines()


@pytest.mark.parametrize("path, expected", [
    (CONVERT / "merchant_center" / "feed.rss.xml", "merchant-center"),
    (CONVERT / "merchant_center" / "feed.atom.xml", "merchant-center"),
    (CONVERT / "merchant_center" / "feed.tsv", "merchant-center"),
    (CONVERT / "shopify_products.csv", "shopify"),
    (CONVERT / "woocommerce_products.csv", "woocommerce"),
    (Path(__file__).parents[1] / "fixtures" / "bad_items.jsonl", "shoplm"),
])
def test_detects_the_format_from_the_file(path, expected):
    assert detect_format(path) == expected


@pytest.mark.parametrize("path, expected", [
    (CONVERT / "ga4" / "events_20240502.jsonl", "ga4"),
    (CONVERT / "ga4", "ga4"),
    (CONVERT / "ubi" / "ubi_events.json", "ubi"),
    (CONVERT / "ubi", "ubi"),
    (Path(__file__).parents[1] / "fixtures" / "bad_events.jsonl", "shoplm"),
])
def test_detects_the_events_format_from_the_first_record(path, expected):
    assert detect_events_format(path) == expected


def test_a_ga4_export_alone_is_a_shop_and_ubi_events_go_with_a_feed(tmp_path, cache):
    result = demo("--events", str(CONVERT / "ga4" / "events_20240502.jsonl"), "--dir", str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    assert "a GA4 export (detected), its items the catalog; converting it" in result.stdout
    [run] = (tmp_path / "demo" / "events-20240502").glob("run-*")
    from shoplm.store import open_store

    db = open_store(f"sqlite:///{run / 'shop.db'}")
    try:
        counts = db.counts()
        assert counts["items"] > 0 and counts["events"] > 0
    finally:
        db.close()
    with_feed = demo("--items", str(FEED), "--events", str(CONVERT / "ubi"), "--dir", str(tmp_path / "demo"))
    assert with_feed.exit_code == 0, with_feed.output
    assert f"events: {CONVERT / 'ubi'}, format ubi (detected); converting them" in with_feed.stdout
    [run] = (tmp_path / "demo" / "feed").glob("run-*")
    db = open_store(f"sqlite:///{run / 'shop.db'}")
    try:
        assert db.counts()["events"] > 0 and {i.item_id for i in db.items()} >= {"DRL-18V-01"}
    finally:
        db.close()


def test_detects_shoplm_items_csv_and_refuses_unknown_columns(tmp_path):
    (tmp_path / "items.csv").write_text("item_id,title\na,Alpha\n")
    (tmp_path / "other.csv").write_text("sku,name\na,Alpha\n")
    (tmp_path / "plain.xml").write_text("<catalog><product/></catalog>")
    assert detect_format(tmp_path / "items.csv") == "shoplm"
    with pytest.raises(ConvertError, match=r"other\.csv: cannot tell the format from its columns \(name, sku\)"):
        detect_format(tmp_path / "other.csv")
    with pytest.raises(ConvertError, match=r"plain\.xml: XML without the g: namespace"):
        detect_format(tmp_path / "plain.xml")


def test_format_option_names_what_detection_cannot_tell(tmp_path, cache):
    feed = tmp_path / "export.dat"  # a Merchant Center text feed under a name detection does not know
    shutil.copy(CONVERT / "merchant_center" / "feed.tsv", feed)
    refused = demo("--items", str(feed), "--dir", str(tmp_path / "demo"))
    assert isinstance(refused.exception, ConvertError) and str(feed) in str(refused.exception)
    assert "--format (FORMAT=)" in str(refused.exception)
    result = demo("--items", str(feed), "--format", "merchant-center", "--dir", str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    assert f"input: {feed}, format merchant-center (named by --format); converting it" in result.stdout
    assert "items 4" in result.stdout


def test_search_queries_split_by_query_and_leave_train_search_a_dev_set(tmp_path):
    from shoplm.config import Settings
    from shoplm.cli.demo import write_query_split
    from shoplm.data.readers import read_judgments
    from shoplm.data.records import Judgment
    from shoplm.search.data import split_queries

    settings = Settings()
    judged = [Judgment(f"query {q}", f"item {q}-{i}", float(i)) for q in range(200) for i in range(3)]
    train, test = write_query_split(settings, judged, tmp_path / "search")
    train_queries = {j.query for j in read_judgments(train)}
    test_queries = {j.query for j in read_judgments(test)}
    assert not train_queries & test_queries and len(train_queries | test_queries) == 200
    assert 20 <= len(test_queries) <= 60  # about search_dev_fraction (0.2) of them
    # `shoplm train search` splits train.csv again with search_split_seed: its dev set must not be empty
    assert len(split_queries(train_queries, settings.search_dev_fraction, settings.search_split_seed).dev) >= 15


@pytest.mark.parametrize("args, named", [
    (["--items", "no/such/feed.xml"], "no/such/feed.xml: no such file, given as --items (ITEMS=)"),
    (["--items", str(FEED), "--events", "no/events.csv"], "no/events.csv: no such file, given as --events"),
    (["--items", str(FEED), "--format", "csv"], "--format (FORMAT=) 'csv' is not a format the demo reads"),
])
def test_bad_input_fails_with_one_line_naming_it(tmp_path, args, named):
    done = subprocess.run([sys.executable, "-m", "shoplm.cli", "demo", "--no-serve", "--dir", str(tmp_path), *args],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and named in line, done.stderr
    assert not list(tmp_path.iterdir())  # failed before writing anything


def test_serves_a_storefront_over_a_merchant_center_feed(tmp_path):
    port = free_port()
    env = {**os.environ, "SHOPLM_EMBEDDING_CACHE_DIR": str(tmp_path / "cache"), "SHOPLM_LOG_LEVEL": "warning"}
    log = tmp_path / "demo.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "shoplm.cli", "demo", "--items", str(FEED), "--dir",
                                    str(tmp_path / "demo"), "--port", str(port)], env=env, stdout=handle,
                                   stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not _ready(url):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        with urllib.request.urlopen(url + "/", timeout=10) as response:
            assert response.status == 200 and "text/html" in response.headers["content-type"]
        with urllib.request.urlopen(url + "/v1/search?q=cordless%20drill&limit=3", timeout=30) as response:
            page = json.load(response)
        assert page["items"][0]["item_id"] == "DRL-18V-01"
        assert page["total"] >= 1
    finally:
        process.terminate()
        process.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
            return json.load(response)["status"] == "ready"
    except (OSError, ValueError, KeyError):
        return False
