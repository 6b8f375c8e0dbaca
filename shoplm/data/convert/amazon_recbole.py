"""Amazon review data as processed for RecBole (UniSRec, VQ-Rec) -> items and events.

Reads `<Name>.text`, `.item2index`, `.user2index`, `.train.inter`, `.valid.inter` and
`.test.inter` from SRC (the name comes from the one `*.text` file, e.g. `Scientific`).
Writes `items.<ext>` (item_id = ASIN, title, and category / brand where the text allows)
and `events.<ext>`: one `purchase` per interaction (an Amazon review implies a purchase),
with user_id = the original reviewer id and no session.

The .inter files hold no timestamps, only order. Each user's sequence gets integer Unix
seconds `BASE_TIMESTAMP + STEP_SECONDS * position`, so times are strictly increasing per
user and leave-last-out by time reproduces the published split exactly (last event = the
`.test.inter` target, second-last = the `.valid.inter` target). One day per step keeps
time-decayed popularity meaningful without pretending to know the real dates.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, NamedTuple

from shoplm.data.convert.base import ConvertReport, require_file
from shoplm.errors import ConvertError
from shoplm.data.writers import write_records

BASE_TIMESTAMP = 1_500_000_000  # Unix seconds, 2017-07-14 UTC; any fixed origin works
STEP_SECONDS = 86_400  # one day between a user's consecutive interactions
ITEM_COLUMNS = ["item_id", "title", "category", "brand"]
EVENT_COLUMNS = ["timestamp", "user_id", "session_id", "event_type", "item_id"]
INTER_FIELDS = ["user_id", "item_id_list", "item_id"]
ROOT_SHARE = 0.9  # share of categories that must begin with the data set's root
# Merged levels reach 15 words in Scientific; leaked product text runs to 100+.
MAX_LEVEL_WORDS = 30
# Words that never begin a category name, so a path is never cut just before them.
CONNECTORS = {"&", "and", "or", "of", "for", "with", "in", "to", "x", "-"}


class Interaction(NamedTuple):
    """One .inter line: `history` (index tokens, oldest first) was followed by `target`."""

    path: Path
    line: int
    user: str
    history: list[str]
    target: str


class ItemText(NamedTuple):
    title: str
    category: str | None
    brand: str | None


def convert(src: Path, out: Path, ext: str) -> ConvertReport:
    name = dataset_name(src)
    sources = {part: require_file(src / f"{name}.{part}", f"the RecBole {part} file")
               for part in ("text", "item2index", "user2index", "train.inter", "valid.inter", "test.inter")}
    texts = read_texts(sources["text"])
    items = split_item_texts(texts)
    sequences = rebuild_sequences(
        read_interactions(sources["train.inter"]),
        read_interactions(sources["valid.inter"]),
        read_interactions(sources["test.inter"]),
    )
    # Built in full before the first write, so a bad source leaves no file behind.
    events = list(_event_rows(sequences, read_index(sources["item2index"]), read_index(sources["user2index"]),
                              set(texts)))
    files = {"items": out / f"items.{ext}", "events": out / f"events.{ext}"}
    counts = {
        "items": write_records(files["items"], ITEM_COLUMNS, [(asin, *parts) for asin, parts in items.items()]),
        "events": write_records(files["events"], EVENT_COLUMNS, events),
        "users": len(sequences),
        "items_with_category": sum(1 for parts in items.values() if parts.category),
        "items_with_brand": sum(1 for parts in items.values() if parts.brand),
    }
    return ConvertReport(files, counts)


def dataset_name(src: Path) -> str:
    """`Scientific` for a directory holding `Scientific.text`: RecBole names every file
    of a data set after it, and UniSRec ships several (Office, Pantry, ...)."""
    if not src.is_dir():
        raise ConvertError(f"{src}: expected the directory holding the RecBole files (<Name>.text, ...)")
    texts = sorted(src.glob("*.text"))
    if len(texts) != 1:
        found = ", ".join(p.name for p in texts) or "none"
        raise ConvertError(
            f"{src}: expected exactly one <Name>.text file to name the data set, found {found}; "
            "point SRC at a directory holding a single RecBole data set"
        )
    return texts[0].name[: -len(".text")]


def _lines(path: Path, header: list[str] | None) -> Iterable[tuple[int, list[str]]]:
    """(line number, tab-separated fields) of each non-blank line after the typed header
    `name:type` whose names must be `header`; `None` means the file has no header."""
    with open(path, encoding="utf-8") as handle:
        if header is not None:
            names = [field.split(":")[0] for field in handle.readline().rstrip("\n").split("\t")]
            if names != header:
                raise ConvertError(
                    f"{path} line 1: expected a RecBole header with fields {', '.join(header)}, "
                    f"got {', '.join(names)}; is this the right file?"
                )
        for number, line in enumerate(handle, start=1 if header is None else 2):
            if line.strip():
                yield number, line.rstrip("\n").split("\t")


def read_index(path: Path) -> dict[str, str]:
    """`Name.item2index` / `.user2index` (`original_id<TAB>index`, no header) as
    {index token: original id}, the direction needed to undo the indexing."""
    original_of: dict[str, str] = {}
    for number, fields in _lines(path, None):
        if len(fields) != 2 or fields[1] in original_of:
            raise ConvertError(
                f"{path} line {number}: expected 'original_id<TAB>index' with an index not seen before, "
                f"got {fields!r}"
            )
        original_of[fields[1]] = fields[0]
    return original_of


def read_texts(path: Path) -> dict[str, str]:
    """`Name.text` as {ASIN: text}, in file order."""
    texts: dict[str, str] = {}
    for number, fields in _lines(path, ["item_id", "text"]):
        if len(fields) != 2 or not fields[0] or fields[0] in texts:
            raise ConvertError(f"{path} line {number}: expected 'ASIN<TAB>text' with a new ASIN, got {fields!r}")
        texts[fields[0]] = fields[1]
    return texts


def read_interactions(path: Path) -> list[Interaction]:
    rows = []
    for number, fields in _lines(path, INTER_FIELDS):
        if len(fields) != 3 or not fields[0] or not fields[2]:
            raise ConvertError(f"{path} line {number}: expected 'user<TAB>item item ...<TAB>item', got {fields!r}")
        rows.append(Interaction(path, number, fields[0], fields[1].split(), fields[2]))
    return rows


def split_item_texts(texts: dict[str, str]) -> dict[str, ItemText]:
    """Every item's text as (title, category path, brand); never drops an item."""
    root = category_root(texts.values())
    parts = {asin: parse_item_text(text, root) for asin, text in texts.items()}
    paths = category_paths({p.category for p in parts.values() if p.category}, root)
    return {
        asin: ItemText(p.title or asin, paths.get(p.category or "") or None, p.brand)
        for asin, p in parts.items()
    }


