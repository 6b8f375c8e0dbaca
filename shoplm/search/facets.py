"""Facets and filters over the catalog's rows: what a storefront's sidebar is built from.

    columns = FacetColumns(schema).extended(ids, items)        # rows only grow: extend, never rewrite
    clauses = parse_filters(["brand:DeWalt|Makita", "price:10..50", "-available:false"], schema)
    keep = columns.mask(clauses)                               # bool[rows]
    counts = columns.facets(["brand", "category", "price"], base, clauses, top=10)

Rows are the vector index's rows (an updated item gets a new row and its old one dies), so
the columns are appended to and never rewritten. Each field is stored as (row, value code)
pairs, which holds list-valued attributes (`colors: ["red", "blue"]`) as well as single
values; a count is one `np.bincount` over the pairs of the rows in a set, a filter one
`np.isin` over them: a few milliseconds at a million rows.

Filter syntax (one clause per `filter` parameter; clauses are combined with AND):

    brand:DeWalt            equality            brand:DeWalt|Makita   any of
    -brand:Ryobi            none of             category:Tools > Drills   path prefix
    price:10..50            10 <= price < 50    price:..50  price:10..    open ranges
    available:true          booleans are the words true / false

Numeric ranges are half-open, like the price buckets of the facets (`"10..50"`), so a
bucket's count is exactly what clicking it shows. Counting the facet of a field leaves that
field's own clauses out (disjunctive faceting, as Algolia and Typesense do), so a shopper
who picked one brand still sees how many items each other brand has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from shoplm.data.records import CATEGORY_SEPARATOR, Item

# Fields every catalog has; any other name is an item attribute (`Item.attributes`).
CORE_FIELDS = ("category", "brand", "price", "available", "group_id", "created_at")
NUMERIC_CORE = ("price", "created_at")
MAX_CATEGORY_LEVELS = 8


class FilterError(ValueError):
    """A filter or facet the schema does not allow; the message names it and lists the allowed ones."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Schema:
    """Which fields a shop may facet and filter on (settings `search_facets`, `search_filters`)
    and the price buckets of the price facet."""

    facetable: tuple[str, ...] = ("category", "brand", "price", "available")
    filterable: tuple[str, ...] = ("category", "brand", "price", "available", "group_id")
    price_buckets: tuple[float, ...] = (10, 25, 50, 100, 250, 500, 1000)
    numeric: tuple[str, ...] = ()  # attributes read as numbers (ranges, buckets) besides price and created_at

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.facetable + self.filterable))

    def is_numeric(self, field: str) -> bool:
        return field in NUMERIC_CORE or field in self.numeric

    @classmethod
    def from_settings(cls, settings) -> "Schema":
        return cls(tuple(settings.search_facets), tuple(dict.fromkeys([*settings.search_facets, *settings.search_filters])),
                   tuple(sorted(settings.search_price_buckets)), tuple(settings.search_numeric_attributes))

    def check_facets(self, names: Sequence[str]) -> list[str]:
        allowed = {*self.facetable, *(f"category.lvl{i}" for i in range(MAX_CATEGORY_LEVELS))} \
            if "category" in self.facetable else set(self.facetable)
        for name in names:
            if name not in allowed:
                raise FilterError("facets", f"facets: {name!r} is not a facet of this catalog; allowed: "
                                  f"{', '.join(self.facetable)} (and category.lvl0..lvl{MAX_CATEGORY_LEVELS - 1})"
                                  " — add one with SHOPLM_SEARCH_FACETS")
        return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Clause:
    """One filter clause: `field` is any of `values` (equality) or in [low, high) (a range);
    `negate` turns it into none of them / outside the range."""

    field: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    negate: bool = False

    @property
    def is_range(self) -> bool:
        return not self.values


def parse_filters(texts: Iterable[str], schema: Schema) -> list[Clause]:
    """The clauses of `filter` parameters (syntax in the module docstring)."""
    return [parse_clause(text, schema) for text in texts if text.strip()]


