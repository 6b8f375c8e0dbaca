"""shopify on a product export with a three-variant product, image rows and bad rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoplm.cli import app
from shoplm.data.convert import convert
from shoplm.errors import ConvertError

EXPORT = Path(__file__).parents[2] / "fixtures" / "convert" / "shopify_products.csv"
IMAGES = "https://cdn.shop.example.com/files/"


def items(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["item_id"]: {k: v for k, v in row.items() if v} for row in csv.DictReader(handle)}


def test_counts_reconcile_and_every_rejected_row_is_named(tmp_path):
    report = convert("shopify", EXPORT, tmp_path)
    assert report.counts == {"read": 9, "accepted": 6, "rejected": 3, "items": 5}
    assert [str(r) for r in report.rejected] == [
        "shopify_products.csv:12: no Handle; every row of a product repeats its Handle",
        "shopify_products.csv:13: Handle 'gaiter-lite' has no row with a Title (the product's first row)",
        "shopify_products.csv:14: Variant Inventory Qty 'many'; expected a number",
    ]


def test_three_variants_become_three_items_of_one_group(tmp_path):
    catalog = items(convert("shopify", EXPORT, tmp_path).files["items"])
    variants = [catalog[i] for i in ("TR2-MOSS-42", "TR2-MOSS-43", "trail-runner-2-slate-42")]  # no SKU: handle + options
    assert {v["group_id"] for v in variants} == {"trail-runner-2"}
    assert {v["url"] for v in variants} == {"/products/trail-runner-2"}
    assert [v["title"] for v in variants] == ["Trail Runner 2 - Moss / 42", "Trail Runner 2 - Moss / 43",
                                              "Trail Runner 2 - Slate / 42"]
    assert [(v["color"], v["size"], v["price"]) for v in variants] == [("Moss", "42", "119.0"), ("Moss", "43", "119.0"),
                                                                        ("Slate", "42", "124.0")]
    # in stock; none left and deny; none left but continue (sold on backorder)
    assert [v["available"] for v in variants] == ["True", "False", "True"]
    first = variants[0]
    assert first["description"] == ("A light trail shoe with a waterproof membrane and a 4 mm lugged sole.\n"
                                    "Drop: 6 mm\nWeight: 290 g (size 42)")
    assert (first["brand"], first["category"], first["type"], first["tags"]) == (
        "Northfold", "Apparel & Accessories > Shoes > Athletic Shoes", "Running Shoes", "running, trail, waterproof")
    assert first["image_url"] == IMAGES + "trail-runner-2-moss.jpg" and first["image_alt_text"] == "Trail Runner 2 in moss green"
    assert first["additional_image_urls"] == f"{IMAGES}trail-runner-2-sole.jpg,{IMAGES}trail-runner-2-box.jpg"
    assert variants[2]["image_url"] == IMAGES + "trail-runner-2-slate.jpg" and "image_alt_text" not in variants[2]
    # variant columns come from each variant's own row, product columns from the product's row
    assert [v.get("variant_barcode") for v in variants] == ["0712345000421", "0712345000438", None]
    assert [v.get("variant_compare_at_price") for v in variants] == ["139.00", "139.00", None]
    assert {v["seo_title"] for v in variants} == {"Trail Runner 2 waterproof trail shoe"}


def test_untracked_inventory_is_in_stock_and_a_draft_is_not_listed(tmp_path):
    catalog = items(convert("shopify", EXPORT, tmp_path).files["items"])
    mug, beanie = catalog["MUG-ENAM-350"], catalog["BEANIE-MER"]
    assert (mug["title"], mug["available"], mug["category"]) == ("Enamel Camp Mug 350 ml", "True", "Camp Kitchen")
    assert "color" not in mug and "title" not in {k for k in mug if k.startswith("source_")}  # "Default Title" is no option
    assert (beanie["available"], beanie["status"], beanie["variant_inventory_qty"]) == ("False", "draft", "12")


def test_convert_and_ingest_through_the_cli(tmp_path):
    runner = CliRunner()
    converted = runner.invoke(app, ["data", "convert", "shopify", str(EXPORT), str(tmp_path / "out"), "--json"])
    assert converted.exit_code == 0, converted.output
    report = json.loads(converted.stdout)
    assert report["counts"]["rejected"] == 3 and report["files"]["rejected"].endswith("rejected.csv")
    ingested = runner.invoke(app, ["ingest", "--items", report["files"]["items"], "--store",
                                   f"sqlite:///{tmp_path / 'shop.db'}", "--json"])
    assert ingested.exit_code == 0, ingested.output
    assert [(f["accepted"], f["rejected"]) for f in json.loads(ingested.stdout)["files"]] == [(5, 0)]


def test_a_file_that_is_not_a_product_export_fails(tmp_path):
    (tmp_path / "orders.csv").write_text("Name,Email,Total\n#1001,a@example.com,12.00\n", encoding="utf-8")
    with pytest.raises(ConvertError, match="no Handle or Title column"):
        convert("shopify", tmp_path / "orders.csv", tmp_path / "out")


def test_renamed_columns_and_a_repeated_sku(tmp_path):
    (tmp_path / "p.csv").write_text(
        "URL handle,Title,SKU,Inventory quantity,Variant Price,Option1 Name,Option1 Value\n"
        "cap,Cap,CAP-1,3,15.00,Size,S\ncap,,CAP-1,2,15.00,,M\n", encoding="utf-8")
    report = convert("shopify", tmp_path / "p.csv", tmp_path / "out")
    assert [str(r) for r in report.rejected] == ["p.csv:3: item_id 'CAP-1' is already taken by p.csv:2"]
    assert items(report.files["items"])["CAP-1"]["title"] == "Cap - S"
