"""Search queries for the database's own full-text engines: SQLite FTS5 and PostgreSQL.

Users write one syntax on both backends, the one PostgreSQL's `websearch_to_tsquery` reads and
search boxes use: words (all must match), "quoted phrases", `OR` between alternatives, and
`-word` to exclude. For SQLite it is translated to an FTS5 expression here, every word quoted,
so no input is an FTS5 syntax error. Recall asks the opposite question (which older messages
share the most with this one?) and matches any of a message's words, ranked by relevance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memchat.errors import InvalidInput

WORD = re.compile(r"\w+")
TOKEN = re.compile(r'-?"[^"]*"?|\S+')
MAX_RECALL_TERMS = 64
STOP_WORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves""".split()
)

HIGHLIGHT_START = "\x02"
HIGHLIGHT_END = "\x03"
"""Marks around matched words in snippets as the store returns them; see `highlights`."""


@dataclass(frozen=True)
class _Term:
    words: tuple[str, ...]
    negated: bool = False

    def fts5(self) -> str:
        return '"' + " ".join(self.words) + '"'


def fts5_search(query: str) -> str:
    """The FTS5 MATCH expression for a search box query."""
    groups: list[list[_Term]] = []
    negated: list[_Term] = []
    pending_or = False
    for token in TOKEN.findall(query):
        if token == "OR":
            pending_or = bool(groups)
            continue
        term = _Term(tuple(WORD.findall(token)), token.startswith("-") and len(token) > 1)
        if not term.words:
            continue
        if term.negated:
            negated.append(term)
        elif pending_or:
            groups[-1].append(term)
        else:
            groups.append([term])
        pending_or = False
    if not groups:
        raise InvalidInput(f"nothing to search for in {query!r}: give at least one word that must match")
    positive = " AND ".join("(" + " OR ".join(t.fts5() for t in group) + ")" for group in groups)
    return f"({positive})" + "".join(f" NOT {t.fts5()}" for t in negated)


def fts5_scoped(expression: str, thread_ids: list[str] | None) -> str:
    """`expression` over message contents only, within the entries of `thread_ids` when given
    (the index holds each message's thread id as a second column; a fork's copies are found
    through their originals' entries, so a thread's search covers its fork ancestors' too)."""
    scoped = f"content : ({expression})"
    if not thread_ids:
        return scoped
    threads = " OR ".join('"' + thread_id.replace('"', '""') + '"' for thread_id in thread_ids)
    return scoped + f" AND thread_id : ({threads})"


def recall_words(text: str) -> list[str]:
    """The distinct words of a message worth matching on, in order, without common English words."""
    seen: dict[str, None] = {}
    for word in WORD.findall(text.lower()):
        if word not in STOP_WORDS and word not in seen:
            seen[word] = None
        if len(seen) == MAX_RECALL_TERMS:
            break
    return list(seen)


def fts5_any(words: list[str]) -> str:
    return " OR ".join(f'"{word}"' for word in words)


def tsquery_any(words: list[str]) -> str:
    """For PostgreSQL's `to_tsquery`: words only (so no syntax), any of them."""
    return " | ".join(words)


def highlights(snippet: str) -> tuple[str, list[tuple[int, int]]]:
    """The snippet's text without marks, and the [start, end) spans that matched."""
    text, spans, start = [], [], None
    length = 0
    for piece in re.split(f"([{HIGHLIGHT_START}{HIGHLIGHT_END}])", snippet):
        if piece == HIGHLIGHT_START:
            start = length
        elif piece == HIGHLIGHT_END:
            if start is not None and start < length:
                spans.append((start, length))
            start = None
        else:
            text.append(piece)
            length += len(piece)
    return "".join(text), spans
