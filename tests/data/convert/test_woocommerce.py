"""woocommerce on a product export with a variable product, its variations and bad rows."""

from __future__ import annotations

import csv
from pathlib import Path

from shoplm.data.convert import convert
from shoplm.store import open_store
from shoplm.store.ingest import ingest

EXPORT = Path(__file__).parents[2] / "fixtures" / "convert" / "woocommerce_products.csv"
UPLOADS = "https://shop.example.com/wp-content/uploads/2024/03/"


def items(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["item_id"]: {k: v for k, v in row.items() if v} for row in csv.DictReader(handle)}


def test_counts_reconcile_and_every_rejected_row_is_named(tmp_path):
    report = convert("woocommerce", EXPORT, tmp_path)
    assert report.counts == {"read": 8, "accepted": 6, "rejected": 2, "items": 5}  # the variable parent: accepted, no item
    assert [str(r) for r in report.rejected] == [
        "woocommerce_products.csv:8: Parent 'id:999' names no product in the file (expected id:ID or a SKU)",
        "woocommerce_products.csv:9: Regular price '39,-'; expected a number",
    ]


def test_variations_are_items_of_their_parents_group(tmp_path):
    catalog = items(convert("woocommerce", EXPORT, tmp_path).files["items"])
    assert "TOTE" not in catalog
    sand, olive, black = catalog["TOTE-SAND"], catalog["TOTE-OLIVE"], catalog["104"]  # no SKU: the ID
    assert {v["group_id"] for v in (sand, olive, black)} == {"TOTE"}  # Parent id:101 and Parent TOTE alike
    assert [v["title"] for v in (sand, olive, black)] == ["Canvas Tote Bag - Sand", "Canvas Tote Bag - Olive",
                                                         "Canvas Tote Bag - Black"]
    assert [v["color"] for v in (sand, olive, black)] == ["Sand", "Olive", "Black"]
    assert [(v["price"], v.get("regular_price")) for v in (sand, olive, black)] == [("29.0", "34.0"), ("34.0", None),
                                                                                      ("36.0", None)]
    assert [v["available"] for v in (sand, olive, black)] == ["True", "False", "True"]  # 1, 0, backorder
    # what a variation leaves empty comes from its parent
    assert sand["description"] == "Built to carry\nWaxed cotton canvas with an inner zip pocket & riveted handles."
    assert sand["short_description"] == "Heavy 16 oz canvas, leather handles."
    assert (sand["category"], sand["categories"], sand["brand"], sand["tags"]) == (
        "Bags > Totes", "Bags > Totes, Sale", "Northfold", "canvas, everyday")
    assert (sand["weight_kg"], sand["meta_care_instructions"], sand["date_sale_price_starts"]) == (
        "0.6", "Spot clean only", "2024-05-01")
    assert sand["image_url"] == UPLOADS + "tote-sand.jpg" and "additional_image_urls" not in sand
    assert (black["image_url"], black["additional_image_urls"]) == (UPLOADS + "tote-sand.jpg", UPLOADS + "tote-detail.jpg")


def test_simple_products(tmp_path):
    catalog = items(convert("woocommerce", EXPORT, tmp_path).files["items"])
    candle, gift_set = catalog["CNDL-01"], catalog["CNDL-SET"]
    assert (candle["description"], candle["brand"], candle["price"], candle["stock"]) == (
        "Hand-poured, about 40 hours.", "Hearthline", "12.5", "40")  # no Description: the short one
    assert "group_id" not in candle and "short_description" not in candle
    assert (gift_set["available"], gift_set["published"]) == ("False", "0")  # private


def test_a_variable_product_without_variations_is_an_item(tmp_path):
    (tmp_path / "p.csv").write_text("ID,Type,SKU,Name,Regular price,Attribute 1 name,Attribute 1 value(s)\n"
                                    "7,variable,MUG,Mug,9.5,Color,\"Red, Blue\"\n", encoding="utf-8")
    report = convert("woocommerce", tmp_path / "p.csv", tmp_path / "out")
    assert items(report.files["items"])["MUG"] == {"item_id": "MUG", "title": "Mug", "price": "9.5", "available": "True",
                                                   "color": "Red, Blue"}


def test_converted_items_ingest_with_nothing_rejected(tmp_path):
    report = convert("woocommerce", EXPORT, tmp_path, "jsonl")
    store = open_store("memory://")
    result = ingest(store, items=report.files["items"])
    assert [(f.accepted, f.rejected) for f in result.files] == [(5, 0)]
    assert {i.item_id: i.group_id for i in store.items()} == {"TOTE-SAND": "TOTE", "TOTE-OLIVE": "TOTE", "104": "TOTE",
                                                              "CNDL-01": None, "CNDL-SET": None}
