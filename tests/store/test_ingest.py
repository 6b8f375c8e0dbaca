"""Ingestion: every bad record reported, good ones stored, counts reconcile, idempotent, crash-safe."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


from shoplm.store.ingest import ingest
from shoplm.store import open_store

FIXTURES = Path(__file__).parents[1] / "fixtures"
ITEMS = FIXTURES / "bad_items.jsonl"
EVENTS = FIXTURES / "bad_events.jsonl"

# (file, row, field, words the reason must contain) for each bad record in the fixtures.
EXPECTED_REJECTIONS = [
    ("bad_items.jsonl", 2, "title", "non-empty"),
    ("bad_items.jsonl", 3, "price", ">= 0"),
    ("bad_events.jsonl", 2, "event_type", "one of search, view"),
    ("bad_events.jsonl", 3, "timestamp", "ISO-8601"),
    ("bad_events.jsonl", 4, "(record)", "malformed JSON"),
    ("bad_events.jsonl", 5, "item_id", "unknown item"),
    ("bad_events.jsonl", 6, "query", "non-empty"),
]


def test_each_bad_record_is_reported_once_and_good_ones_are_stored(store):
    report = ingest(store, items=ITEMS, events=EVENTS)
    lines = [str(r) for f in report.files for r in f.rejections]
    assert len(lines) == len(EXPECTED_REJECTIONS)
    for line, (name, row, field, words) in zip(lines, EXPECTED_REJECTIONS):
        assert line.startswith(f"{FIXTURES / name}:{row}: field '{field}'"), line
        assert words in line, line
    items, events = report.files
    assert (items.read, items.accepted, items.rejected) == (4, 2, 2)
    assert (events.read, events.accepted, events.rejected) == (9, 4, 5)
    assert items.reconciles and events.reconciles
    assert store.counts() == {"items": 2, "events": 4, "judgments": 0}
    saw = store.items(["saw-1"])[0]
    assert saw.available is False and saw.price == 19.9 and saw.attributes == {"colour": "blue"}
    frame = store.events_frame()
    assert frame["event_type"].to_list() == ["view", "search", "add_to_cart", "purchase"]
    # +02:00 is converted to UTC
    assert frame["timestamp"][-1] == 1714558200.0  # 10:10Z


def test_rejection_names_the_value(store):
    report = ingest(store, items=ITEMS)
    price = report.files[0].rejections[1].to_dict()
    assert price["problems"] == [{"field": "price", "value": -3, "expected": "a finite number >= 0"}]


def test_strict_writes_nothing(store):
    report = ingest(store, items=ITEMS, events=EVENTS, strict=True)
    assert not report.written and report.rejected == 7
    assert store.counts() == {"items": 0, "events": 0, "judgments": 0}


def test_strict_writes_everything_when_clean(store, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\na,Alpha\nb,Beta\n")
    report = ingest(store, items=items, strict=True)
    assert report.written and store.counts()["items"] == 2


def test_allow_unknown_items(store):
    report = ingest(store, events=EVENTS, allow_unknown_items=True)
    assert report.files[0].accepted == 5  # the unknown-item click and the drill view now pass
    assert store.counts()["events"] == 5


def test_second_ingest_changes_nothing(store):
    ingest(store, items=ITEMS, events=EVENTS)
    before = store.counts()
    again = ingest(store, items=ITEMS, events=EVENTS)
    assert store.counts() == before
    events = again.files[1]
    assert (events.stored, events.duplicates) == (0, 4)
    assert events.reconciles


def test_repeated_event_in_one_file_is_stored_once(store, tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("timestamp,user_id,event_type,query\n1,u,search,saw\n1,u,search,saw\n2,u,search,saw\n")
    report = ingest(store, events=events)
    assert (report.files[0].stored, report.files[0].duplicates) == (2, 1)


def test_duplicate_item_id_within_a_file_is_rejected(store, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\na,Alpha\na,Alpha again\n")
    report = ingest(store, items=items)
    assert "duplicate of row 2" in str(report.files[0].rejections[0])
    assert store.items(["a"])[0].title == "Alpha"


def test_reingesting_items_updates_them(store, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,price\na,Alpha,1\n")
    ingest(store, items=items)
    items.write_text("item_id,title,price\na,Alpha v2,2\n")
    ingest(store, items=items)
    assert store.items(["a"])[0].title == "Alpha v2" and store.counts()["items"] == 1


def _write_big_events(path: Path, n: int) -> None:
    with open(path, "w") as handle:
        handle.write("timestamp,user_id,session_id,event_type,item_id\n")
        for i in range(n):
            handle.write(f"{1_700_000_000 + i},u{i % 997},s{i % 3001},view,item{i % 50}\n")


def _run_ingest(url: str, events: Path, batch_size: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "shoplm.cli", "ingest", "--events", str(events), "--store", url,
           "--allow-unknown-items", "--batch-size", str(batch_size), "--json"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _no_process_reads(path: Path, timeout: float = 20.0) -> None:
    """Wait until no process has `path` on its command line; fail naming the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and str(path).encode() in (proc / "cmdline").read_bytes():
                    alive.append(int(proc.name))
            except OSError:  # gone meanwhile
                continue
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not alive, f"processes {alive} of the killed ingest are still running"


def test_sigkill_mid_ingest_then_rerun_completes_without_duplicates(durable_store_url, tmp_path):
    n, batch = 120_000, 1_000
    events = tmp_path / "events.csv"
    _write_big_events(events, n)
    store = open_store(durable_store_url)  # creates the schema before the writer starts
    process = _run_ingest(durable_store_url, events, batch)
    target = random.Random(os.getpid()).randint(5, 60) * batch
    deadline = time.monotonic() + 120
    while store.counts()["events"] < target and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    _no_process_reads(events)  # the writer process of an SQL store goes with its parent
    partial = store.counts()["events"]
    assert 0 < partial < n, f"kill came too late or too early: {partial} of {n} stored"
    assert partial % batch == 0, "a killed ingest must leave whole batches only"
    rerun = _run_ingest(durable_store_url, events, batch)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read().decode()
    frame = store.events_frame()
    assert frame.height == n
    assert frame.select(["user_id", "session_id", "event_type", "item_id", "timestamp"]).n_unique() == n
    assert sorted(frame["timestamp"].to_list()) == [1_700_000_000 + i for i in range(n)]
    store.close()
