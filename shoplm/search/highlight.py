"""Matched query words marked in a title, for a results page: "Cordless <mark>Drill</mark> 18V".

A title word is marked when its BM25 term (lower-cased, stemmed as the lexical index stems)
is one of the query's, so "drills" in a title lights up for the query "drill". The rest of
the title is HTML-escaped: the result can be put into a page as it is.
"""

from __future__ import annotations

import html
import re
from typing import Callable, Collection

WORD = re.compile(r"\w\w+")  # bm25s's token pattern: words of two or more characters


def highlight(title: str, terms: Collection[str], stem: Callable[[str], str]) -> str:
    out, last = [], 0
    for match in WORD.finditer(title):
        out.append(html.escape(title[last:match.start()]))
        word = match.group(0)
        out.append(f"<mark>{html.escape(word)}</mark>" if stem(word.lower()) in terms else html.escape(word))
        last = match.end()
    out.append(html.escape(title[last:]))
    return "".join(out)
