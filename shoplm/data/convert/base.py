"""What every converter shares: the report it returns, the check on its source files, and,
for the shop-export converters, the tally of rejected rows and the readers and field
helpers they all need (tables, JSON records, prices, HTML descriptions, attribute names)."""

from __future__ import annotations

import csv
import gzip
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from shoplm.data.records import DISPLAY_FIELDS, ITEM_FIELDS, parse_event, parse_item
from shoplm.data.writers import write_records
from shoplm.errors import ConvertError, SourceFileMissing

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # product descriptions run long


class Rejected(NamedTuple):
    """One source row a converter could not map, named by its file and line and why."""

    file: str
    line: int  # 1-based line where the row (record, feed item) starts
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class ConvertReport(NamedTuple):
    """What a converter wrote: `files={"items": out/"items.csv", ...}` and counts such as
    `{"items": 4385, "events": 59427, "users": 8442}`; `rejected` names every source row
    that was read but not converted (the shop-export converters also write them to
    `rejected.<ext>`)."""

    files: dict[str, Path]
    counts: dict[str, int]
    rejected: tuple[Rejected, ...] = ()


def require_file(path: Path, what: str) -> Path:
    """`path` if it is a file; else a `SourceFileMissing` naming it, so a wrong SRC fails
    before anything is written."""
    if not path.is_file():
        raise SourceFileMissing(
            f"{path}: no such file, expected {what}; check SRC points at the data set's directory"
        )
    return path


def source_files(src: Path, suffixes: tuple[str, ...], what: str) -> list[Path]:
    """`src` itself, or the files in the directory `src` ending in one of `suffixes`, in name order."""
    if src.is_dir():
        found = sorted(p for p in src.iterdir() if p.is_file() and p.name.lower().endswith(suffixes))
        if not found:
            raise SourceFileMissing(f"{src}: no {' / '.join(suffixes)} file; expected {what}")
        return found
    return [require_file(src, what)]


class Tally:
    """The rows read from one source file: each is accepted or rejected with its line and
    why, so `read == accepted + rejected`. `kind` prefixes the count names when a
    converter reads two kinds of file (`queries_read`, `events_read`)."""

    def __init__(self, kind: str = ""):
        self.prefix = f"{kind}_" if kind else ""
        self.read = self.accepted = 0
        self.rejected: list[Rejected] = []

    def accept(self) -> None:
        self.accepted += 1

    def reject(self, path: Path, line: int, reason: str) -> None:
        self.rejected.append(Rejected(path.name, line, reason))

    def counts(self) -> dict[str, int]:
        return {f"{self.prefix}read": self.read, f"{self.prefix}accepted": self.accepted,
                f"{self.prefix}rejected": len(self.rejected)}


REJECTED_COLUMNS = ["file", "line", "reason"]


def finish(out: Path, ext: str, files: dict[str, Path], counts: dict[str, int], *tallies: Tally) -> ConvertReport:
    """Write `rejected.<ext>` (file, line, reason; written even when empty, so an old one
    never outlives the run) and return the report with every tally's counts first."""
    rejected = tuple(r for tally in tallies for r in tally.rejected)
    files = {**files, "rejected": out / f"rejected.{ext}"}
    write_records(files["rejected"], REJECTED_COLUMNS, ((r.file, r.line, r.reason) for r in rejected))
    tallied: dict[str, int] = {}
    for tally in tallies:
        tallied.update(tally.counts())
    if len(tallies) > 1:
        tallied["rejected"] = len(rejected)
    return ConvertReport(files, {**tallied, **counts}, rejected)


def write_dicts(path: Path, rows: list[dict[str, Any]], lead: tuple[str, ...]) -> int:
    """Write dict rows whose keys vary (item attributes): the `lead` columns any row has,
    in that order, then every other key in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    columns = [c for c in lead if c in seen] + [c for c in seen if c not in lead]
    return write_records(path, columns, ([row.get(c) for c in columns] for row in rows))


def keep_item(tally: "Tally", path: Path, line: int, raw: dict[str, Any], taken: dict[str, str],
              items: list[dict[str, Any]]) -> None:
    """Count the mapped row `raw` accepted and keep it, or rejected with `item_problem`'s reason."""
    problem = item_problem(raw, taken, f"{path.name}:{line}")
    if problem:
        tally.reject(path, line, problem)
        return
    tally.accept()
    items.append(raw)


def item_problem(raw: dict[str, Any], taken: dict[str, str], where: str) -> str | None:
    """Why ingest would refuse the item `raw` (its field problems, or an item_id already
    taken by an earlier row), or None, recording its id as taken by `where` ("feed.xml:12")."""
    parsed = parse_item(raw)
    if isinstance(parsed, list):
        return "; ".join(str(problem) for problem in parsed)
    if parsed.item_id in taken:
        return f"item_id {parsed.item_id!r} is already taken by {taken[parsed.item_id]}"
    taken[parsed.item_id] = where
    return None


def event_problem(raw: dict[str, Any]) -> str | None:
    """Why ingest would refuse the event `raw`, or None."""
    parsed = parse_event(raw)
    return "; ".join(str(problem) for problem in parsed) if isinstance(parsed, list) else None


ITEM_COLUMNS = (*ITEM_FIELDS, *DISPLAY_FIELDS)
_RESERVED = set(ITEM_COLUMNS)


