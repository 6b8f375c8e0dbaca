"""Catalog-only adaptation writes a model the encoder loads, with the input's dimension, new
vectors and new cache keys; its pseudo-queries are honest crops of the item; and the CLI
refuses a missing catalog in one line."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from shoplm.data.records import Item
from shoplm.data.text import item_texts
from shoplm.lm.cache import EmbeddingCache
from shoplm.lm.encoder import Encoder
from shoplm.lm.pretrain import (
    SUMMARY_FILE, ItemText, PretrainConfig, anchors_of, make_batch, pretrain, title_anchor, with_typos,
)

PRODUCTS = [
    ("Cordless Drill 18V with 2 Batteries", "Tools > Power Tools > Drills", "Makita"),
    ("Hammer Drill 750W Corded", "Tools > Power Tools > Drills", "Bosch"),
    ("Drill Bit Set for Wood and Metal 15-Piece", "Tools > Accessories > Drill Bits", "DeWalt"),
    ("Hand Saw for Wood 500 mm", "Tools > Hand Tools > Saws", "Stanley"),
    ("Circular Saw 1200W with Laser Guide", "Tools > Power Tools > Saws", "Bosch"),
    ("Waterproof Wood Glue 250 ml", "Building > Adhesives", "Titebond"),
    ("Super Glue Gel 20 g", "Building > Adhesives", "Loctite"),
    ("Silver Duct Tape 50 m", "Building > Tapes", "3M"),
    ("Sandpaper Assortment 120-240 Grit", "Tools > Accessories > Abrasives", "Norton"),
    ("Random Orbit Sander 300W", "Tools > Power Tools > Sanders", "Makita"),
    ("LED Work Light with Magnetic Base", "Lighting > Work Lights", "Milwaukee"),
    ("Extension Cord 10 m with 3 Sockets", "Electrical > Cords", "Woods"),
    ("Anti-Fog Safety Goggles", "Safety > Eye Protection", "3M"),
    ("Glacier Bay 30 in. Bath Vanity in White", "Bath > Vanities", "Glacier Bay"),
    ("Single-Handle Kitchen Faucet in Chrome", "Kitchen > Faucets", "Moen"),
    ("Shower Head 5-Spray in Brushed Nickel", "Bath > Shower Heads", "Delta"),
    ("Interior Latex Paint Eggshell 1 gal.", "Paint > Interior Paint", "BEHR"),
    ("Exterior Wood Stain Cedar 1 gal.", "Paint > Stains", "Cabot"),
    ("Paint Roller Kit 9 in. with Tray", "Paint > Supplies", "Wooster"),
    ("Cast Iron Skillet 12 in.", "Kitchen > Cookware", "Lodge"),
    ("Stainless Steel Microwave 1.9 cu. ft. Over the Range", "Appliances > Microwaves", "Whirlpool"),
    ("Front Load Washer 4.5 cu. ft. in White", "Appliances > Washers", "LG"),
    ("Gas Lawn Mower 22 in. Self-Propelled", "Outdoor > Mowers", "Toro"),
    ("Garden Hose 50 ft. Kink Free", "Outdoor > Watering", "Flexzilla"),
    ("Cedar Raised Garden Bed 4 ft. x 8 ft.", "Outdoor > Garden", "Greenes"),
    ("Galvanized Deck Screws 3 in. 1 lb.", "Hardware > Screws", "Grip-Rite"),
    ("12-Gauge Angle Bracket Galvanized", "Hardware > Brackets", "Simpson Strong-Tie"),
    ("Door Knob Satin Nickel Privacy", "Hardware > Door Knobs", "Kwikset"),
    ("Smart Thermostat with Wi-Fi", "Heating > Thermostats", "Honeywell"),
    ("Ceiling Fan 52 in. with Light Kit", "Lighting > Ceiling Fans", "Hunter"),
]
ITEMS = [Item(item_id=str(i), title=title, category=category, brand=brand,
              description=f"{title} by {brand}. Built for everyday jobs around the house. Backed by a warranty."
              if i % 2 else None)
         for i, (title, category, brand) in enumerate(PRODUCTS)]
TEXTS = [ItemText(text, i.title, i.category, i.brand, i.description) for i, text in zip(ITEMS, item_texts(ITEMS))]
TINY = PretrainConfig(steps=3, batch_size=8, lr=5e-5, max_seq_length=32, max_minutes=5.0)


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "model"
    return out, pretrain(TEXTS, out, TINY)


@pytest.fixture(scope="module")
def base():
    return Encoder()


def test_the_output_loads_as_an_encoder_with_new_vectors(adapted, base):
    out, result = adapted
    assert (result.steps, result.planned_steps, result.cut_short) == (3, 3, False)
    encoder = Encoder(out)
    texts = [t.text for t in TEXTS]
    new, old = encoder.encode(texts), base.encode(texts)
    assert new.shape == old.shape == (len(ITEMS), base.dim)
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), 1.0, atol=1e-3)
    cosine = (new * old).sum(axis=1)
    assert cosine.min() < 0.99999 and cosine.mean() > 0.9, cosine  # moved, not wrecked, by 3 small steps
    assert encoder.model.max_seq_length == base.model.max_seq_length  # trained at 32, reads whole texts again


def test_the_adapted_model_gets_its_own_cache_keys(adapted, base, tmp_path):
    out, _ = adapted
    encoder = Encoder(out)
    assert encoder.fingerprint != base.fingerprint
    adapted_cache = EmbeddingCache(tmp_path, encoder.fingerprint, encoder.dim)
    assert adapted_cache.dir != EmbeddingCache(tmp_path, base.fingerprint, base.dim).dir


def test_the_summary_says_what_was_done(adapted):
    out, result = adapted
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["steps"] == 3 and summary["config"]["batch_size"] == 8
    assert sum(result.pairs.values()) == 3 * 8 and set(result.pairs) <= {"title", "category", "description"}


def test_a_title_anchor_is_some_of_its_words_in_order_never_all():
    rng = random.Random(0)
    for contiguous in (False, True):
        cfg = PretrainConfig(contiguous=contiguous, typos=0.0)
        for title, _, _ in PRODUCTS:
            words = title.split()
            for _ in range(20):
                anchor = title_anchor(title, rng, cfg).split()
                assert 2 <= len(anchor) < len(words)
                position = iter(words)
                assert all(word in position for word in anchor)  # a subsequence of the title
                if contiguous:
                    assert " ".join(anchor) in title
    assert title_anchor("Hammer", rng, PretrainConfig()) is None
    assert title_anchor("3 in. x 8 ft.", rng, PretrainConfig()) is None  # no word of 3+ letters


def test_typos_are_small_edits_of_long_words_only():
    rng = random.Random(0)
    words = ["Glacier", "Bay", "30", "in.", "Vanity", "White"]
    assert with_typos(words, rng, 0.0) == words
    for _ in range(50):
        typed = with_typos(words, rng, 1.0)
        assert typed != words and words == ["Glacier", "Bay", "30", "in.", "Vanity", "White"]  # input untouched
        assert all(word in "".join(typed) for word in ("Bay", "30", "in."))  # short words kept (perhaps joined)
        assert abs(len("".join(typed)) - len("".join(words))) <= 3  # one letter more or less per edited word


def test_anchors_come_from_the_fields_an_item_has():
    rng = random.Random(0)
    with_description, without = anchors_of(TEXTS[1], rng, PretrainConfig()), anchors_of(TEXTS[0], rng, PretrainConfig())
    assert with_description["category"] == "Power Tools, Drills, Bosch"
    assert with_description["description"] in ITEMS[1].description
    assert set(without) == {"title", "category"}
    assert set(anchors_of(TEXTS[1], rng, PretrainConfig(kinds=("title",)))) == {"title"}


def test_a_batch_repeats_no_text():
    rng = random.Random(0)
    items = TEXTS + TEXTS  # every text twice: the copies must wait for another batch
    order = list(range(len(items)))
    batch = make_batch(items, order, rng, PretrainConfig(batch_size=40, kinds=("category",)))
    strings = [p.anchor for p in batch] + [p.positive for p in batch]
    assert len(strings) == len(set(strings)) and len(batch) == len(ITEMS)  # each text once, not twice
    assert len(order) == len(items) - len(batch)  # those left wait, none is dropped


def test_the_cli_refuses_a_missing_catalog_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "shoplm.cli", "pretrain", "--items", str(tmp_path / "none.csv"),
                             "--out", str(tmp_path / "model")], capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such file" in lines[0], result.stderr
    assert not (tmp_path / "model").exists()


def test_the_cli_help_states_the_library_defaults():
    import typing

    from shoplm.cli.pretrain import pretrain as command

    hints = typing.get_type_hints(command, include_extras=True)
    cfg = PretrainConfig()
    for option, value in (("minutes", cfg.max_minutes), ("steps", cfg.steps), ("batch_size", cfg.batch_size),
                          ("lr", cfg.lr)):
        assert f"(default {value:g})" in hints[option].__metadata__[0].help, option
