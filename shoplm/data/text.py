"""Item text: what the language model reads about a product.

A template over the item's fields; empty fields and their separators are dropped, so
"{title}. {category}. {brand}." never leaves ". ." behind for an item without a brand.
Attributes are reachable as `{attr:NAME}`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

from shoplm.errors import ConfigError
from shoplm.data.records import ITEM_FIELDS, Item

# Title first: the encoder truncates at max_seq_length tokens, and the title says most.
DEFAULT_TEMPLATE = "{title}. {category}. {brand}. {description}"
_FIELD = re.compile(r"\{([a-z_]+(?::[^{}]+)?)\}")


def check_template(template: str) -> None:
    names = _FIELD.findall(template)
    if not names:
        raise ConfigError(f"item text template {template!r} names no field; use e.g. {DEFAULT_TEMPLATE!r}")
    for name in names:
        if not name.startswith("attr:") and name not in ITEM_FIELDS:
            raise ConfigError(
                f"item text template {template!r}: unknown field {{{name}}}; "
                f"expected one of {', '.join('{' + f + '}' for f in ITEM_FIELDS)} or {{attr:NAME}}"
            )


def item_text(item: Item, template: str = DEFAULT_TEMPLATE) -> str:
    """The text the encoder reads for `item`, e.g. "Hand saw. Tools > Hand Tools. Stanley."."""
    pieces = re.split(r"(\{[^{}]+\})", template)
    out: list[str] = []
    pending = ""  # literal text between two fields, emitted only if both sides are non-empty
    for piece in pieces:
        match = _FIELD.fullmatch(piece)
        if not match:
            pending += piece
            continue
        value = _field_value(item, match.group(1))
        if value:
            out.append((pending if out else pending.lstrip(". ,;:-")) + value)
        pending = ""
    text = "".join(out)
    tail = pending.rstrip()
    return (text + tail if text else "").strip()


def item_texts(items: Sequence[Item], template: str = DEFAULT_TEMPLATE) -> list[str]:
    check_template(template)
    return [item_text(item, template) for item in items]


def _field_value(item: Item, name: str) -> str:
    if name.startswith("attr:"):
        value = item.attributes.get(name[5:])
    else:
        value = getattr(item, name)
    if value is None or value == "":
        return ""
    return str(value).strip()


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace runs as one space, none at either end: " Cordless  DRILL" -> "cordless drill".
    How suggestions, merchandising rules and synonyms compare what shoppers type."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
