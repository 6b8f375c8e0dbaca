"""Spelling correction for every shop: "did you mean" from the catalog's own words.

    speller = Speller(lexical)                # over the BM25 index's item texts
    speller.correct("cordles dril")           # -> "cordless drill", or None when nothing is misspelled

A query word is misspelled when its BM25 term (stemmed, stop words out) is in no item's
text and starts no synonym (shoplm/search/synonyms.py): plain BM25 cannot match it at all,
and about one Home Depot query in seven has one. It is replaced by the catalog word closest
to it (rapidfuzz's Indel similarity >= `SPELLING_MIN`, the most frequent among the best),
or split into two catalog words ("deckover" -> "deck over"). Words of fewer than 3 letters
and words with a digit (sizes, model numbers) are left alone. Unlike `LexicalIndex.corrected`
(stemmed terms, for the re-ranker's candidates) it works on the words a shopper typed, so
the corrected query can be shown and searched by both halves of hybrid search.
"""

from __future__ import annotations

import re
from collections import Counter

from shoplm.search.lexical import DIGIT, SPELLING_MIN, LexicalIndex

WORD = re.compile(r"\w+")


class Speller:
    def __init__(self, lexical: LexicalIndex):
        self.lexical = lexical

    def _vocabulary(self) -> tuple[Counter, list[str]]:
        """The catalog's surface words (lower-cased, 3+ letters, no digit) by how many items have
        them, kept by the lexical index in step with its items."""
        return self.lexical.surface_words()

    def correct(self, query: str) -> str | None:
        """The query with each misspelled word replaced; None when no word changed."""
        from rapidfuzz import fuzz, process

        df = self.lexical.document_frequency()
        counts, words = self._vocabulary()
        out, changed, last = [], False, 0
        synonyms = self.lexical.synonyms
        for match in WORD.finditer(query):
            word = match.group(0)
            lower = word.lower()
            out.append(query[last:match.start()])
            last = match.end()
            terms = self.lexical.tokenize([lower])[0]
            known = all(df.get(t, 0) > 0 or t in synonyms for t in terms)
            if not terms or known or len(lower) < 3 or DIGIT.search(lower):
                out.append(word)  # a stop word, a known word or a synonym of one, a short one or a number
                continue
            close = process.extract(lower, words, scorer=fuzz.ratio, score_cutoff=SPELLING_MIN, limit=5)
            if close:
                out.append(max(close, key=lambda c: (c[1], counts[c[0]], c[0]))[0])
                changed = True
                continue
            split = next((f"{lower[:i]} {lower[i:]}" for i in range(3, len(lower) - 2)
                          if counts.get(lower[:i], 0) and counts.get(lower[i:], 0)), None)
            out.append(split or word)
            changed |= split is not None
        out.append(query[last:])
        return "".join(out) if changed else None