def _fields(text: str) -> list[str]:
    """UniSRec builds the text as f"{title}. {category}. {brand}. ": drop the final ". "
    and split on the others. A title or brand may itself contain ". " ("Mr. Heater")."""
    body = text[:-2] if text.endswith(". ") else text.rstrip()
    return body.split(". ")


def category_root(texts: Iterable[str]) -> str | None:
    """The words that begin nearly all categories ("Industrial & Scientific"), read off the
    unambiguous texts (exactly three fields); None when there is no such prefix.

    "Nearly all" (`ROOT_SHARE`) rather than all, so that one stray three-field text
    whose middle field is not a category cannot hide the root."""
    categories = [fields[1].split() for fields in map(_fields, texts) if len(fields) == 3 and fields[1]]
    root: tuple[str, ...] = ()
    while True:
        heads = Counter(tuple(words[: len(root) + 1]) for words in categories if len(words) > len(root))
        if not heads:
            break
        head, count = heads.most_common(1)[0]
        if count < ROOT_SHARE * len(categories):
            break
        root = head
    return " ".join(root) or None


def parse_item_text(text: str, root: str | None) -> ItemText:
    """Split "title. category. brand. " into its parts; else the whole text is the title.

    The category is the rightmost field, with a title field before it and a brand field
    after it, that is empty or starts with the data set's `root`: searching from the
    right is what keeps a brand with a ". " in it ("J.V. Converting") whole. Without a
    root, only a text of exactly three fields is split. Category and brand are None when
    empty; the category is the raw space-joined path, see `category_paths`.
    """
    fields = _fields(text)
    if root is None:
        candidates = [1] if len(fields) == 3 else []
    else:
        candidates = [
            i for i in range(1, len(fields) - 1)
            if not fields[i] or fields[i] == root or fields[i].startswith(root + " ")
        ]
    if not candidates:
        return ItemText(text.strip(), None, None)
    i = candidates[-1]
    title = ". ".join(fields[:i]).strip() or text.strip()
    brand = ". ".join(fields[i + 1 :]).strip()
    return ItemText(title, fields[i].strip() or None, brand or None)


