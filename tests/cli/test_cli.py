"""The command line: exit codes, error lines on stderr, JSON for scripts, help with examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoplm.cli import app

FIXTURES = Path(__file__).parents[1] / "fixtures"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_ingest_reports_bad_records_on_stderr_and_exits_2(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = run("ingest", "--items", str(FIXTURES / "bad_items.jsonl"), "--events", str(FIXTURES / "bad_events.jsonl"),
                 "--store", url, "--json")
    assert result.exit_code == 2, result.output
    report = json.loads(result.stdout)
    assert [f["accepted"] for f in report["files"]] == [2, 4]
    assert all(f["reconciles"] for f in report["files"])
    error_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 7 and all(":" in line and "field '" in line for line in error_lines)
    stats = json.loads(run("data", "stats", "--store", url, "--json").stdout)
    assert (stats["items"], stats["events"]) == (2, 4)


def test_strict_exits_1_and_writes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = run("ingest", "--strict", "--items", str(FIXTURES / "bad_items.jsonl"), "--store", url)
    assert result.exit_code == 1
    assert "nothing was written" in result.stderr
    assert json.loads(run("data", "stats", "--store", url, "--json").stdout)["items"] == 0


def test_clean_ingest_exits_0(tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\na,Alpha\n")
    result = run("ingest", "--items", str(items), "--store", f"sqlite:///{tmp_path / 's.db'}")
    assert result.exit_code == 0, result.output
    assert "accepted" in result.stdout


def test_store_url_comes_from_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPLM_STORE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\na,Alpha\n")
    assert run("ingest", "--items", str(items)).exit_code == 0
    assert (tmp_path / "env.db").exists()


def test_ingest_needs_a_file():
    result = run("ingest", "--store", "memory://")
    assert result.exit_code != 0 and "at least one of --items" in result.output


@pytest.mark.parametrize("command", [["ingest"], ["data", "convert"], ["data", "stats"], ["search"], ["suggest"],
                                     ["eval", "suggest"]])
def test_every_command_has_help_with_an_example(command):
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Example" in result.stdout


def test_errors_are_one_line_without_traceback(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "shoplm.cli", "ingest", "--items", str(tmp_path / "none.csv"),
                             "--store", "memory://"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "no such file" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_setting_is_one_error_line_naming_it():
    result = runner.invoke(app, ["data", "stats", "--store", "memory://"], env={"SHOPLM_HYBRID_METHOD": "RRF"})
    assert result.exit_code == 1
    assert "SHOPLM_HYBRID_METHOD" in result.stderr and "'weighted' or 'rrf'" in result.stderr


def test_search_prints_a_page_with_total_facets_and_sort_as_the_api_does(tmp_path, monkeypatch):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,brand,price,category\n"
                     "d1,Cordless drill 18V,Makita,129,Tools > Drills\nd2,Hammer drill,Bosch,89,Tools > Drills\n"
                     "d3,Drill bit set,Bosch,24,Tools > Accessories\ng1,Wood glue,Titebond,6.5,Adhesives\n")
    url = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setenv("SHOPLM_EMBEDDING_CACHE_DIR", str(tmp_path / "cache"))
    assert run("ingest", "--items", str(items), "--store", url).exit_code == 0
    result = run("search", "dril", "--store", url, "--index", str(tmp_path / "index"), "--facet", "brand",
                 "--filter", "price:..100", "--sort", "price_asc", "--json")
    assert result.exit_code == 0, result.output
    page = json.loads(result.stdout)
    assert page["corrected_query"] == "drill"
    assert [row["item_id"] for row in page["items"]] == ["d3", "d2"] and page["total"] == 2
    assert page["facets"]["brand"] == {"Bosch": 2}
    bad = run("search", "drill", "--store", url, "--index", str(tmp_path / "index"), "--facet", "colour")
    assert bad.exit_code != 0 and "colour" in bad.output and "brand" in bad.output
    suggested = run("suggest", "cord", "--items", str(items), "--json")
    assert suggested.exit_code == 0, suggested.output
    assert "cordless drill" in suggested.stdout
