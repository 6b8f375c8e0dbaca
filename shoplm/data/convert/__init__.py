"""Converters from public data sets to shoplm's items / events / judgments files.

`shoplm data convert FORMAT SRC OUT` calls `convert(FORMAT, SRC, OUT)`. Each converter
is one module with a `convert(src, out, ext) -> ConvertReport` function, registered in
`CONVERTERS`; it reads only `src`, writes `items.<ext>`, `events.<ext>` and/or
`judgments.<ext>` into `out`, and checks its source once, here at the boundary, so
ingestion can trust what it gets. The converters of shop exports (Merchant Center,
Shopify, WooCommerce, GA4, UBI) and the Instacart converter refuse a bad row rather than
the whole file: each is named with its line and why in the report and in `rejected.<ext>`.
See docs/converters.md for the choices each one makes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from shoplm.errors import SourceFileMissing, UnknownConverter, UnsupportedFileType
from shoplm.data.convert import (amazon_recbole, diginetica, ga4, homedepot, instacart, merchant_center, rees46, shopify,
                                 ubi, woocommerce)
from shoplm.data.convert.base import ConvertReport
from shoplm.data.writers import WRITERS


CONVERTERS: dict[str, Callable[[Path, Path, str], ConvertReport]] = {
    "amazon-recbole": amazon_recbole.convert,
    "homedepot": homedepot.convert,
    "diginetica": diginetica.convert,
    "rees46": rees46.convert,
    "instacart": instacart.convert,
    "merchant-center": merchant_center.convert,
    "shopify": shopify.convert,
    "woocommerce": woocommerce.convert,
    "ga4": ga4.convert,
    "ubi": ubi.convert,
}

FILE_FORMATS = tuple(suffix.lstrip(".") for suffix in WRITERS)


def convert(fmt: str, src: Path, out: Path, file_format: str = "csv") -> ConvertReport:
    """Convert the data set at `src` (layout given by `fmt`, a key of `CONVERTERS`) into
    the directory `out`, created if missing, writing `<name>.<file_format>` files."""
    converter = CONVERTERS.get(fmt)
    if converter is None:
        raise UnknownConverter(
            f"no converter for format {fmt!r}; expected one of {', '.join(CONVERTERS)}"
        )
    if file_format not in FILE_FORMATS:
        raise UnsupportedFileType(
            f"cannot write {file_format!r} files; expected one of {', '.join(FILE_FORMATS)}"
        )
    src, out = Path(src), Path(out)
    if not src.exists():
        raise SourceFileMissing(f"{src}: no such file or directory; pass the data set's directory as SRC")
    out.mkdir(parents=True, exist_ok=True)
    return converter(src, out, file_format)