def category_paths(categories: Iterable[str], root: str | None) -> dict[str, str]:
    """{raw category: "A > B > C"}: recover the level boundaries lost when the source
    joined the path with spaces ("Industrial & Scientific Abrasive & Finishing Products
    Manual Sanding Products Sanding Rolls").

    Heuristic on a word trie of all the data set's categories. Cut after a word prefix
    when (1) it is the shared `root`, or (2) it is itself a complete category of some
    item (then it is a node of the tree), or (3) the trie branches there and the prefix
    ends in a plural noun (category names are plurals: "Fittings", "Hose Fittings").
    Never cut before a connector ("&", "and"). Rule 3 needs the plural because branching
    alone cuts inside names whose siblings share a first word ("Abrasive Brushes",
    "Abrasive Wheels & Discs"). So every cut is likely right, but a boundary with no
    such evidence is missed: a level can hold two names ("Filtration Lab Filters").
    A level longer than `MAX_LEVEL_WORDS` is product text that leaked into the source's
    category list (one item in Scientific); it and any level after it are dropped.
    """
    words_of = {category: category.split() for category in categories}
    complete = {tuple(words) for words in words_of.values()}
    following: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for words in words_of.values():
        for k in range(1, len(words)):
            following[tuple(words[:k])].add(words[k])
    root_words = tuple(root.split()) if root else ()

    def cut_after(prefix: tuple[str, ...], next_word: str) -> bool:
        if next_word.lower() in CONNECTORS:
            return False
        if prefix == root_words or prefix in complete:
            return True
        return len(following[prefix]) > 1 and _plural(prefix[-1])

    paths = {}
    for category, words in words_of.items():
        levels = [[words[0]]]
        for k in range(1, len(words)):
            if cut_after(tuple(words[:k]), words[k]):
                levels.append([])
            levels[-1].append(words[k])
        kept = [" ".join(level) for level in levels]
        leaked = [i for i, level in enumerate(levels) if len(level) > MAX_LEVEL_WORDS]
        paths[category] = " > ".join(kept[: leaked[0]] if leaked else kept)
    return paths


def _plural(word: str) -> bool:
    """"Brushes" yes; "Brass", "Analysis", "Apparatus" no."""
    return word.endswith("s") and not word.endswith(("ss", "is", "us"))


def rebuild_sequences(train: list[Interaction], valid: list[Interaction], test: list[Interaction]) -> dict[str, list[str]]:
    """{user index: every item index the user interacted with, oldest first}.

    `.test.inter` alone is not enough: its history is truncated to the last 50 items.
    The full sequence is the history of the user's shortest train prefix, every train
    target oldest first (the file lists a user's prefixes longest first), then the valid
    target and the test target. A user without train rows starts from the valid history.
    Each line of the three files is then checked against the rebuilt sequence.
    """
    train_of: dict[str, list[Interaction]] = defaultdict(list)
    for row in train:
        train_of[row.user].append(row)
    valid_of, test_of = _one_per_user(valid), _one_per_user(test)
    orphans = [row for row in [*train, *valid] if row.user not in test_of]
    if orphans:
        raise ConvertError(
            f"{orphans[0].path} line {orphans[0].line}: user {orphans[0].user} has no line in the test "
            "file; the split files come from different runs, re-export them together"
        )
    max_history = max((len(row.history) for row in [*train, *valid, *test]), default=0)
    sequences = {}
    for user, last in test_of.items():
        middle = valid_of.get(user)
        if middle is None:
            raise ConvertError(f"{last.path} line {last.line}: user {user} has no line in the valid file; "
                               "every user needs a valid and a test interaction")
        oldest_first = train_of.get(user, [])[::-1]
        start = oldest_first[0].history if oldest_first else middle.history
        sequence = [*start, *(row.target for row in oldest_first), middle.target, last.target]
        for position, row in enumerate([*oldest_first, middle, last], start=len(start)):
            _check_row(row, sequence, position, max_history)
        sequences[user] = sequence
    return sequences


def _one_per_user(rows: list[Interaction]) -> dict[str, Interaction]:
    by_user: dict[str, Interaction] = {}
    for row in rows:
        if row.user in by_user:
            raise ConvertError(f"{row.path} line {row.line}: second line for user {row.user}; "
                               "valid and test files hold one line per user")
        by_user[row.user] = row
    return by_user


def _check_row(row: Interaction, sequence: list[str], position: int, max_history: int) -> None:
    """`row` must be "the (truncated) history before `position`, then the item there"."""
    expected = sequence[max(0, position - max_history) : position]
    if row.history != expected or row.target != sequence[position]:
        raise ConvertError(
            f"{row.path} line {row.line}: user {row.user}'s history and target disagree with the "
            f"sequence rebuilt from the train, valid and test files (expected target {sequence[position]} "
            f"after {len(expected)} items); the split files come from different runs, re-export them together"
        )


def _event_rows(sequences: dict[str, list[str]], asin_of: dict[str, str], user_of: dict[str, str],
                known: set[str]) -> Iterable[tuple]:
    for user, sequence in sequences.items():
        user_id = user_of.get(user)
        if user_id is None:
            raise ConvertError(f"user index {user} is missing from the .user2index file; re-export the data set")
        for position, index in enumerate(sequence):
            asin = asin_of.get(index)
            if asin is None or asin not in known:
                raise ConvertError(
                    f"item index {index} (user {user_id}) has no ASIN in the .item2index file or no line in "
                    "the .text file; re-export the data set"
                )
            yield (BASE_TIMESTAMP + STEP_SECONDS * position, user_id, None, "purchase", asin)
