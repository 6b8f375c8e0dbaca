"""Instacart Online Grocery Shopping (2017) -> items and purchase events.

Reads from the directory SRC `products.csv` (`product_id,product_name,aisle_id,department_id`),
`aisles.csv` (`aisle_id,aisle`), `departments.csv` (`department_id,department`) and the order
lines `order_lines.csv` (`order_id,user_id,order_number,order_dow,order_hour_of_day,
days_since_prior_order,product_id,add_to_cart_order,reordered`: the columns of the
published `orders.csv` and `order_products__*.csv`, one line per product ordered).

- Items: every product; item_id = `product_id`, title = `product_name`, category =
  `"<department> > <aisle>"` (`dairy eggs > yogurt`), `aisle_id` and `department_id` kept as
  attributes.
- Events: every order line is a `purchase` of its product; user_id = `u<user_id>`,
  session_id = `o<order_id>` (one session per order). `reordered` and the order numbers have
  no shoplm event field and are not carried (`reorders` counts the reordered lines).
- Timestamps are rebuilt, since Instacart has no dates (see `_Timeline`): a user's first
  order is on 2017-01-01 (a Sunday) + `order_dow` days, each next order `days_since_prior_order`
  days after the previous one, at `order_hour_of_day`:00 UTC; a cart's lines are
  `add_to_cart_order - 1` seconds after the order's start. A gap capped at 30 days becomes the
  shortest gap of 30 or more days that lands on the order's `order_dow` (`capped_gaps`), and an
  order that would not start after the previous order's last line (0 days, the same or an
  earlier hour) starts 60 s after it (`clamped_orders`), so times strictly increase within each user.

Like the shop-export converters, a bad row is rejected, not the whole file: each file's rows
are counted `read = accepted + rejected`, and every rejected row is named with its file, line
and why in the report and in `rejected.<ext>`. A file without the expected columns stops the
conversion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from shoplm.data.convert.base import ConvertReport, Tally, finish, item_problem, read_header, read_table, require_file
from shoplm.data.records import CATEGORY_SEPARATOR
from shoplm.data.writers import write_records
from shoplm.errors import ConvertError

AISLE_COLUMNS = ["aisle_id", "aisle"]
DEPARTMENT_COLUMNS = ["department_id", "department"]
PRODUCT_COLUMNS = ["product_id", "product_name", "aisle_id", "department_id"]
ORDER_LINE_COLUMNS = ["order_id", "user_id", "order_number", "order_dow", "order_hour_of_day",
                      "days_since_prior_order", "product_id", "add_to_cart_order", "reordered"]
ITEM_COLUMNS = ["item_id", "title", "category", "aisle_id", "department_id"]
SOURCES = {"aisles": AISLE_COLUMNS, "departments": DEPARTMENT_COLUMNS, "products": PRODUCT_COLUMNS,
           "order_lines": ORDER_LINE_COLUMNS}
EVENT_COLUMNS = ["timestamp", "user_id", "session_id", "event_type", "item_id"]

EPOCH = datetime(2017, 1, 1, tzinfo=timezone.utc)  # a Sunday: order_dow 0 is taken as Sunday
EPOCH_SECONDS = int(EPOCH.timestamp())
DAY, HOUR = 86_400, 3_600
CAPPED_DAYS = 30  # Instacart writes 30 for every gap of 30 days or more
CLAMP_SECONDS = 60  # an order that would not start after the previous one starts this long after its last line


def convert(src: Path, out: Path, ext: str) -> ConvertReport:
    if not src.is_dir():
        raise ConvertError(f"{src}: expected the Instacart directory holding products.csv, aisles.csv, "
                           "departments.csv and order_lines.csv")
    paths = {name: require_file(src / f"{name}.csv", f"Instacart's {name}.csv ({','.join(columns)})")
             for name, columns in SOURCES.items()}
    for name, columns in SOURCES.items():
        _check_header(paths[name], columns)
    tallies = {name: Tally(name) for name in paths}
    aisles = _names(paths["aisles"], "aisle", tallies["aisles"])
    departments = _names(paths["departments"], "department", tallies["departments"])
    items = _items(paths["products"], aisles, departments, tallies["products"])
    timeline = _order_lines(paths["order_lines"], items, tallies["order_lines"])

    files = {"items": out / f"items.{ext}", "events": out / f"events.{ext}"}
    counts = {"items": write_records(files["items"], ITEM_COLUMNS, ([i, *v] for i, v in items.items()))}
    counts["events"] = write_records(files["events"], EVENT_COLUMNS, timeline.events())
    counts.update(users=timeline.users(), sessions=timeline.sessions(), reorders=timeline.reorders,
                  capped_gaps=timeline.capped_gaps, clamped_orders=timeline.clamped_orders)
    return finish(out, ext, files, counts, *tallies.values())


def _check_header(path: Path, columns: list[str]) -> None:
    header = read_header(path)
    missing = [name for name in columns if name not in header]
    if missing:
        raise ConvertError(f"{path} line 1: no column {', '.join(missing)}; expected the columns {','.join(columns)}")


def _whole(text: str, name: str, minimum: int = 0, maximum: int | None = None, decimal: bool = False) -> int:
    """`"7"` -> 7 (and `"7.0"` when `decimal`: the published days_since_prior_order is a float
    column); a `ValueError` naming the field when empty, not a whole number, or out of range."""
    if not text:
        raise ValueError(f"{name} is empty")
    try:
        value = int(text)
    except ValueError:
        number = None
        if decimal:
            try:
                number = float(text)
            except ValueError:
                pass
        if number is None or not number.is_integer():
            raise ValueError(f"{name} {text!r}; expected a whole number") from None
        value = int(number)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} {text!r}; expected a whole number {bounds}")
    return value


def _names(path: Path, what: str, tally: Tally) -> dict[int, str]:
    """`aisle_id` -> `aisle` (or the departments) from one lookup file."""
    names: dict[int, str] = {}
    lines: dict[int, int] = {}
    for line, row, error in read_table(path):
        tally.read += 1
        try:
            if error:
                raise ValueError(error)
            key = _whole(row[f"{what}_id"], f"{what}_id")
            if key in names:
                raise ValueError(f"{what}_id {key} is already used by line {lines[key]}")
            if not row[what]:
                raise ValueError(f"{what} (the name) is empty")
        except ValueError as problem:
            tally.reject(path, line, str(problem))
            continue
        tally.accept()
        names[key], lines[key] = row[what], line
    return names


def _items(path: Path, aisles: dict[int, str], departments: dict[int, str], tally: Tally) -> dict[str, list]:
    """product_id -> [title, category, aisle_id, department_id]."""
    items: dict[str, list] = {}
    taken: dict[str, str] = {}
    for line, row, error in read_table(path):
        tally.read += 1
        try:
            if error:
                raise ValueError(error)
            product = str(_whole(row["product_id"], "product_id"))
            aisle, department = _whole(row["aisle_id"], "aisle_id"), _whole(row["department_id"], "department_id")
            if aisle not in aisles:
                raise ValueError(f"aisle_id {aisle} is not in aisles.csv")
            if department not in departments:
                raise ValueError(f"department_id {department} is not in departments.csv")
            category = f"{departments[department]}{CATEGORY_SEPARATOR}{aisles[aisle]}"
            problem = item_problem({"item_id": product, "title": row["product_name"], "category": category},
                                   taken, f"{path.name}:{line}")
            if problem:
                raise ValueError(problem)
        except ValueError as problem:
            tally.reject(path, line, str(problem))
            continue
        tally.accept()
        items[product] = [row["product_name"], category, str(aisle), str(department)]
    return items


@dataclass
class _Order:
    order_id: int
    user_id: int
    number: int
    dow: int
    hour: int
    days: int | None
    line: int  # the first line naming the order, which set the fields above
    carts: dict[int, tuple[int, str]] = field(default_factory=dict)  # add_to_cart_order -> (line, product_id)


class _Timeline:
    """The accepted order lines by user and order, and their rebuilt timestamps.

    Instacart gives no dates: an order has its day of week (`order_dow`), its hour and the days
    since the same user's previous order, empty on order 1 and capped at 30. A user's orders are
    laid out in `order_number` order (a gap in the numbers chains from the previous order
    present): the first on day `order_dow` after EPOCH, each next one `days_since_prior_order`
    days after the previous one; a gap of 30 (meaning 30 or more) becomes the shortest gap of 30
    to 36 days that lands on the order's own `order_dow`, so weekdays stay right after it (in the
    published data the weekdays agree with every uncapped gap). An order starts at its hour:00,
    its line with `add_to_cart_order` n at n - 1 seconds later, keeping the cart order. An order
    that would not start after the previous order's last line (days 0 and the same or an earlier
    hour) starts CLAMP_SECONDS after that line, so timestamps strictly increase within a user."""

    def __init__(self) -> None:
        self.orders: dict[int, _Order] = {}
        self.by_user: dict[int, dict[int, _Order]] = {}  # user_id -> order_number -> order, users in file order
        self.reorders = self.capped_gaps = self.clamped_orders = 0

    def order(self, fields: tuple[int, int, int, int, int, int | None], line: int) -> _Order:
        """The order the line's order fields name, registered on its first line; a `ValueError`
        when they disagree with that line or its user already has an order with that number."""
        order_id, user_id, number, dow, hour, days = fields
        known = self.orders.get(order_id)
        if known is not None:
            said = (known.user_id, known.number, known.dow, known.hour, known.days)
            if said != (user_id, number, dow, hour, days):
                raise ValueError(f"order {order_id} is (user_id, order_number, order_dow, order_hour_of_day, "
                                 f"days_since_prior_order) {_shown(said)} on line {known.line}, here "
                                 f"{_shown((user_id, number, dow, hour, days))}")
            return known
        orders = self.by_user.setdefault(user_id, {})
        if number in orders:
            raise ValueError(f"user {user_id} already has an order number {number}: order {orders[number].order_id} "
                             f"on line {orders[number].line}")
        if days is None and number != 1:
            raise ValueError(f"days_since_prior_order is empty on order number {number}; expected the days since "
                             f"user {user_id}'s previous order (only order 1 has none)")
        order = self.orders[order_id] = orders[number] = _Order(order_id, user_id, number, dow, hour, days, line)
        return order

    def events(self) -> Iterator[tuple]:
        for user_id, orders in self.by_user.items():
            user, previous, day, last = f"u{user_id}", None, 0, None
            for number in sorted(orders):
                order = orders[number]
                day = order.dow if previous is None else day + self._gap(previous, order)
                previous = order
                if not order.carts:  # every line rejected: no session, but it still places the next order
                    continue
                start = EPOCH_SECONDS + day * DAY + order.hour * HOUR
                if last is not None and start <= last:
                    start = last + CLAMP_SECONDS
                    self.clamped_orders += 1
                session = f"o{order.order_id}"
                for cart in sorted(order.carts):
                    last = start + cart - 1
                    yield _iso(last), user, session, "purchase", order.carts[cart][1]

    def _gap(self, previous: _Order, order: _Order) -> int:
        """Days from the user's previous order to `order`."""
        days = order.days or 0  # never None here: only order 1, always a user's first, has none
        if days == CAPPED_DAYS:
            self.capped_gaps += 1
            days = CAPPED_DAYS + (order.dow - previous.dow - CAPPED_DAYS) % 7
        return days

    def users(self) -> int:
        return sum(1 for orders in self.by_user.values() if any(o.carts for o in orders.values()))

    def sessions(self) -> int:
        return sum(1 for order in self.orders.values() if order.carts)