def snake_case(name: str) -> str:
    """`"Variant Inventory Qty"` -> `"variant_inventory_qty"`, `"Weight (kg)"` -> `"weight_kg"`."""
    return re.sub(r"[\W_]+", "_", name.strip().lower()).strip("_")


def attribute_name(name: str) -> str:
    """The attribute an unmapped source column is kept under: its snake_case name, with
    `source_` in front when that would shadow an item field (a stray `url` column)."""
    snake = snake_case(name)
    return f"source_{snake}" if snake in _RESERVED else snake


def read_header(path: Path, delimiter: str = ",") -> list[str]:
    """The column names on the first line of a CSV/TSV file."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        return [name.strip() for name in next(csv.reader(handle, delimiter=delimiter), [])]


def read_table(path: Path, delimiter: str = ",") -> Iterator[tuple[int, dict[str, str] | None, str | None]]:
    """(line, row, error) for every non-blank row of a CSV/TSV file with a header line.
    `line` is where the row starts (a quoted description can span lines); a row with the
    wrong number of values or bytes that are not UTF-8 comes back as an error."""
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = [name.strip() for name in next(reader, [])]
        if not any(header):
            raise ConvertError(f"{path} line 1: no header line; expected the export's column names")
        start = reader.line_num + 1
        for values in reader:
            line, start = start, reader.line_num + 1
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            if len(values) != len(header):
                yield line, None, f"expected {len(header)} values (one per header column), got {len(values)}"
            elif _UNDECODED.search("".join(values)):
                yield line, None, "the line is not valid UTF-8"
            else:
                yield line, {name: value.strip() for name, value in zip(header, values)}, None


_UNDECODED = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8


def json_records(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line, record, error) for every record of a JSON Lines file or a file holding one
    JSON array (optionally gzipped). A malformed line is an error and reading goes on; a
    malformed array element is an error and ends the file, since nothing after it can be
    found again."""
    opener: Callable[..., Any] = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            if text.lstrip().startswith("["):
                yield from _array_records(text + handle.read(), number)
                return
            if _UNDECODED.search(text):
                yield number, None, "the line is not valid UTF-8"
                continue
            try:
                yield number, json.loads(text), None
            except json.JSONDecodeError as error:
                yield number, None, f"malformed JSON ({error.msg})"


def _array_records(text: str, first_line: int) -> Iterator[tuple[int, Any, str | None]]:
    decoder, pos, line, counted = json.JSONDecoder(), text.index("[") + 1, first_line, 0
    while True:
        pos = _skip_space(text, pos)
        if pos >= len(text) or text[pos] == "]":
            return
        line, counted, start = line + text.count("\n", counted, pos), pos, pos
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as error:
            yield line, None, f"malformed JSON ({error.msg}); the rest of the array cannot be read"
            return
        if _UNDECODED.search(text, start, pos):
            yield line, None, "the record is not valid UTF-8"
        else:
            yield line, record, None
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


_PRICE = re.compile(r"^(?:([A-Za-z]{3})\s*)?(\d[\d.,\s]*?)(?:\s*([A-Za-z]{3}))?$")
_THOUSANDS = re.compile(r"^\d{1,3}(,\d{3})+$")


def parse_price(text: str) -> tuple[float, str | None]:
    """`"15.00 USD"` -> `(15.0, "USD")`; also `"USD 15.00"`, `"15.00"`, `"1,299.00 EUR"`,
    `"12,50 EUR"` (a lone comma followed by other than three digits is a decimal comma).
    A `ValueError` says what was expected."""
    match = _PRICE.match(text.strip())
    if not match or (match.group(1) and match.group(3)):
        raise ValueError(f"price {text!r}; expected a number and an ISO 4217 currency, like '15.00 USD'")
    amount, currency = re.sub(r"\s", "", match.group(2)), (match.group(1) or match.group(3))
    if "," in amount and "." in amount:  # the later separator is the decimal one
        thousands = "," if amount.rfind(".") > amount.rfind(",") else "."
        amount = amount.replace(thousands, "").replace(",", ".")
    elif "," in amount:
        amount = amount.replace(",", "") if _THOUSANDS.match(amount) else amount.replace(",", ".")
    elif amount.count(".") > 1:
        amount = amount.replace(".", "")
    try:
        return float(amount), currency.upper() if currency else None
    except ValueError:
        raise ValueError(f"price {text!r}; expected a number and an ISO 4217 currency, like '15.00 USD'") from None


def parse_number(text: str, what: str) -> float | None:
    """A plain number from a shop export (`"19.90"`), `None` when empty; a `ValueError` names `what`."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r}; expected a number") from None


class _Text(HTMLParser):
    """Collects the text of an HTML fragment; block elements become line breaks."""

    BLOCKS = {"address", "article", "blockquote", "br", "dd", "div", "dl", "dt", "h1", "h2", "h3", "h4", "h5", "h6",
              "hr", "li", "ol", "p", "section", "table", "td", "th", "tr", "ul"}
    HIDDEN = {"head", "script", "style", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: Any) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """`"<p>Cordless <b>18&nbsp;V</b></p><ul><li>2 batteries</li></ul>"` ->
    `"Cordless 18 V\\n2 batteries"`: tags dropped, entities decoded, one line per block,
    runs of spaces collapsed. Plain text comes back with its spaces collapsed."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)
