"""merchant-center on one catalog written as RSS 2.0, Atom 1.0 and a text feed; also the
price and HTML helpers every shop-export converter uses."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from shoplm.data.convert import convert
from shoplm.data.convert.base import html_to_text, parse_price
from shoplm.errors import ConvertError
from shoplm.store import open_store
from shoplm.store.ingest import ingest

FEEDS = Path(__file__).parents[2] / "fixtures" / "convert" / "merchant_center"
FORMS = ["feed.rss.xml", "feed.atom.xml", "feed.tsv"]
# (line of the bad product in each form, why)
REJECTED = {"feed.rss.xml": [79, 88], "feed.atom.xml": [84, 94], "feed.tsv": [6, 7]}
REASONS = ["price 'twenty EUR'; expected a number and an ISO 4217 currency", "availability 'limited'; expected one of"]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("form", FORMS)
def test_counts_reconcile_and_every_rejected_product_is_named(tmp_path, form):
    report = convert("merchant-center", FEEDS / form, tmp_path)
    assert report.counts == {"read": 6, "accepted": 4, "rejected": 2, "items": 4}
    assert [(r.file, r.line) for r in report.rejected] == [(form, line) for line in REJECTED[form]]
    assert all(reason in r.reason for reason, r in zip(REASONS, report.rejected))
    assert rows(report.files["rejected"]) == [{"file": r.file, "line": str(r.line), "reason": r.reason}
                                             for r in report.rejected]


def test_rss_atom_and_text_feed_give_the_same_items(tmp_path):
    rss, atom, text = (rows(convert("merchant-center", FEEDS / f, tmp_path / f).files["items"]) for f in FORMS)
    assert rss == text
    assert [{k: v for k, v in item.items() if k != "updated"} for item in atom] == rss  # Atom's <updated> is extra
    assert [item["updated"] for item in atom][:2] == ["2024-04-28T17:12:09Z", "2024-04-30T08:00:00Z"]


def test_fields_prices_and_attributes(tmp_path):
    drill, small, medium, large = rows(convert("merchant-center", FEEDS / "feed.rss.xml", tmp_path).files["items"])
    assert drill == {
        "item_id": "DRL-18V-01", "title": "Kestrel 18 V Cordless Drill Driver",
        "description": "Compact drill driver with 2 speeds & an LED work light.\n18 V, 2.0 Ah battery\n13 mm keyless chuck",
        "category": "Tools > Power Tools > Drills", "brand": "Kestrel Tools",
        "price": "79.9", "regular_price": "89.9", "currency": "EUR",  # the sale price is what is paid
        "available": "True", "availability": "in_stock",
        "image_url": "https://shop.example.com/img/drl-18v-01.jpg", "url": "https://shop.example.com/p/drl-18v-01",
        "additional_image_link": "https://shop.example.com/img/drl-18v-01-side.jpg,https://shop.example.com/img/drl-18v-01-case.jpg",
        "google_product_category": "Hardware > Tools > Drills", "gtin": "4012345678901", "mpn": "KT-DD18",
        "condition": "new", "shipping_country": "DE", "shipping_service": "Standard", "shipping_price": "4.95 EUR",
    }
    assert {j["group_id"] for j in (small, medium, large)} == {"JKT-RAIN"}
    assert [(j["size"], j["available"], j["availability"]) for j in (small, medium, large)] == [
        ("S", "True", "in_stock"), ("M", "False", "out_of_stock"), ("L", "True", "preorder")]
    assert small["category"] == "Clothing > Jackets > Rain Jackets" and small["google_product_category"] == "166"


@pytest.mark.parametrize("file_format", ["csv", "jsonl", "parquet"])
def test_converted_items_ingest_with_nothing_rejected(tmp_path, file_format):
    report = convert("merchant-center", FEEDS / "feed.atom.xml", tmp_path, file_format)
    store = open_store("memory://")
    result = ingest(store, items=report.files["items"])
    assert [(f.read, f.accepted, f.rejected) for f in result.files] == [(4, 4, 0)]
    drill = store.items(["DRL-18V-01"])[0]
    assert (drill.price, drill.attributes["currency"], drill.url) == (79.9, "EUR", "https://shop.example.com/p/drl-18v-01")
    assert [i.group_id for i in store.items(["JKT-RAIN-S", "JKT-RAIN-M"])] == ["JKT-RAIN", "JKT-RAIN"]


def test_text_feed_groups_in_the_default_order_and_a_directory_of_feeds(tmp_path):
    src = tmp_path / "feeds"
    src.mkdir()
    (src / "a.tsv").write_text("id\ttitle\tprice\tshipping\n1\tTent\t199 USD\tUS:CA:Ground:9.00 USD,US:NY::12.00 USD\n")
    (src / "b.tsv").write_text("id\ttitle\tprice\n1\tTent again\t1,299.00 USD\n2\tTarp\t12,50 EUR\n")
    report = convert("merchant-center", src, tmp_path / "out")
    assert report.counts == {"read": 3, "accepted": 2, "rejected": 1, "items": 2}
    assert [str(r) for r in report.rejected] == ["b.tsv:2: item_id '1' is already taken by a.tsv:2"]
    tent, tarp = rows(report.files["items"])
    assert (tent["shipping_country"], tent["shipping_region"], tent["shipping_service"], tent["shipping_price"]) == (
        "US,US", "CA,NY", "Ground", "9.00 USD,12.00 USD")
    assert (tent["price"], tent["currency"], tarp["price"], tarp["currency"]) == ("199.0", "USD", "12.5", "EUR")


@pytest.mark.parametrize(("text", "message"), [
    ('<rss version="2.0"><channel><item><title>x</item></channel></rss>', "line 1: not well-formed XML"),
    ('<!DOCTYPE rss [<!ENTITY a "aaaa">]><rss version="2.0"><channel/></rss>', "declares XML entities"),
    ("<catalog><product/></catalog>", "root element is not <rss>"),
])
def test_a_broken_feed_fails_naming_the_file_and_writes_nothing(tmp_path, text, message):
    (tmp_path / "feed.xml").write_text(text, encoding="utf-8")
    with pytest.raises(ConvertError, match=message):
        convert("merchant-center", tmp_path / "feed.xml", tmp_path / "out")
    assert not (tmp_path / "out" / "items.csv").exists()


@pytest.mark.parametrize(("text", "expected"), [
    ("15.00 USD", (15.0, "USD")), ("USD 15.00", (15.0, "USD")), ("15", (15.0, None)), ("15.00usd", (15.0, "USD")),
    ("1,299.00 EUR", (1299.0, "EUR")), ("1.299,00 EUR", (1299.0, "EUR")), ("12,50 EUR", (12.5, "EUR")),
    ("1 299,00 SEK", (1299.0, "SEK")), ("10,000 JPY", (10000.0, "JPY")),
])
def test_prices_parse_with_their_currency(text, expected):
    assert parse_price(text) == expected


@pytest.mark.parametrize("text", ["", "free", "$15", "-5 USD", "USD 15 EUR", "15 US$"])
def test_bad_prices_say_what_was_expected(text):
    with pytest.raises(ValueError, match="expected a number and an ISO 4217 currency"):
        parse_price(text)


def test_html_becomes_text():
    assert html_to_text("<p>Cordless <b>18&nbsp;V</b></p><ul><li>2 batteries</li><li>case</li></ul>"
                        "<script>track()</script><style>p{}</style>") == "Cordless 18 V\n2 batteries\ncase"
    assert html_to_text("Plain   text, 5 < 6 &amp; more") == "Plain text, 5 < 6 & more"
    assert html_to_text("line<br>break<br/>again") == "line\nbreak\nagain"
