"""Synonyms at query time: a query's BM25 terms gain the terms its words are synonyms of.

    synonyms = SynonymMap.build([Synonym(("sofa", "couch")), Synonym(("tv",), ("television",))], lexical.tokenize)
    synonyms.expand(["couch", "cover"])  # -> ["couch", "cover", "sofa"]
    lexical.synonyms = synonyms          # every BM25 score from then on (LexicalIndex.token_scores)

Only the query changes: the catalog is neither re-indexed nor re-encoded, so a synonym takes
effect on the next query. Terms are tokenized as the index tokenizes item text (stemmed, stop
words out), so "couches" finds "sofas" too. A term of several words matches when the query
has its terms in a row, and adds the terms of its synonyms as further query terms, each scored
by BM25 like any other (an OR, as Lucene's query-time synonym expansion); a synonym of a
synonym is not followed (one-way "tv" -> "television" and "television" -> "screen" do not
make "tv" find "screen"), so what a synonym does is read off its own entry.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from shoplm.data.rules import Synonym

Tokenize = Callable[[Sequence[str]], list[list[str]]]


class SynonymMap:
    """first term of a source -> [(source terms, terms it adds)], longest source first."""

    def __init__(self, entries: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] | None = None):
        self.entries = entries or {}

    @classmethod
    def build(cls, synonyms: Iterable[Synonym], tokenize: Tokenize) -> "SynonymMap":
        pairs = [pair for synonym in synonyms for pair in synonym.expansions()]
        phrases = sorted({p for source, targets in pairs for p in (source, *targets)})
        terms = dict(zip(phrases, tokenize(phrases))) if phrases else {}
        merged: dict[tuple[str, ...], dict[str, None]] = {}
        for source, targets in pairs:
            key = tuple(terms[source])
            if key:  # a stop word alone is no BM25 term: nothing to expand
                added = merged.setdefault(key, {})
                added.update(dict.fromkeys(t for target in targets for t in terms[target] if t not in key))
        entries: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {}
        for key in sorted(merged, key=lambda k: (-len(k), k)):
            entries.setdefault(key[0], []).append((key, tuple(merged[key])))
        return cls(entries)

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def __contains__(self, term: object) -> bool:
        """Whether `term` starts some synonym: a known word, even when no item has it."""
        return term in self.entries

    def expand(self, tokens: Sequence[str]) -> list[str]:
        """The query's terms as given, then the terms its synonyms add (each once, in order found)."""
        added: dict[str, None] = {}
        for i, token in enumerate(tokens):
            for source, terms in self.entries.get(token, ()):
                if tuple(tokens[i:i + len(source)]) == source:
                    added.update(dict.fromkeys(terms))
        present = set(tokens)
        return [*tokens, *(t for t in added if t not in present)]
