"""Search queries for the database's own full-text engines: SQLite FTS5 and PostgreSQL.

Users write one syntax on both backends, the one PostgreSQL's `websearch_to_tsquery` reads and
search boxes use: words (all must match), "quoted phrases", `OR` between alternatives, and
`-word` to exclude. For SQLite it is translated to an FTS5 expression here, every word quoted,
so no input is an FTS5 syntax error. Recall asks the opposite question (which older messages
share the most with this one?): the database finds, for each of a message's words, the thread's
messages that hold it, and `rank_recalled` ranks them here (see there).
"""

from __future__ import annotations

import bisect
import heapq
import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from memchat.errors import InvalidInput

WORD = re.compile(r"\w+")
TOKEN = re.compile(r'-?"[^"]*"?|\S+')
MAX_RECALL_TERMS = 64
RECALL_SCAN = 2400
RECALL_SCAN_PER_WORD = 250
"""Index entries recall reads, newest first: RECALL_SCAN shared by the message's words, at least
RECALL_SCAN_PER_WORD each. A word in more of the thread's messages than its share counts only in
the newest of them (its weight, estimated from how far back they reach, is low by then), so a
query's cost has a bound whatever the thread's length."""
RECALL_SPREAD_FROM = 256
"""The best-scoring matches that pass shares of their scores to their neighbours (the others
would not reach the top with them)."""
SHORT_MESSAGE_WORDS = 2
CONTEXT_SHARE = 0.5
"""A new message with fewer words worth matching than SHORT_MESSAGE_WORDS ("and its name?") is
read with the words of the messages just before it, which together weigh at most CONTEXT_SHARE
of what the message's own words weigh (all of it, where none of its own is in the thread)."""
SITTING_SECONDS = 3600
SITTING_SHARE = 0.3
"""A message said within SITTING_SECONDS of another holding a word gains SITTING_SHARE of the
word's weight, once per word."""
SIMILAR_SHARE = 0.25
SIMILAR_ABOVE = 0.9
"""With an embedding model (`recall_embeddings`), the RECALL_SPREAD_FROM best matches are scored
by similarity to the new message too: those more similar than SIMILAR_ABOVE of them gain up to
SIMILAR_SHARE of what a message holding all the new message's words would score, in proportion
to how far they are above that line (relative to the best: similarities of different models are
not on one scale)."""
NEIGHBOUR_WEIGHTS = (0.5, 0.25, 0.125)
"""The share of a message's score that the messages 1, 2 and 3 places away from it receive."""
STOP_WORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves
    s t d ll m re ve don didn doesn isn wasn aren weren hasn haven hadn couldn shouldn wouldn mustn
    needn shan mightn ain""".split()
)
"""Common English words, and the pieces contractions leave ("Joanna's", "don't", "we'll"): they
would match nearly every message."""

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


_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            "january jan",
            "february feb",
            "march mar",
            "april apr",
            "may",
            "june jun",
            "july jul",
            "august aug",
            "september sept sep",
            "october oct",
            "november nov",
            "december dec",
        ),
        1,
    )
    for name in names.split()
}
_MONTH = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_DATES = [
    ("dmy", re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+(\d{{4}})\b", re.IGNORECASE)),
    ("mdy", re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+(\d{{4}})\b", re.IGNORECASE)),
    ("iso", re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")),
    ("my", re.compile(rf"\b{_MONTH},?\s+(\d{{4}})\b", re.IGNORECASE)),
    ("iso-month", re.compile(r"\b(\d{4})-(\d{2})\b")),
]


def dates_named(text: str) -> list[tuple[datetime, datetime]]:
    """The days ("3 June 2023", "June 3rd, 2023", "2023-06-03") and months ("June 2023",
    "2023-06") a message names, as [start, end) in UTC, the zone recall shows times in; a month is
    taken only where it is not part of a day already found. A message that names a date asks about
    what was said then: recall treats each as a word held by the messages said in it."""
    found: list[tuple[datetime, datetime]] = []
    taken: list[tuple[int, int]] = []
    for form, pattern in _DATES:
        for match in pattern.finditer(text):
            if any(start <= match.start() < end for start, end in taken):
                continue
            groups = match.groups()
            try:
                if form == "dmy":
                    start = datetime(int(groups[2]), _MONTHS[groups[1].lower()], int(groups[0]), tzinfo=timezone.utc)
                elif form == "mdy":
                    start = datetime(int(groups[2]), _MONTHS[groups[0].lower()], int(groups[1]), tzinfo=timezone.utc)
                elif form == "iso":
                    start = datetime(int(groups[0]), int(groups[1]), int(groups[2]), tzinfo=timezone.utc)
                elif form == "my":
                    start = datetime(int(groups[1]), _MONTHS[groups[0].lower()], 1, tzinfo=timezone.utc)
                else:
                    start = datetime(int(groups[0]), int(groups[1]), 1, tzinfo=timezone.utc)
            except ValueError:
                continue  # not a date: 31 June, month 13
            if form in ("my", "iso-month"):
                end = (start + timedelta(days=32)).replace(day=1)
            else:
                end = start + timedelta(days=1)
            taken.append(match.span())
            if (start, end) not in found:
                found.append((start, end))
    return found


@dataclass(frozen=True)
class WordMatches:
    """The eligible messages of a thread (older than recall's limit) holding one word, as the
    store read them from the newest `recall_scan` index entries holding it."""

    positions: list[int]
    times: list[float]
    """When each was said (seconds since the epoch), in the same order."""
    complete: bool
    """False: the scan stopped at its bound, older matches were not read."""
    context: bool = False
    """A word from the messages before a short new message (SHORT_MESSAGE_WORDS)."""


def recall_scan(words: int) -> int:
    """Index entries read per word."""
    return max(RECALL_SCAN_PER_WORD, RECALL_SCAN // max(words, 1))


def document_frequency(matches: WordMatches, before: int) -> float:
    """How many of the `before` messages hold the word: counted, or, where the scan stopped,
    estimated from how far back its newest matches reach."""
    found = len(matches.positions)
    if matches.complete or not found:
        return float(found)
    reach = before - min(matches.positions)
    return min(float(before), found * before / max(reach, 1))


def rank_recalled(
    matches: Sequence[WordMatches],
    before: int,
    *,
    keep: int,
    similar: Callable[[list[int]], dict[int, float]] | None = None,
) -> list[int]:
    """The `keep` best positions older than `before`, best first (the sitting weighed among the
    `keep` best without it).

    A message scores the weights of the words it shares with the new message, each word weighted
    by how rare it is *in this thread* (BM25's inverse document frequency over the thread's own
    messages: a name said in every message of this conversation tells nothing here, however rare
    it is in the rest of the database; a word from the messages before a short new message weighs
    less, see CONTEXT_SHARE). A word's weight is counted once per message, so a long
    message is not favoured for repeating it. Then each message passes a share of its score to the
    messages around it (NEIGHBOUR_WEIGHTS): the reply to a matching question, or the question a
    matching reply answers, often holds what matters without repeating its words, and a message
    between two matches is likelier to be part of what was said about them. Last, a message gains
    a share of the weight of each word said in the same sitting (within SITTING_SECONDS): what
    was talked about together is likelier to be what the new message is about. A message that
    only neighbours a match is taken to be said when that match was.

    `similar`: given the best matches' positions, their similarity to the new message by meaning
    (an embedding model's, see SIMILAR_SHARE), added to their own scores before they pass shares on."""
    own: dict[int, float] = defaultdict(float)
    said: dict[int, float] = {}
    weights: list[tuple[float, list[float]]] = []
    full = 0.0
    for word_matches, weight in _word_weights(matches, before):
        weights.append((weight, sorted(word_matches.times)))
        full += 0.0 if word_matches.context else weight
        for position, when in zip(word_matches.positions, word_matches.times):
            own[position] += weight
            said[position] = when
    if similar is not None and own:
        best_matches = [p for p, _ in heapq.nlargest(RECALL_SPREAD_FROM, own.items(), key=lambda item: item[1])]
        for position, gain in _similarity_gains(similar(best_matches)).items():
            own[position] += SIMILAR_SHARE * (full or max(own.values())) * gain
    scores: dict[int, float] = defaultdict(float, own)
    for position, score in heapq.nlargest(RECALL_SPREAD_FROM, own.items(), key=lambda item: item[1]):
        for distance, share in enumerate(NEIGHBOUR_WEIGHTS, 1):
            for near in (position - distance, position + distance):
                if 0 <= near < before:
                    scores[near] += share * score
                    said.setdefault(near, said[position])
    best = heapq.nlargest(keep, scores.items(), key=lambda item: (item[1], item[0]))
    in_sitting = [(position, score + SITTING_SHARE * _sitting(said[position], weights)) for position, score in best]
    return [position for position, _ in heapq.nlargest(keep, in_sitting, key=lambda item: (item[1], item[0]))]


def _similarity_gains(similarities: dict[int, float]) -> dict[int, float]:
    """For each message more similar than SIMILAR_ABOVE of them, how far above that line it is,
    the most similar's distance being 1."""
    if len(similarities) < 2:
        return {}
    ordered = sorted(similarities.values())
    line, top = ordered[min(int(len(ordered) * SIMILAR_ABOVE), len(ordered) - 2)], ordered[-1]
    if top <= line:
        return {}
    return {position: (value - line) / (top - line) for position, value in similarities.items() if value > line}


def _word_weights(matches: Sequence[WordMatches], before: int) -> list[tuple[WordMatches, float]]:
    """Each word found with its weight (its rarity in the thread), the words of the context
    scaled to CONTEXT_SHARE of the new message's own."""
    weighed = []
    for word_matches in matches:
        frequency = document_frequency(word_matches, before)
        if frequency:
            weighed.append((word_matches, math.log((before - frequency + 0.5) / (frequency + 0.5) + 1)))
    own = sum(weight for word_matches, weight in weighed if not word_matches.context)
    context = sum(weight for word_matches, weight in weighed if word_matches.context)
    if own and context:
        scale = min(1.0, CONTEXT_SHARE * own / context)
        weighed = [(m, weight * scale if m.context else weight) for m, weight in weighed]
    return weighed


def _sitting(when: float, weights: list[tuple[float, list[float]]]) -> float:
    """The weights of the words said within SITTING_SECONDS of `when`."""
    total = 0.0
    for weight, times in weights:
        nearest = bisect.bisect_left(times, when - SITTING_SECONDS)
        if nearest < len(times) and times[nearest] <= when + SITTING_SECONDS:
            total += weight
    return total


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
