"""A tiny hardware catalog with known answers, and its files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from shoplm.config import Settings
from shoplm.data.records import Item

CATALOG = [
    ("d1", "Cordless drill 18V with two batteries", "Tools > Power Tools > Drills", "DeWalt", 129.0, True),
    ("d2", "Hammer drill corded 7 amp", "Tools > Power Tools > Drills", "Bosch", 89.0, True),
    ("d3", "Right angle drill attachment", "Tools > Power Tools > Drills", "Milwaukee", 39.0, False),
    ("d4", "Compact drill driver kit", "Tools > Power Tools > Drills", "Ryobi", 59.0, True),
    ("s1", "Circular saw 7-1/4 in.", "Tools > Power Tools > Saws", "Makita", 99.0, True),
    ("s2", "Hand saw 15 in. for wood", "Tools > Hand Tools > Saws", "Stanley", 19.0, True),
    ("h1", "Claw hammer 16 oz. fiberglass handle", "Tools > Hand Tools > Hammers", "Estwing", 29.0, True),
    ("p1", "Exterior house paint white 1 gal.", "Paint > Exterior", "Behr", 35.0, True),
    ("p2", "Deck stain and sealer cedar 1 gal.", "Paint > Exterior", "Behr", 42.0, True),
    ("p3", "Paint roller cover 9 in. 3 pack", "Paint > Supplies", "Wooster", 12.0, True),
    ("b1", "Angle bracket galvanized 12-gauge", "Hardware > Brackets", "Simpson Strong-Tie", 3.5, True),
    ("b2", "Shelf bracket white steel 8 in.", "Hardware > Brackets", "Everbilt", 4.0, True),
    ("l1", "LED light bulb 60 watt equivalent soft white 4 pack", "Lighting > Bulbs", "Philips", 9.0, True),
    ("l2", "Outdoor motion sensor flood light", "Lighting > Outdoor", "Defiant", 49.0, True),
]

JUDGMENTS = [
    ("cordless drill", "d1", 2.0), ("cordless drill", "d4", 1.33), ("cordless drill", "d2", 0.67),
    ("hammer", "h1", 2.0), ("hammer", "d2", 0.33),
    ("wood saw", "s2", 2.0), ("wood saw", "s1", 1.0),
    ("white paint", "p1", 2.0), ("white paint", "p3", 0.67),
    ("deck stain", "p2", 2.0),
    ("angle bracket", "b1", 2.0), ("angle bracket", "b2", 1.0),
    ("light bulb", "l1", 2.0), ("flood light", "l2", 2.0), ("paint roller", "p3", 2.0),
    ("circular saw", "s1", 2.0), ("shelf bracket", "b2", 2.0), ("drill attachment", "d3", 1.67),
]


@pytest.fixture
def items() -> list[Item]:
    return [Item(item_id=i, title=t, category=c, brand=b, price=p, available=a) for i, t, c, b, p, a in CATALOG]


@pytest.fixture
def catalog_files(tmp_path: Path) -> tuple[Path, Path]:
    items_path, judgments_path = tmp_path / "items.csv", tmp_path / "judgments.csv"
    with open(items_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "title", "category", "brand", "price", "available"])
        writer.writerows([i, t, c, b, p, str(a).lower()] for i, t, c, b, p, a in CATALOG)
    with open(judgments_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "item_id", "relevance"])
        writer.writerows(JUDGMENTS)
    return items_path, judgments_path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Half the fixture queries in dev; cache and index under tmp_path; fp32 so results do not depend on the CPU."""
    return Settings(embedding_cache_dir=tmp_path / "cache", search_index_dir=tmp_path / "index",
                    search_dev_fraction=0.5, encoder_bf16=False, torch_threads=1, store_url="memory://")


def evaluation_order(pipeline, queries, k):
    """What `eval search` makes of `queries` on `pipeline`'s catalog with its re-ranker
    (`rerank_all` over whole-catalog arrays, MaxSim from the same token vectors)."""
    import numpy as np

    from shoplm.search.rerank import rerank_all

    vectors = np.stack([pipeline.encoder.encode_query(q) for q in queries])
    return rerank_all(pipeline.ranker, pipeline.lexical, pipeline.vectors.vectors, queries, vectors, 100, k,
                      query_tokens=pipeline.encoder.encode_tokens(queries)[1],
                      item_tokens=pipeline.tokens().get(pipeline.encoder, pipeline.lexical.texts))
