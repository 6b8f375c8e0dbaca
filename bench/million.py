"""A synthetic catalog of a million products made from real titles, for the `million` section
of bench/bench.py (and `python bench/million.py catalog --out FILE`).

How it is made (seeded, so every run writes the same file): the 54,667 Home Depot titles and
the 49,688 Instacart product names are the base products. Each base product gets up to ten
variants, as a shop lists one product in several colours, sizes or packs: the title plus
" (A, B)", A one of `FINISHES` and B one of `SIZES` (24 x 16 = 384 pairs, ten drawn without
replacement per product), so every title is distinct and real words carry the search. The
1,043,550 variants are shuffled and the first `n` kept. Fields: brand = the title's first
word; category = "Department > Aisle" from Instacart's own tables, and for Home Depot a
two-level path drawn as in the storefront section (`storefront_fields`); price log-normal
around $35 (Home Depot) or $5 (Instacart), in cents. Ids: `hd-<uid>-<v>` and `ic-<id>-<v>`.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np

FINISHES = ("White", "Black", "Brushed Nickel", "Oil-Rubbed Bronze", "Chrome", "Matte Black", "Red", "Blue", "Green",
            "Gray", "Beige", "Walnut", "Oak", "Cherry", "Stainless Steel", "Brass", "Copper", "Ivory", "Navy", "Silver",
            "Natural", "Espresso", "Clear", "Gold")
SIZES = ("2-Pack", "4-Pack", "6-Pack", "10-Pack", "12 in.", "24 in.", "36 in.", "1/2 in.", "3/4 in.", "1 gal.",
         "5 gal.", "Small", "Medium", "Large", "12 oz", "32 oz")
VARIANTS = 10


def _data_dir() -> Path:
    return Path(os.environ.get("SHOPLM_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def _bases(data: Path) -> list[tuple[str, str, str, float]]:
    """(id prefix, title, category, price) per real product."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import storefront_fields  # the storefront section's derived fields, one definition

    rng = np.random.default_rng(0)
    with open(data / "homedepot" / "products.csv", encoding="latin-1", newline="") as f:
        hd = [(r["product_uid"], " ".join(r["title"].split())) for r in csv.DictReader(f)]
    _, hd_categories, hd_prices = storefront_fields([t for _, t in hd], rng)
    bases = [(f"hd-{uid}", title, c, float(p)) for (uid, title), c, p in zip(hd, hd_categories, hd_prices.tolist())]

    def names(file: str, key: str) -> dict[str, str]:
        with open(data / "instacart" / file, newline="") as f:
            return {r[f"{key}_id"]: r[key].title() for r in csv.DictReader(f)}

    aisles, departments = names("aisles.csv", "aisle"), names("departments.csv", "department")
    with open(data / "instacart" / "products.csv", newline="") as f:
        ic = list(csv.DictReader(f))
    ic_prices = np.round(np.clip(rng.lognormal(np.log(5.0), 0.7, len(ic)), 0.5, 200.0), 2)  # (n,)
    bases += [(f"ic-{r['product_id']}", " ".join(r["product_name"].split()),
               f"{departments[r['department_id']]} > {aisles[r['aisle_id']]}", float(p))
              for r, p in zip(ic, ic_prices.tolist())]
    return bases


def catalog(out: Path, n: int = 1_000_000, data: Path | None = None) -> int:
    """Writes `n` items (item_id,title,brand,category,price) to `out`; returns how many."""
    rng = np.random.default_rng(1)
    bases = _bases(data or _data_dir())
    pairs = len(FINISHES) * len(SIZES)
    picks = np.stack([rng.choice(pairs, VARIANTS, replace=False) for _ in bases])  # (bases, VARIANTS)
    order = rng.permutation(len(bases) * VARIANTS)[:n]  # (n,) flat (base, variant) indexes
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "title", "brand", "category", "price"])
        for flat in order.tolist():
            b, v = divmod(flat, VARIANTS)
            prefix, title, category, price = bases[b]
            finish, size = divmod(int(picks[b, v]), len(SIZES))
            words = title.split()
            writer.writerow([f"{prefix}-{v}", f"{title} ({FINISHES[finish]}, {SIZES[size]})",
                             words[0] if words else "", category, f"{price * (1 + 0.1 * v):.2f}"])
    tmp.replace(out)
    return len(order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("catalog", help="write the synthetic catalog")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"{catalog(args.out, args.n):,} items in {args.out}")


if __name__ == "__main__":
    main()
