"""Fixtures for the reliability tests: a small catalog, and where figures are written.

Each test writes what it measured (events sent, acknowledged and found; requests, errors
and latencies; examples tried) as JSON under $SHOPLM_RELIABILITY_DIR (default
var/reliability), so the figures of a CI run can be read, not only its pass/fail."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shoplm.data.records import Item

WORDS = ["cordless drill", "hammer", "wood glue", "duct tape", "sandpaper", "circular saw", "screwdriver set",
         "paint roller", "ladder", "work gloves", "safety goggles", "tape measure", "spirit level", "wrench",
         "pliers", "utility knife", "extension cord", "led work light", "toolbox", "wall anchors"]
CATEGORIES = ["Tools > Power Tools", "Tools > Hand Tools", "Adhesives", "Paint", "Safety", "Electrical"]


def catalog(n: int = 60) -> list[Item]:
    """n items with varied titles, categories, brands and prices."""
    return [Item(f"item-{i}", f"{WORDS[i % len(WORDS)].title()} model {i}", category=CATEGORIES[i % len(CATEGORIES)],
                 brand=f"Brand{i % 7}", price=float(5 + (i * 37) % 200)) for i in range(n)]


def report(name: str, figures: dict) -> dict:
    directory = Path(os.environ.get("SHOPLM_RELIABILITY_DIR", "var/reliability"))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(figures, indent=2))
    print(f"{name}: {json.dumps(figures)}")
    return figures


@pytest.fixture
def small_catalog() -> list[Item]:
    return catalog()
