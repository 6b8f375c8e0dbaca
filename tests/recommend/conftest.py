"""A small generated shop in the shoplm format: real ISO timestamps, several event types
(search, view, click, add_to_cart, purchase), logged-in users and anonymous sessions.

Items come in product lines (a brand's drill bits of several sizes, ...); shoppers browse
one line, then move to the line that follows it, so both the text and the order carry
signal. Seeded: the same files every run."""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

LINES = [
    ("Bosch", "drill bit", "Tools > Drilling > Drill Bits"),
    ("Makita", "saw blade", "Tools > Cutting > Saw Blades"),
    ("3M", "sanding disc", "Abrasives > Sanding > Discs"),
    ("Gorilla", "wood glue", "Adhesives > Glue > Wood Glue"),
    ("Fluke", "multimeter probe", "Test > Electrical > Probes"),
    ("Pyrex", "glass beaker", "Lab > Glassware > Beakers"),
]
SIZES = ["5 mm", "8 mm", "10 mm", "12 mm", "16 mm"]


def write_shop(directory: Path, n_actors: int = 60, seed: int = 7, anonymous: bool = True) -> tuple[Path, Path]:
    """items.csv and events.csv of the generated shop; every fourth actor an anonymous
    session unless `anonymous` is False."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    items_path, events_path = directory / "items.csv", directory / "events.csv"
    with open(items_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "title", "category", "brand", "price"])
        for li, (brand, kind, category) in enumerate(LINES):
            for si, size in enumerate(SIZES):
                writer.writerow([f"L{li}S{si}", f"{brand} {kind} {size}", category, brand, f"{5 + si * 2.5:.2f}"])
    start = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
    rows = []
    for actor in range(n_actors):
        user, session = (f"u{actor}", "") if actor % 4 or not anonymous else ("", f"s{actor}")
        when = start + timedelta(hours=rng.randint(0, 24 * 20))
        line = rng.randrange(len(LINES))
        for step in range(rng.randint(3, 7)):
            item = f"L{line}S{rng.randrange(len(SIZES))}"
            if rng.random() < 0.3:
                rows.append((when, user, session, "search", "", LINES[line][1]))
                when += timedelta(seconds=20)
            for event_type in rng.choice([["view"], ["view", "click"], ["view", "add_to_cart", "purchase"]]):
                rows.append((when, user, session, event_type, item, ""))
                when += timedelta(minutes=rng.randint(1, 30))
            if step % 2 == 1:
                line = (line + 1) % len(LINES)
    with open(events_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "user_id", "session_id", "event_type", "item_id", "query"])
        for when, user, session, event_type, item, query in rows:
            writer.writerow([when.isoformat().replace("+00:00", "Z"), user, session, event_type, item, query])
    return items_path, events_path


@pytest.fixture
def shop(tmp_path) -> tuple[Path, Path]:
    return write_shop(tmp_path / "shop")


@pytest.fixture
def small_settings(tmp_path, monkeypatch):
    """Tiny model and few epochs, via the environment as a user would set them."""
    env = {
        "SHOPLM_EMBEDDING_CACHE_DIR": str(tmp_path / "cache"),
        "SHOPLM_RECOMMEND_DIM": "16", "SHOPLM_RECOMMEND_LAYERS": "1", "SHOPLM_RECOMMEND_EPOCHS": "2",
        "SHOPLM_RECOMMEND_MAX_LEN": "10", "SHOPLM_SASREC_DIM": "16", "SHOPLM_RECOMMEND_BATCH_SIZE": "32",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from shoplm.config import Settings

    return Settings()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """As in `shoplm train recommend` (SHOPLM_RECOMMEND_THREADS=1): on a shared 2-core
    machine 2 threads spin-wait and run several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
