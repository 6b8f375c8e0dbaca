"""BM25 in the catalog's language (SHOPLM_LANGUAGE): stemming, Chinese segmentation, errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shoplm.config import LANGUAGES, Settings
from shoplm.errors import IndexMismatch
from shoplm.search.lexical import LexicalIndex


def test_german_plural_finds_the_singular():
    index = LexicalIndex(["b", "s"], ["Bohrmaschine mit Akku", "Stichsäge"], language="de")
    assert list(index.search(["Bohrmaschinen"], 2).ids[0]) == ["b", ""]


def test_english_stemmer_does_not_conflate_german():
    index = LexicalIndex(["b"], ["Bohrmaschine mit Akku"])
    assert list(index.search(["Bohrmaschinen"], 1).ids[0]) == [""]


def test_chinese_query_finds_the_segmented_title_only():
    index = LexicalIndex(["drill", "shoe"], ["博世无线电钻 18V", "男士运动跑步鞋"], language="zh")
    assert list(index.search(["无线电钻"], 2).ids[0]) == ["drill", ""]


def test_a_loaded_index_keeps_its_language(tmp_path):
    LexicalIndex(["drill"], ["博世无线电钻 18V"], language="zh").save(tmp_path / "lex")
    loaded = LexicalIndex.load(tmp_path / "lex", "zh")
    assert loaded.language == "zh" and list(loaded.search(["无线电钻"], 1).ids[0]) == ["drill"]
    with pytest.raises(IndexMismatch, match="built for language 'zh'.*rebuild"):
        LexicalIndex.load(tmp_path / "lex", "en")


def test_every_language_has_its_stemmer():
    import Stemmer

    assert {name for name in LANGUAGES.values() if name} <= set(Stemmer.algorithms())


def test_an_unknown_language_is_a_clear_error():
    assert Settings().language == "en"
    with pytest.raises(ValidationError, match="language 'xx' has no stemmer or segmenter.*SHOPLM_LANGUAGE.*zh"):
        Settings(language="xx")
