"""amazon-recbole: tiny RecBole files written here with known answers, then the real
Scientific data set (marked slow)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

from shoplm.data.convert import convert
from shoplm.data.convert.amazon_recbole import BASE_TIMESTAMP, STEP_SECONDS, category_paths, category_root
from shoplm.errors import ConvertError, SourceFileMissing

ROOT = "Industrial & Scientific"
TEXTS = {
    "A1": f"Drill Bit Set. {ROOT} Cutting Tools Drill Bits. Acme. ",
    "A2": f"Heater Kit. {ROOT} Heaters. Mr. Heater. ",  # a brand with ". " in it
    "A3": "Goggles. . . ",  # no category, no brand
    "A4": "Just a plain title",  # not "title. category. brand. " at all
    "A5": f"Tape: 2 in. x 18 yds. {ROOT} Tapes. J.V. Converting. ",  # ". " in title and brand
    "A6": f"Step Bit. {ROOT} Cutting Tools Drill Bits Step Drill Bits. . ",  # no brand
    "A7": f"Tape Roll. {ROOT} Tapes Duct Tape. Acme. ",
    "A8": f"Cutter. {ROOT} Cutting Tools. Acme. ",
}
SEQUENCES = {
    "U_long": ["A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8"],  # longer than MAX_LEN
    "U_short": ["A2", "A3", "A4"],  # three items: no train rows at all
    "U_mid": ["A5", "A6", "A7", "A8", "A1"],
}
MAX_LEN = 3  # RecBole's history truncation, 50 in the real data


def write_recbole(src: Path, name: str = "Toy", sequences: dict = SEQUENCES, max_len: int = MAX_LEN) -> Path:
    """The six RecBole files for TEXTS and `sequences`, split as UniSRec does: test = all
    but the last item -> last, valid one step earlier, train every earlier prefix,
    longest first; every history truncated to its last `max_len` items."""
    src.mkdir(parents=True, exist_ok=True)
    item_index = {asin: str(i) for i, asin in enumerate(TEXTS)}
    user_index = {user: str(i) for i, user in enumerate(sequences)}
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    lines: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for user, items in sequences.items():
        seq = [item_index[asin] for asin in items]

        def row(k: int) -> str:
            return f"{user_index[user]}\t{' '.join(seq[:k][-max_len:])}\t{seq[k]}\n"

        lines["train"] += [row(k) for k in range(len(seq) - 3, 0, -1)]
        lines["valid"].append(row(len(seq) - 2))
        lines["test"].append(row(len(seq) - 1))
    (src / f"{name}.text").write_text(
        "item_id:token\ttext:token_seq\n" + "".join(f"{a}\t{t}\n" for a, t in TEXTS.items()), encoding="utf-8"
    )
    (src / f"{name}.item2index").write_text("".join(f"{a}\t{i}\n" for a, i in item_index.items()))
    (src / f"{name}.user2index").write_text("".join(f"{u}\t{i}\n" for u, i in user_index.items()))
    for part, rows in lines.items():
        (src / f"{name}.{part}.inter").write_text(header + "".join(rows))
    return src


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def events_by_user(path: Path) -> dict[str, list[dict[str, str]]]:
    by_user = defaultdict(list)
    for event in read_csv(path):
        by_user[event["user_id"]].append(event)
    return by_user


def test_rebuilds_each_full_sequence_past_the_truncated_histories(tmp_path):
    report = convert("amazon-recbole", write_recbole(tmp_path / "src"), tmp_path / "out")
    assert report.counts["events"] == sum(map(len, SEQUENCES.values()))
    assert report.counts["users"] == 3
    by_user = events_by_user(report.files["events"])
    assert {user: [e["item_id"] for e in events] for user, events in by_user.items()} == SEQUENCES
    for events in by_user.values():
        assert [int(e["timestamp"]) for e in events] == [
            BASE_TIMESTAMP + STEP_SECONDS * position for position in range(len(events))
        ]
        assert {(e["event_type"], e["session_id"]) for e in events} == {("purchase", "")}


def test_splits_title_category_and_brand_and_keeps_every_item(tmp_path):
    report = convert("amazon-recbole", write_recbole(tmp_path / "src"), tmp_path / "out")
    items = {row["item_id"]: (row["title"], row["category"], row["brand"]) for row in read_csv(report.files["items"])}
    assert list(items) == list(TEXTS)
    assert items["A1"] == ("Drill Bit Set", f"{ROOT} > Cutting Tools > Drill Bits", "Acme")
    assert items["A2"] == ("Heater Kit", f"{ROOT} > Heaters", "Mr. Heater")
    assert items["A3"] == ("Goggles", "", "")
    assert items["A4"] == ("Just a plain title", "", "")
    assert items["A5"] == ("Tape: 2 in. x 18 yds", f"{ROOT} > Tapes", "J.V. Converting")
    assert items["A6"] == ("Step Bit", f"{ROOT} > Cutting Tools > Drill Bits > Step Drill Bits", "")
    assert items["A7"][1] == f"{ROOT} > Tapes > Duct Tape"
    assert report.counts["items"] == 8
    assert (report.counts["items_with_category"], report.counts["items_with_brand"]) == (6, 5)


def test_category_root_is_the_prefix_nearly_all_categories_share():
    assert category_root(TEXTS.values()) == ROOT
    assert category_root(["a. Tools Saws. b. ", "c. Garden Hoses. d. "]) is None


def test_category_paths_cut_at_known_nodes_and_plural_branches_only():
    base = f"{ROOT} Abrasive & Finishing Products"
    paths = category_paths(
        [base, f"{base} Abrasive Brushes Power Brushes", f"{base} Abrasive Brushes Scratch Brushes",
         f"{base} Abrasive Wheels & Discs", f"{ROOT} Tools", f"{ROOT} Tools & Parts Widgets"],
        ROOT,
    )
    # "Abrasive" branches but is no plural: siblings sharing a first word stay whole.
    assert paths[f"{base} Abrasive Wheels & Discs"] == f"{ROOT} > Abrasive & Finishing Products > Abrasive Wheels & Discs"
    assert paths[f"{base} Abrasive Brushes Power Brushes"] == (
        f"{ROOT} > Abrasive & Finishing Products > Abrasive Brushes > Power Brushes"
    )
    # "Tools" is a category of its own, but no name starts with "&".
    assert paths[f"{ROOT} Tools & Parts Widgets"] == f"{ROOT} > Tools & Parts Widgets"


def test_category_paths_drop_product_text_leaked_into_the_category():
    leaked = " ".join(["grinds"] * 40)
    paths = category_paths([f"{ROOT} Discs", f"{ROOT} Discs {leaked}"], ROOT)
    assert paths[f"{ROOT} Discs {leaked}"] == f"{ROOT} > Discs"


def test_disagreeing_split_files_name_the_file_and_line(tmp_path):
    src = write_recbole(tmp_path / "src")
    valid = src / "Toy.valid.inter"
    lines = valid.read_text().splitlines(keepends=True)
    user, history, target = lines[3].rstrip("\n").split("\t")  # line 4: U_mid
    lines[3] = f"{user}\t{'7 ' + history.split(' ', 1)[1]}\t{target}\n"
    valid.write_text("".join(lines))
    with pytest.raises(ConvertError, match=r"Toy\.valid\.inter line 4: user 2"):
        convert("amazon-recbole", src, tmp_path / "out")


def test_missing_file_is_named(tmp_path):
    src = write_recbole(tmp_path / "src")
    (src / "Toy.user2index").unlink()
    with pytest.raises(SourceFileMissing, match=r"Toy\.user2index"):
        convert("amazon-recbole", src, tmp_path / "out")
    assert not (tmp_path / "out" / "items.csv").exists()


def test_the_data_set_name_comes_from_the_one_text_file(tmp_path):
    src = write_recbole(tmp_path / "src", name="Office")
    assert convert("amazon-recbole", src, tmp_path / "out").counts["users"] == 3
    (src / "Other.text").write_text("item_id:token\ttext:token_seq\n")
    with pytest.raises(ConvertError, match="Office.text, Other.text"):
        convert("amazon-recbole", src, tmp_path / "out")


# --- the real data set -------------------------------------------------------------


@pytest.fixture(scope="module")
def scientific(tmp_path_factory, data_dir):
    src = data_dir / "amazon-scientific"
    return src, convert("amazon-recbole", src, tmp_path_factory.mktemp("scientific"))


def _index(path: Path) -> dict[str, str]:
    pairs = (line.split("\t") for line in path.read_text(encoding="utf-8").splitlines())
    return {index: original for original, index in pairs}


def _targets(path: Path, asin_of: dict[str, str], user_of: dict[str, str]) -> dict[str, tuple[list[str], str]]:
    """{user id: (history ASINs, target ASIN)} of a valid or test file, read independently."""
    rows = {}
    with open(path, encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            user, history, target = line.rstrip("\n").split("\t")
            rows[user_of[user]] = ([asin_of[i] for i in history.split()], asin_of[target])
    return rows


@pytest.mark.slow
def test_scientific_counts(scientific):
    _, report = scientific
    assert (report.counts["items"], report.counts["events"], report.counts["users"]) == (4385, 59427, 8442)
    assert len(read_csv(report.files["items"])) == 4385


@pytest.mark.slow
def test_scientific_leave_last_out_reproduces_the_published_split(scientific):
    src, report = scientific
    asin_of = _index(src / "Scientific.item2index")
    user_of = _index(src / "Scientific.user2index")
    valid = _targets(src / "Scientific.valid.inter", asin_of, user_of)
    test = _targets(src / "Scientific.test.inter", asin_of, user_of)
    by_user = events_by_user(report.files["events"])
    assert by_user.keys() == test.keys() == valid.keys()
    long_users = []
    for user, events in by_user.items():
        events.sort(key=lambda e: int(e["timestamp"]))
        items = [e["item_id"] for e in events]
        assert items[-1] == test[user][1] and items[-2] == valid[user][1], user
        assert items[:-1][-50:] == test[user][0], user
        if len(items) > 51:
            long_users.append(user)
    assert len(long_users) == 3
    for user in long_users:
        assert len(test[user][0]) == 50 and len(by_user[user]) > 51