def parse_clause(text: str, schema: Schema) -> Clause:
    raw = text.strip()
    negate = raw.startswith("-")
    body = raw[1:] if negate else raw
    field, sep, value = body.partition(":")
    field, value = field.strip(), value.strip()
    if not sep or not field:
        raise FilterError("filter", f"filter {text!r}: write FIELD:VALUE (brand:DeWalt, price:10..50, -brand:Ryobi)")
    if field not in schema.filterable:
        raise FilterError("filter", f"filter {text!r}: {field!r} is not filterable; allowed: "
                          f"{', '.join(schema.filterable)} — add one with SHOPLM_SEARCH_FILTERS")
    if not value:
        raise FilterError("filter", f"filter {text!r}: no value after '{field}:'")
    if schema.is_numeric(field):
        if ".." in value:
            low, _, high = value.partition("..")
            bounds = [_number(b, text, field) if b.strip() else None for b in (low, high)]
            if bounds[0] is not None and bounds[1] is not None and bounds[0] >= bounds[1]:
                raise FilterError("filter", f"filter {text!r}: the range is empty (LOW must be below HIGH)")
            return Clause(field, low=bounds[0], high=bounds[1], negate=negate)
        return Clause(field, tuple(_number(v, text, field) for v in value.split("|")), negate=negate)
    values = [v.strip() for v in value.split("|") if v.strip()]
    if field == "available":
        if any(v.lower() not in ("true", "false") for v in values):
            raise FilterError("filter", f"filter {text!r}: available is true or false")
        return Clause(field, tuple(v.lower() for v in values), negate=negate)
    if field == "category":
        values = [CATEGORY_SEPARATOR.join(p.strip() for p in v.split(">") if p.strip()) for v in values]
    return Clause(field, tuple(values), negate=negate)


def _number(text: str, clause: str, field: str) -> float:
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise FilterError("filter", f"filter {clause!r}: {field} takes numbers or a range LOW..HIGH, got {text.strip()!r}")
    return number


def bucket_label(low: float | None, high: float | None) -> str:
    """`"10..25"`, `"..10"`, `"1000.."`: the same text a range filter takes."""
    return f"{'' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'}"


class _Field:
    """(row, code) pairs of one field; codes index `values`. `appended` returns a new field
    sharing the value table (append-only), so a reader of the old one is never disturbed."""

    def __init__(self, rows=None, codes=None, values: list[Any] | None = None, code: dict[Any, int] | None = None):
        self.rows = np.zeros(0, dtype=np.int64) if rows is None else rows
        self.codes = np.zeros(0, dtype=np.int32) if codes is None else codes
        self.values: list[Any] = [] if values is None else values
        self._code: dict[Any, int] = {} if code is None else code

    def appended(self, rows: list[int], values: list[Any]) -> "_Field":
        codes = []
        for value in values:
            code = self._code.get(value)
            if code is None:
                code = self._code[value] = len(self.values)
                self.values.append(value)
            codes.append(code)
        return _Field(np.concatenate([self.rows, np.asarray(rows, dtype=np.int64)]),
                      np.concatenate([self.codes, np.asarray(codes, dtype=np.int32)]), self.values, self._code)

    def codes_of(self, values: Iterable[Any]) -> np.ndarray:
        return np.asarray([self._code[v] for v in values if v in self._code], dtype=np.int32)

    def any_of(self, values: Iterable[Any], n_rows: int) -> np.ndarray:
        keep = np.zeros(n_rows, dtype=bool)
        codes = self.codes_of(values)
        if len(codes):
            keep[self.rows[np.isin(self.codes, codes)]] = True
        return keep

    def counts(self, rows_in: np.ndarray, units: np.ndarray | None = None) -> np.ndarray:
        """int64[len(values)]: rows of the set that have each value; with `units` (int64[rows],
        a row's variant group or a number of its own) distinct units instead of rows."""
        sel = rows_in[self.rows]
        return _distinct_counts(self.codes[sel], None if units is None else units[self.rows[sel]], len(self.values))