def _shown(values: tuple) -> str:
    return "(" + ", ".join("empty" if v is None else str(v) for v in values) + ")"


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _order_lines(path: Path, items: dict[str, list], tally: Tally) -> _Timeline:
    timeline = _Timeline()
    for line, row, error in read_table(path):
        tally.read += 1
        try:
            if error:
                raise ValueError(error)
            order = timeline.order((
                _whole(row["order_id"], "order_id"), _whole(row["user_id"], "user_id"),
                _whole(row["order_number"], "order_number", 1), _whole(row["order_dow"], "order_dow", 0, 6),
                _whole(row["order_hour_of_day"], "order_hour_of_day", 0, 23),
                _whole(row["days_since_prior_order"], "days_since_prior_order", decimal=True)
                if row["days_since_prior_order"] else None,
            ), line)
            product = str(_whole(row["product_id"], "product_id"))
            cart = _whole(row["add_to_cart_order"], "add_to_cart_order", 1)
            reordered = _whole(row["reordered"], "reordered", 0, 1)
            if product not in items:
                raise ValueError(f"product_id {product} is not an item of products.csv")
            if cart in order.carts:
                raise ValueError(f"add_to_cart_order {cart} of order {order.order_id} is already line "
                                 f"{order.carts[cart][0]}")
        except ValueError as problem:
            tally.reject(path, line, str(problem))
            continue
        tally.accept()
        order.carts[cart] = (line, product)
        timeline.reorders += reordered
    return timeline
