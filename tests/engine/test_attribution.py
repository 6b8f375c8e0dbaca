"""List ids and the impression log: signed ids any process of the store can check, and
impressions written in batches without losing one."""

from __future__ import annotations

import threading

from shoplm.engine.attribution import ImpressionLog, ListIds
from shoplm.store import open_store
from shoplm.store.base import Impression


def test_list_ids_are_unique_signed_and_checked_without_a_lookup():
    lists = ListIds("secret-a")
    ids = {lists.new() for _ in range(1_000)}
    assert len(ids) == 1_000 and all(lists.valid(i) and len(i) == 24 for i in ids)
    one = next(iter(ids))
    assert not ListIds("secret-b").valid(one)  # another shop's id
    assert not lists.valid(one[:-1] + ("0" if one[-1] != "0" else "1"))  # tampered
    assert not lists.valid("made-up") and not lists.valid("")


def _impression(i: int) -> Impression:
    return Impression(f"l{i:05d}", float(i), "search", (f"item-{i}",), query="q")


def test_impressions_are_batched_and_all_written_on_close():
    store = open_store("memory://")
    log = ImpressionLog(store, flush_s=60.0, batch=50)
    threads = [threading.Thread(target=lambda s=s: [log.record(_impression(s * 100 + i)) for i in range(100)])
               for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert log.recorded == log.written == 800 and store.impressions_frame().height == 800
    log.record(_impression(999_99))  # a closed log starts a new writer
    log.close()
    assert store.impressions_frame().height == 801


class FlakyStore:
    def __init__(self):
        self.calls, self.rows = 0, []

    def add_impressions(self, rows):
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("database restarting")
        self.rows += rows
        return len(rows)


def test_a_failed_write_is_retried_not_lost():
    store = FlakyStore()
    log = ImpressionLog(store, flush_s=60.0)
    for i in range(10):
        log.record(_impression(i))
    assert log.flush() == 0 and log.failed == 1
    assert log.flush() == 10 and [r.list_id for r in store.rows] == [f"l{i:05d}" for i in range(10)]


def test_sampling_keeps_a_share_by_id_and_a_full_buffer_counts_drops():
    lists = ListIds("s")
    log = ImpressionLog(open_store("memory://"), sample_rate=0.25, flush_s=60.0, batch=10**9)
    ids = [lists.new() for _ in range(4_000)]
    kept = [i for i in ids if log.sampled(i)]
    assert 800 < len(kept) < 1_200 and kept == [i for i in ids if log.sampled(i)]  # the same ids every time
    small = ImpressionLog(open_store("memory://"), flush_s=60.0, batch=10**9, max_buffer=5)
    for i in range(8):
        small.record(_impression(i))
    assert (small.recorded, small.dropped) == (5, 3)


def test_into_a_database_a_child_process_writes_and_a_dead_one_is_replaced(tmp_path):
    import os
    import signal

    store = open_store(f"sqlite:///{tmp_path / 'shop.db'}")
    log = ImpressionLog(store, flush_s=60.0)
    for i in range(10):
        log.record(_impression(i))
    assert log.flush() == 10
    writer = log._writer.process
    assert writer.pid != os.getpid() and writer.is_alive()
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(timeout=10)
    for i in range(10, 20):
        log.record(_impression(i))
    assert log.flush() == 10 and log.failed == 0  # a new writer takes over
    assert log._writer.process.pid != writer.pid
    log.record(_impression(20))
    log.close()
    assert log._writer.process is None  # closed with the log
    assert sorted(store.impressions_frame()["list_id"]) == [f"l{i:05d}" for i in range(21)]
    store.close()