def _distinct_counts(codes: np.ndarray, units: np.ndarray | None, n: int) -> np.ndarray:
    if units is None:
        return np.bincount(codes, minlength=n)
    width = int(units.max()) + 1 if len(units) else 1
    pairs = np.unique(codes.astype(np.int64) * width + units)
    return np.bincount(pairs // width, minlength=n)


# Always kept, whatever the schema: sorting reads price and created_at, grouping group_id.
ALWAYS = ("price", "created_at", "group_id")


class FacetColumns:
    """The schema's fields as columns over rows 0..n_rows. A snapshot: `extended` returns a
    new one with the rows the index gained, so a request keeps reading the one it started with."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self.n_rows = 0
        self.numbers: dict[str, np.ndarray] = {f: np.zeros(0) for f in (*NUMERIC_CORE, *schema.numeric)}
        self.fields: dict[str, _Field] = {name: _Field() for name in dict.fromkeys((*schema.fields, *ALWAYS))
                                          if name not in self.numbers and name != "category"}
        self.levels: list[_Field] = []  # category path prefixes by level

    def extended(self, ids: Sequence[str], items: dict[str, Item]) -> "FacetColumns":
        """These columns plus rows n_rows..len(ids) (row r holds item ids[r]; a row whose
        item is gone stays empty); `self` when there are none."""
        start, end = self.n_rows, len(ids)
        if end <= start:
            return self
        new = FacetColumns.__new__(FacetColumns)
        new.schema, new.n_rows = self.schema, end
        rows_items = [(i, items.get(ids[i])) for i in range(start, end)]
        new.numbers = {}
        for name, old in self.numbers.items():
            column = np.asarray([math.nan if item is None else _numeric(_value(item, name)) for _, item in rows_items])
            new.numbers[name] = np.concatenate([old, column])
        new.fields = {}
        for name in dict.fromkeys((*self.schema.fields, *ALWAYS)):
            if name in new.numbers or name == "category":
                continue
            rows, values = [], []
            for i, item in rows_items:
                for value in _values(item, name) if item is not None else ():
                    rows.append(i)
                    values.append(value)
            new.fields[name] = self.fields.get(name, _Field()).appended(rows, values)
        new.levels = self._levels_appended(rows_items)
        return new

    def _levels_appended(self, rows_items: list[tuple[int, Item | None]]) -> list[_Field]:
        per_level: list[tuple[list[int], list[str]]] = [([], []) for _ in range(MAX_CATEGORY_LEVELS)]
        for i, item in rows_items:
            path = item.category_path[:MAX_CATEGORY_LEVELS] if item is not None else []
            for level in range(len(path)):
                per_level[level][0].append(i)
                per_level[level][1].append(CATEGORY_SEPARATOR.join(path[: level + 1]))
        levels = list(self.levels)
        for level, (rows, values) in enumerate(per_level):
            if rows or level < len(levels):
                while len(levels) <= level:
                    levels.append(_Field())
                levels[level] = levels[level].appended(rows, values)
        return levels

    def group_codes(self) -> np.ndarray:
        """int32[rows]: each row's group (an index into the group ids), -1 for none."""
        field = self.fields["group_id"]
        codes = np.full(self.n_rows, -1, dtype=np.int32)
        codes[field.rows] = field.codes
        return codes

    # --- filters ---------------------------------------------------------------------------
    def clause_mask(self, clause: Clause) -> np.ndarray:
        n = self.n_rows
        if clause.field in self.numbers:
            column = self.numbers[clause.field]
            if clause.is_range:
                keep = np.ones(n, dtype=bool)
                if clause.low is not None:
                    keep &= column >= clause.low  # NaN compares False: no value never passes a bound
                if clause.high is not None:
                    keep &= column < clause.high
            else:
                keep = np.isin(column, np.asarray(clause.values, dtype=np.float64))
        elif clause.field == "category":
            keep = np.zeros(n, dtype=bool)
            for value in clause.values:
                depth = value.count(CATEGORY_SEPARATOR)
                if depth < len(self.levels):
                    keep |= self.levels[depth].any_of([value], n)
        else:
            keep = self.fields[clause.field].any_of(clause.values, n)
        return ~keep if clause.negate else keep

    def mask(self, clauses: Sequence[Clause], skip: str | None = None) -> np.ndarray:
        """bool[rows]: rows passing every clause (those on `skip` left out)."""
        keep = np.ones(self.n_rows, dtype=bool)
        for clause in clauses:
            if clause.field != skip:
                keep &= self.clause_mask(clause)
        return keep

    # --- facets ----------------------------------------------------------------------------
    def units(self) -> np.ndarray | None:
        """int64[rows]: each row's variant group, or a number of its own; None when no item has a group."""
        groups = self.group_codes()
        if not (groups >= 0).any():
            return None
        return np.where(groups >= 0, groups, int(groups.max()) + 1 + np.arange(self.n_rows)).astype(np.int64)

    def facets(self, names: Sequence[str], base: np.ndarray, clauses: Sequence[Clause], top: int = 10,
               grouped: bool = False) -> dict[str, dict[str, int]]:
        """{facet: {value: count}} over `base` (bool[rows]: the result set before any clause)
        narrowed by every clause except the facet's own. Values by count, then by value;
        at most `top` per facet (per level for the category tree), plus any value a clause
        selected. `grouped`: count variant groups, not items (as the pages do), so a value's
        count is what clicking it shows."""
        out: dict[str, dict[str, int]] = {}
        cache: dict[str, np.ndarray] = {}
        units = self.units() if grouped and names else None
        for name in names:
            field = "category" if name.startswith("category") else name
            if field not in cache:
                cache[field] = base & self.mask(clauses, skip=field)
            rows = cache[field]
            if name == "category":
                out[name] = self._category_tree(rows, [c for c in clauses if c.field == "category"], top, units)
            elif name.startswith("category.lvl"):
                level = int(name.removeprefix("category.lvl"))
                out[name] = _top(self.levels[level], rows, top, units) if level < len(self.levels) else {}
            elif field in self.numbers:
                out[name] = self._buckets(rows, field, units)
            else:
                selected = [v for c in clauses if c.field == field and not c.negate for v in c.values]
                out[name] = _top(self.fields[field], rows, top, units, selected)
        return out

    def _category_tree(self, rows: np.ndarray, selected: Sequence[Clause], top: int,
                       units: np.ndarray | None) -> dict[str, int]:
        """Level 0, and below it the children of each level of the selected path (a
        drill-down menu): `{"Tools": 40, "Tools > Drills": 12, "Tools > Saws": 9, ...}`."""
        path = next((c.values[0].split(CATEGORY_SEPARATOR) for c in selected if not c.negate and len(c.values) == 1), [])
        out: dict[str, int] = {}
        for level in range(min(len(path) + 1, len(self.levels))):
            parent = CATEGORY_SEPARATOR.join(path[:level])
            counts = _top(self.levels[level], rows, None, units)
            children = {v: n for v, n in counts.items() if level == 0 or v.startswith(parent + CATEGORY_SEPARATOR)}
            out.update(dict(list(children.items())[:top]))
        return out

    def _buckets(self, rows: np.ndarray, field: str, units: np.ndarray | None) -> dict[str, int]:
        column = self.numbers[field]
        present = rows & ~np.isnan(column)
        values = column[present]
        if field == "price":
            edges = list(self.schema.price_buckets)
        else:  # other numbers: five equal-count buckets of this result set, on round-ish edges
            if not len(values):
                return {}
            edges = sorted({float(f"{q:.2g}") for q in np.quantile(values, [0.2, 0.4, 0.6, 0.8])})
        bounds = [None, *edges, None]
        buckets = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
        counts = _distinct_counts(buckets, None if units is None else units[present], len(edges) + 1)
        return {bucket_label(bounds[i], bounds[i + 1]): int(n) for i, n in enumerate(counts) if n}


def _top(field: _Field, rows: np.ndarray, top: int | None, units: np.ndarray | None = None,
         selected: Sequence[Any] = ()) -> dict[str, int]:
    counts = field.counts(rows, units)
    order = sorted(np.flatnonzero(counts), key=lambda c: (-counts[c], field.values[c]))
    if top is not None:
        order = order[:top]
    out = {field.values[c]: int(counts[c]) for c in order}
    for value in selected:  # a checked value stays in the sidebar, with its true count
        if value not in out:
            codes = field.codes_of([value])
            out[value] = int(counts[codes[0]]) if len(codes) else 0
    return out


def _value(item: Item, field: str) -> Any:
    if field in ("category", "brand", "price", "available"):
        return getattr(item, field)
    return item.attributes.get(field)


def _values(item: Item, field: str) -> list[Any]:
    """The item's values of a categorical field as text (booleans as true/false): one, several
    (a list attribute), or none."""
    value = _value(item, field)
    values = value if isinstance(value, (list, tuple)) else [value]
    return list(dict.fromkeys(_text(v) for v in values if v is not None and not isinstance(v, (dict, list))))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


def _numeric(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan
