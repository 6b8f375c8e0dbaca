"""The store's merchandising contract on every backend: rules and synonyms round-trip with
ids that are never reused, a replace keeps created_at, and every write moves the version."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shoplm.data.rules import Rule, Synonym, parse_rule, parse_synonym
from shoplm.errors import NotFound
from shoplm.store import open_store


def _rule(**fields) -> Rule:
    parsed = parse_rule({"action": "pin", "item_id": "fan-1", "position": 0, **fields})
    assert isinstance(parsed, Rule), parsed
    return parsed


def test_rules_round_trip_with_ids_and_times(store):
    assert store.rules() == [] and store.synonyms() == []
    versions = {store.merchandising_version()}
    first = store.put_rule(_rule(query="Big  Fan", name="summer sale", start="2024-06-01T00:00:00Z", end=1.8e9))
    second = store.put_rule(_rule(action="bury", position=None, amount=3, query_contains="fan quiet",
                                  surfaces=["search", "browse"]))
    versions.add(store.merchandising_version())
    assert first.id is not None and second.id > first.id
    assert first.created_at == first.updated_at and first.created_at > 1.6e9
    assert store.rules() == [first, second]
    assert store.rules()[0].query == "big fan" and store.rules()[0].start == 1_717_200_000.0
    assert store.rules()[1].query_contains == ("fan", "quiet") and store.rules()[1].surfaces == ("search", "browse")

    changed = store.put_rule(replace(first, position=4, created_at=None, updated_at=None))
    assert changed.id == first.id and changed.created_at == first.created_at and changed.updated_at >= first.updated_at
    assert store.rules()[0].position == 4
    versions.add(store.merchandising_version())

    assert store.delete_rule(second.id) and not store.delete_rule(second.id)
    versions.add(store.merchandising_version())
    third = store.put_rule(_rule())
    assert third.id > second.id  # a deleted id is never handed out again
    assert len(versions) == 4  # every write moved the version token


def test_replacing_a_missing_rule_is_not_found_and_writes_nothing(store):
    before = store.merchandising_version()
    with pytest.raises(NotFound):
        store.put_rule(replace(_rule(), id=999))
    assert store.rules() == [] and store.merchandising_version() == before


def test_synonyms_round_trip(store):
    two_way = store.put_synonym(parse_synonym({"terms": ["Sofa", "couch", "sofa"]}))
    one_way = store.put_synonym(parse_synonym({"terms": ["tv"], "to": ["Television", "flat screen"]}))
    assert [s.terms for s in store.synonyms()] == [("sofa", "couch"), ("tv",)]
    assert store.synonyms()[1].to == ("television", "flat screen") and one_way.id > two_way.id
    store.put_synonym(replace(two_way, terms=("sofa", "settee")))
    assert store.synonyms()[0].terms == ("sofa", "settee")
    assert store.delete_synonym(two_way.id) and [s.id for s in store.synonyms()] == [one_way.id]
    with pytest.raises(NotFound):
        store.put_synonym(replace(one_way, id=one_way.id + 10))


def test_a_durable_store_keeps_them_across_reopening(durable_store_url):
    store = open_store(durable_store_url)
    rule = store.put_rule(_rule(category="Home > Fans"))
    synonym = store.put_synonym(Synonym(("sofa", "couch")))
    version = store.merchandising_version()
    store.close()
    again = open_store(durable_store_url)
    try:
        assert again.rules() == [rule] and again.synonyms()[0].terms == synonym.terms
        assert again.merchandising_version() == version
    finally:
        again.close()
