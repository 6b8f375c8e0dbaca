"""Query suggestions on a five-item catalog with hand-counted document frequencies, the
clicked-query window, the lookup cache against a brute-force ranking, and the typing evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from shoplm.config import Settings
from shoplm.data.records import Event, Item, Judgment
from shoplm.errors import ConfigError
from shoplm.search.data import split_queries
from shoplm.search.suggest import (
    SuggestConfig, Suggester, catalog_phrases, clicked_queries, normalise, title_ngrams, title_words, typed,
)
from shoplm.search.suggest_eval import completes_word, evaluate_typing, judged_past_and_future

ITEMS = [
    Item("1", "Cordless Drill 18V", category="Tools > Power Tools > Drills", brand="DeWalt"),
    Item("2", "Cordless  DRILL Kit", category="Tools > Power Tools > Drills", brand="Ryobi"),
    Item("3", "Hammer Drill", category="Tools > Power Tools > Drills", brand="DeWalt"),
    Item("4", "Drill Bit Set of 20", category="Tools > Accessories", brand="DeWalt"),
    Item("5", "Claw Hammer (16 oz.)", category="Tools > Hand Tools", brand="Estwing"),
]


def texts(suggestions) -> list[str]:
    return [s.text for s in suggestions]


def test_normalise_folds_case_and_whitespace_and_typed_keeps_a_finished_word():
    assert normalise("  Cordless\t DRILL  ") == "cordless drill"
    assert normalise("Ｄｒｉｌｌ") == "drill"  # NFKC: full-width letters
    assert typed("Drill  ") == "drill "
    assert typed("  ") == typed("") == ""


def test_a_large_catalog_counts_title_phrases_over_a_sample_and_keeps_the_most_frequent():
    big = [Item(str(i), f"{['Cordless Drill', 'Claw Hammer', 'Paint Roller'][i % 3]} model{i}",
                category="Tools > Power Tools", brand=f"Brand{i % 40}") for i in range(3_000)]
    exact = catalog_phrases(big)
    assert exact["cordless drill"] == 1_000 and exact["model7"] == 1 and len(exact) > 3_000
    approx = catalog_phrases(big, sample_items=1_000, max_phrases=100)
    assert len(approx) == 100  # 42 names (40 brands, 2 category levels) and the 58 most frequent phrases
    assert {f"brand{b}" for b in range(40)} | {"tools", "power tools"} <= set(approx)
    assert approx["brand3"] == exact["brand3"] == 75  # names: counted over every item
    assert abs(approx["cordless drill"] - 1_000) <= 100 and "model7" not in approx  # titles: a sample, scaled


def test_title_ngrams_skip_stop_word_and_symbol_edges_and_pure_numbers():
    assert title_words("Claw Hammer (16 oz.)") == ["claw", "hammer", "16", "oz."]
    assert title_ngrams(["drill", "bit", "set", "of", "20"], 3) == {
        "drill", "bit", "set", "drill bit", "bit set", "drill bit set", "set of 20"}
    assert title_ngrams(["1/2", "in.", "/", "case"], 2) == {"1/2 in.", "in.", "case"}


def test_catalog_phrases_count_items_over_titles_brands_and_category_levels():
    df = catalog_phrases(ITEMS)
    assert (df["drill"], df["drills"], df["dewalt"], df["tools"], df["power tools"]) == (4, 3, 3, 5, 3)
    assert (df["cordless drill"], df["hammer"], df["16 oz."], df["drill kit"]) == (2, 2, 1, 1)
    assert "16" not in df and "set of" not in df and "20" not in df
    assert "hammer drill" not in catalog_phrases(ITEMS, min_df=2) and "estwing" in catalog_phrases(ITEMS, min_df=2)


@pytest.fixture(scope="module")
def suggester() -> Suggester:
    return Suggester.build([], ITEMS)


def test_best_score_first_and_equal_scores_alphabetical(suggester):
    assert suggester.suggest("dr") == [("drill", 4.0), ("drills", 3.0), ("drill 18v", 1.0), ("drill bit", 1.0),
                                       ("drill bit set", 1.0)]
    assert suggester.suggest("  DR") == suggester.suggest("dr")


def test_a_finished_word_matches_only_longer_phrases(suggester):
    assert texts(suggester.suggest("drill ", k=10)) == ["drill 18v", "drill bit", "drill bit set", "drill kit",
                                                        "cordless drill 18v", "cordless drill kit"]
    assert texts(suggester.suggest("dr ")) == []


def test_later_word_matches_come_after_text_start_matches_and_only_to_fill_k(suggester):
    text_start = ["hammer", "hammer 16", "hammer 16 oz.", "hammer drill"]  # 2 items, then 1 each
    assert texts(suggester.suggest("ham", k=5)) == text_start + ["claw hammer"]
    assert texts(suggester.suggest("ham", k=6)) == text_start + ["claw hammer", "claw hammer 16"]
    assert texts(suggester.suggest("ham", k=3)) == text_start[:3]
    assert texts(suggester.suggest("kit")) == ["kit", "cordless drill kit", "drill kit"]


def test_empty_prefix_no_match_and_k_are_respected(suggester):
    assert suggester.suggest("") == suggester.suggest("   ") == suggester.suggest("zz") == []
    assert suggester.suggest("d", k=0) == []
    assert len(suggester.suggest("d", k=2)) == 2
    assert len(suggester.suggest("d", k=100)) == sum(t.startswith("d") or " d" in t for t in suggester.texts)


def test_a_past_query_outranks_a_catalog_phrase_of_the_same_weight_and_lends_its_parts():
    built = Suggester.build([("Drill Press", 1.0), ("unclicked", 0.0)], ITEMS)
    assert built.suggest("dri", k=3) == [("drill", 5.0), ("drills", 3.0), ("drill press", 2.0)]
    assert ("press", 1.0) in built.suggest("pre") and "unclicked" not in built and "Drill  PRESS" in built


def test_boost_multiplies_suggestions_that_name_a_liked_category_level(suggester):
    assert texts(suggester.suggest("d", k=3)) == ["drill", "dewalt", "drills"]
    boosted = suggester.suggest("d", k=3, boost={"Tools > Power Tools > Drills": 2.0})
    assert boosted == [("drills", 6.0), ("drill", 4.0), ("dewalt", 3.0)]  # "drill" is not the word "drills"
    assert suggester.suggest("d", k=3, boost={}) == suggester.suggest("d", k=3)


def test_config_values_out_of_range_name_the_defaults():
    with pytest.raises(ConfigError, match="query_weight=2"):
        SuggestConfig(query_weight=-1.0)


def event(t: float, kind: str, session: str | None, user: str | None = None, query: str | None = None) -> Event:
    return Event(timestamp=t, event_type=kind, session_id=session, user_id=user, item_id=None if kind == "search" else "1",
                 query=query)


def test_clicked_queries_window_grouping_refinement_and_queries_on_clicks():
    events = [
        event(0, "search", "s1", "u1", "Drill"), event(1800, "click", "s1", "u1"),  # 30 minutes: counts
        event(0, "search", "s2", "u1", "saw"), event(1801, "click", "s2", "u1"),  # one second late
        event(0, "search", "s3", "u2", "hammer"), event(10, "click", "s4", "u2"),  # another session of the user
        event(0, "search", None, "u3", "paint"), event(100, "view", None, "u3"),  # no session: by user
        event(0, "search", "s5", query="drill bit"), event(30, "search", "s5", query="drill bits"),
        event(60, "add_to_cart", "s5"), event(90, "purchase", "s5"),  # the refined search, once
        event(5, "click", "s6", query="Ladder"),  # a click that names its query
        event(0, "search", "s7", query="ladder"), event(10, "click", "s7", query="ladder"),  # counted once
    ]
    assert clicked_queries(events) == [("drill", 1), ("drill bits", 1), ("ladder", 2), ("paint", 1)]
    assert ("saw", 1) in clicked_queries(events, window_s=3600)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_the_precomputed_top_lists_give_what_a_scan_gives(k):
    scan = Suggester.build([("drill press", 3.0)], ITEMS, SuggestConfig(cache_above=10_000, max_k=4))
    cached = Suggester.build([("drill press", 3.0)], ITEMS, SuggestConfig(cache_above=1, max_k=4))
    assert cached.top and cached.word_top
    for prefix in ["d", "dr", "drill ", "t", "to", "c", "p", "h", "s", "o", "1", "k"]:
        assert cached.suggest(prefix, k) == scan.suggest(prefix, k), prefix
        assert cached.suggest(prefix, k, {"drills": 3}) == scan.suggest(prefix, k, {"drills": 3}), prefix


def reference(entries: dict[str, float], prefix: str, k: int) -> list[tuple[str, float]]:
    """The ranking rule written plainly: text-start matches by (-score, text), then, if fewer
    than k, later-word matches the same way."""
    text = typed(prefix)
    if not text:
        return []
    order = sorted(entries, key=lambda t: (-entries[t], t))
    first = [t for t in order if t.startswith(text)]
    later = [t for t in order if not t.startswith(text) and any(w.startswith(text) for w in tails(t))]
    return [(t, entries[t]) for t in (first if len(first) >= k else first + later)[:k]]


def tails(text: str) -> list[str]:
    words = text.split(" ")
    return [" ".join(words[i:]) for i in range(1, len(words))]


WORDS = st.sampled_from(["a", "ab", "b", "ba", "abc", "c"])
ENTRIES = st.dictionaries(st.lists(WORDS, min_size=1, max_size=3).map(" ".join), st.integers(0, 3).map(float),
                          min_size=1, max_size=25)


@hypothesis_settings(max_examples=300, deadline=None)
@given(entries=ENTRIES, prefix=st.text(alphabet="abcAB ", max_size=5), k=st.integers(1, 8),
       cache_above=st.integers(1, 6), max_k=st.integers(1, 6))
def test_every_suggestion_starts_with_the_prefix_and_the_ranking_is_the_plain_rule(entries, prefix, k, cache_above, max_k):
    keys = sorted(entries)
    built = Suggester(keys, np.array([entries[t] for t in keys]), SuggestConfig(cache_above=cache_above, max_k=max_k))
    got = built.suggest(prefix, k)
    text = typed(prefix)
    assert all(s.text.startswith(text) or any(w.startswith(text) for w in tails(s.text)) for s in got)
    assert got == reference(entries, prefix, k)


def test_completes_word_reads_the_word_being_typed():
    assert completes_word("cordless drill kit", "cordless dr", "cordless drill bit")
    assert not completes_word("cordless drill kit", "cordless dr", "cordless driver")
    assert completes_word("cordless drill kit", "cordless ", "cordless drill")
    assert not completes_word("cordless drill kit", "cordless ", "cordless")


def test_evaluate_typing_counts_full_queries_and_completed_words():
    past = [("drill press", 1.0)]
    future = ["Cordless Drill", "drill press", "hammer drill x", "ab"]
    got = evaluate_typing(past, future, ITEMS, prefix_lengths=(3,), k=5)
    assert got["queries@3"] == 3.0  # "ab" is not longer than 3 characters
    assert (got["shoplm@3"], got["shoplm_word@3"]) == (pytest.approx(2 / 3), 1.0)
    assert (got["baseline@3"], got["baseline_word@3"]) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert (got["shoplm_reachable"], got["baseline_reachable"]) == (0.5, 0.25)
    assert got["suggest_p99_us"] >= got["suggest_p50_us"] > 0


def test_judged_queries_split_as_eval_search_splits_them():
    judgments = [Judgment(f"query {i}", f"item {j}", float(j % 3 == 0 and i % 5 != 0)) for i in range(40) for j in range(3)]
    settings = Settings(search_dev_fraction=0.3)
    past, future = judged_past_and_future(judgments, settings)
    split = split_queries({j.query for j in judgments}, 0.3, settings.search_split_seed)
    assert future == split.dev
    assert dict(past) == {q: 1.0 for q in split.train if int(q.split()[1]) % 5 != 0}  # no relevant item: left out
    fit, held = judged_past_and_future(judgments, settings, validation=True)
    assert held and not set(held) & {q for q, _ in fit} and set(held) <= set(split.train)
