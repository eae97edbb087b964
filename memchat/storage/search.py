"""Finding messages by their words and meaning: the search box (`search`), recall for a
turn's context (`recall`, dates named included) and the vectors recall by meaning keeps
(`memchat.vectors`). The query language and ranking are `fulltext`'s."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, exists, literal_column, text
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from memchat.records import MessagePublic
from memchat.results import SearchHit
from memchat.storage import fulltext
from memchat.storage.lineage import Lineage
from memchat.storage.models import Message, MessageVector
from memchat.storage.statements import (
    HELD_UNDER,
    LINEAGE_STEP,
    Segment,
    in_segment,
    insert_ignoring_duplicates,
    message_of,
    messages_table,
    position_param,
)
from memchat.times import as_utc

_BM25 = "bm25(messages_fts, 1.0, 0.0)"
"""Relevance from message contents only (the index's second column is the thread id)."""
_HEADLINE = f"StartSel={fulltext.HIGHLIGHT_START}, StopSel={fulltext.HIGHLIGHT_END}, MaxWords=24, MinWords=10"


def _union_of_originals_and_copies(columns: str, scope: list[str], order: str, *, copies: bool = True) -> str:
    """Index hits (`hits`: original, ...) as the messages they stand for, the originals and
    (unless the scope is one thread that is no fork, which holds no copies) every fork copy of
    them (0010), within `scope` and threads not being imported (`t`), ordered and limited."""
    where = (" WHERE " + " AND ".join(scope)) if scope else ""
    threads = " JOIN threads t ON t.id = m.thread_id AND t.import_holder IS NULL"
    union = f"UNION ALL SELECT {columns} FROM hits h JOIN messages m ON m.copied_from = h.original{threads}{where} "
    return (
        f"SELECT {columns} FROM hits h JOIN messages m ON m.id = h.original{threads}{where} "
        f"{union if copies else ''}ORDER BY {order} LIMIT :limit"
    )


_RECALLABLE = (
    messages_table.c.thread_id == bindparam("thread_key"),
    messages_table.c.status == literal_column("'complete'"),
    messages_table.c.role.in_([literal_column("'user'"), literal_column("'assistant'")]),
)
"""What recall may bring: a thread's completed user and assistant messages."""
_RECALLABLE_AT = select_columns(messages_table).where(
    *_RECALLABLE,
    messages_table.c.position.in_(bindparam("positions", expanding=True)),
    # The segment checked on each row found (`+ 0`: no index range), so that the positions are
    # looked up one by one; given the segment's range, SQLite read every message in it.
    (messages_table.c.position + 0).between(bindparam("seg_first"), bindparam("seg_last")),
)


class Recallable(NamedTuple):
    """A message recall found by its words, as re-ranking it by meaning reads it (an inherited
    message's id is its origin's, whose vector it shares)."""

    id: int
    position: int
    content: str


_vectors = MessageVector.__table__
_UNEMBEDDED = (
    select_columns(messages_table)
    .where(
        *_RECALLABLE,
        in_segment(last=position_param("before_position", -1)),
        ~exists().where(
            _vectors.c.message_id == HELD_UNDER,
            _vectors.c.model == bindparam("vector_model"),
        ),
    )
    .order_by(messages_table.c.position.desc())
    .limit(bindparam("batch"))
)
"""A segment's recallable messages older than `before_position` that have no vector by the
model yet, newest first."""
_SAID_FROM = (
    select_columns(messages_table.c.position, messages_table.c.created_at)
    .where(messages_table.c.thread_id == bindparam("thread_key"), in_segment(first=position_param("from_position")))
    .order_by(messages_table.c.position)
    .limit(1)
)
_SAID_BETWEEN = (
    select_columns(messages_table.c.position, messages_table.c.created_at)
    .where(
        messages_table.c.thread_id == bindparam("thread_key"),
        in_segment(first=position_param("first"), last=position_param("last", -1)),
        messages_table.c.created_at >= bindparam("start"),
        messages_table.c.created_at < bindparam("end"),
        messages_table.c.status == literal_column("'complete'"),
        messages_table.c.role.in_(["user", "assistant"]),
    )
    .order_by(messages_table.c.position.desc())
    .limit(bindparam("scan"))
)
_SNIPPETS = text(
    "SELECT rowid, snippet(messages_fts, 0, char(2), char(3), '…', 16) FROM messages_fts "
    "WHERE messages_fts MATCH :match AND rowid IN :originals"
).bindparams(bindparam("originals", expanding=True))
_copies, _originals = messages_table.alias("copies"), messages_table.alias("originals")
_ORIGINAL_THREADS = (
    select_columns(_originals.c.thread_id)
    .select_from(_copies.join(_originals, _originals.c.id == _copies.c.copied_from))
    .where(_copies.c.thread_id.in_(bindparam("thread_keys", expanding=True)), _copies.c.copied_from.isnot(None))
    .distinct()
)


def _word_matches(listed: str | None, complete: bool, *, context: bool) -> fulltext.WordMatches:
    """A word's matches from the statement's "position seconds,..." list."""
    said = [pair.split(" ") for pair in listed.split(",")] if listed else []
    return fulltext.WordMatches([int(p) for p, _ in said], [float(t) for _, t in said], complete, context)


def _in_lineage(lineage: Sequence[Segment]) -> tuple[str, dict[str, Any]]:
    """SQL that holds for a message `m` of the thread whose lineage this is, and its parameters."""
    terms, params = [], {}
    for index, (thread, first, last) in enumerate(lineage):
        terms.append(f"(m.thread_id = :segment{index} AND m.position BETWEEN :first{index} AND :last{index})")
        params.update({f"segment{index}": thread, f"first{index}": first, f"last{index}": last})
    return "(" + " OR ".join(terms) + ")", params


def _word_matches_statement(
    words: Sequence[str], sources: list[str], sqlite: bool, lineage: Sequence[Segment]
) -> tuple[str, dict[str, Any]]:
    """For recall: for each word (by its index) found in the thread, the number of index entries
    read (the newest :scan entries holding it, in the thread and its fork ancestors) and, as a
    comma-separated list of "position seconds", the thread's messages they stand for (the
    entry's own, or its copy's in a fork) among those recall may bring (older than :before,
    completed, a user's or an assistant's) and when each was said."""
    in_thread, params = _in_lineage(lineage)
    recallable = f"{in_thread} AND m.position < :before AND m.status = 'complete' AND m.role IN ('user', 'assistant')"
    epoch = "strftime('%s', m.created_at)" if sqlite else "extract(epoch from m.created_at)::bigint"
    said = f"m.position || ' ' || {epoch}"
    position = f"(SELECT {said} FROM messages m WHERE m.id = h.original AND {recallable})"
    if len(sources) > 1:
        position = (
            f"coalesce({position}, (SELECT {said} FROM messages m WHERE m.copied_from = h.original AND {recallable}))"
        )
    tables, selects = [], []
    listed = "group_concat(said)" if sqlite else "string_agg(said, ',')"
    for index, word in enumerate(words):
        if sqlite:
            tables.append(
                f"h{index} AS (SELECT rowid AS original FROM messages_fts WHERE messages_fts MATCH :match{index} "
                "ORDER BY rowid DESC LIMIT :scan)"
            )
            params[f"match{index}"] = fulltext.fts5_scoped(f'"{word}"', sources)
        else:
            tables.append(
                f"h{index} AS (SELECT o.id AS original FROM messages o "
                f"WHERE to_tsvector('english', o.content) @@ to_tsquery('english', :match{index}) "
                "AND o.copied_from IS NULL AND o.thread_id = ANY(:sources) ORDER BY o.id DESC LIMIT :scan)"
            )
            params[f"match{index}"] = word
        selects.append(f"SELECT {index} AS word, {position} AS said FROM h{index} h")
    if not sqlite:
        params["sources"] = sources
    union = " UNION ALL ".join(selects)
    return f"WITH {', '.join(tables)} SELECT word, count(*), {listed} FROM ({union}) found GROUP BY word", params


class Search(Lineage):
    """Messages found by words (search and recall) and by meaning (the vectors recall keeps)."""

    def search(self, query: str, *, thread_id: str | None = None, limit: int = 20) -> list[SearchHit]:
        """Messages matching a search-box query (see `fulltext`), best first. Each index entry
        stands for its message and the fork copies of it (revision 0010)."""
        expression = fulltext.fts5_search(query)
        with self._reading() as session:
            sources = self._indexed_under(session, thread_id) if thread_id else None
            in_thread, lineage = _in_lineage(self._lineage(session, thread_id)) if thread_id else ("", {})
            scope = ([in_thread] if thread_id else []) + (["t.tenant = :tenant"] if self.tenant is not None else [])
            copies = sources != [thread_id]
            columns = "m.id AS id, h.original AS original, h.score AS score"
            sqlite = self._dialect(session) == "sqlite"
            if sqlite:
                match = fulltext.fts5_scoped(expression, sources)
                sql = (
                    f"WITH hits AS (SELECT rowid AS original, -{_BM25} AS score FROM messages_fts "
                    "WHERE messages_fts MATCH :match) "
                    + _union_of_originals_and_copies(columns, scope, "score DESC, id", copies=copies)
                )
                params = {"match": match, "limit": limit, **lineage}
            else:
                # The headline, the costly part, only for the hits shown.
                sql = (
                    "WITH q AS (SELECT websearch_to_tsquery('english', :query) AS q), "
                    "hits AS (SELECT o.id AS original, ts_rank_cd(to_tsvector('english', o.content), q.q) AS score "
                    "FROM messages o, q WHERE to_tsvector('english', o.content) @@ q.q AND o.copied_from IS NULL"
                    + (" AND o.thread_id = ANY(:sources)" if sources else "")
                    + ") SELECT r.id, ts_headline('english', o.content, q.q, :headline), r.score FROM ("
                    + _union_of_originals_and_copies(columns, scope, "score DESC, id", copies=copies)
                    + ") r JOIN messages o ON o.id = r.original, q ORDER BY r.score DESC, r.id"
                )
                params = {"query": query, "headline": _HEADLINE, "limit": limit, "sources": sources, **lineage}
            if not sources:
                params.pop("sources", None)
            if self.tenant is not None:
                params["tenant"] = self.tenant
            ranked = session.execute(text(sql), params).all()
            if sqlite and ranked:
                # Snippets only for the hits shown, not for every match of a common word.
                snippets = dict(
                    session.execute(_SNIPPETS, {"match": match, "originals": list({r[1] for r in ranked})}).all()
                )
                ranked = [(i, snippets.get(original, ""), score) for i, original, score in ranked]
        found = self._messages_by_id([row[0] for row in ranked])
        if thread_id:
            # a fork's inherited messages, found under their origin's id, shown as the fork's
            found = {i: message.model_copy(update={"thread_id": thread_id}) for i, message in found.items()}
        titles = self._titles({message.thread_id for message in found.values()})
        return [
            SearchHit(found[i], titles.get(found[i].thread_id, ""), snippet, float(score))
            for i, snippet, score in ranked
            if i in found
        ]

    def _messages_by_id(self, message_ids: Sequence[int]) -> dict[int, MessagePublic]:
        """The messages a search's hits stand for, by id."""
        with self._reading() as session:
            rows = session.exec(select(Message).where(col(Message.id).in_(list(message_ids)))).all()
            return {m.id: MessagePublic.model_validate(m) for m in rows}

    @staticmethod
    def _indexed_under(session: Session | Connection, thread_id: str) -> list[str]:
        """The threads whose full-text entries stand for this thread's messages: its own and its
        fork ancestors' (a fork's copies point at their originals' entries). Where an ancestor
        is gone, what it gave was copied into the threads below it: copies of its own messages
        were indexed again (under those threads), copies of what it inherited point at their
        originals further up, whose threads are asked for directly (for every thread below it,
        not only the one searched: a fork of a fork reads the copies its origin holds)."""
        found = [thread_id]
        while True:
            parent = session.execute(LINEAGE_STEP, {"thread_key": found[-1]}).first()
            if parent is None:
                originals = session.execute(_ORIGINAL_THREADS, {"thread_keys": found[:-1]}).scalars()
                return list(dict.fromkeys([*found[:-1], *originals]))
            if parent.forked_from is None or parent.forked_from in found:
                return found
            found.append(parent.forked_from)

    def recall(
        self,
        thread_id: str,
        about: str,
        *,
        before: int,
        limit: int,
        context: str = "",
        similar: Callable[[list[Recallable]], dict[int, float]] | None = None,
    ) -> list[MessagePublic]:
        """The thread's completed user and assistant messages older than position `before` that
        best match `about`, best first, ranked by `fulltext.rank_recalled` (a fork's copies found
        through their originals' index entries, revision 0010). One statement reads, for each of
        `about`'s words, the newest index entries holding it in this thread (`fulltext.recall_scan`).
        `context`: what was said just before `about`, whose words count too, less than `about`'s
        (a turn gives it for a short message, `fulltext.SHORT_MESSAGE_WORDS`). `similar`: given
        the best matches, their similarity to `about` by meaning, by position (`memchat.recollection`)."""
        words = fulltext.recall_words(about)
        own = len(words)
        words += [word for word in fulltext.recall_words(context) if word not in words][
            : fulltext.MAX_RECALL_TERMS - own
        ]
        if not words or before <= 0:
            return []
        with self._core_reading() as session:
            sources = self._indexed_under(session, thread_id)
            sqlite = self._dialect(session) == "sqlite"
            statement, params = _word_matches_statement(words, sources, sqlite, self._lineage(session, thread_id))
            scan = fulltext.recall_scan(len(words))
            rows = session.execute(text(statement), {**params, "before": before, "scan": scan})
            matches = [_word_matches(listed, read < scan, context=word >= own) for word, read, listed in rows]
            matches += [
                self._said_between(session, thread_id, since, until, before, scan)
                for since, until in fulltext.dates_named(about)
            ]
            found: dict[int, Any] = {}
            asked: set[int] = set()

            def recallable_at(positions: list[int]) -> list:
                """The rows at these positions that recall may bring, each read once a recall."""
                wanted = [p for p in positions if p not in asked]
                if wanted:
                    asked.update(wanted)
                    rows = self._across(session, thread_id, _RECALLABLE_AT, {"positions": wanted})
                    found.update((row.position, row) for row in rows)
                return [found[p] for p in positions if p in found]

            by_meaning = None
            if similar is not None:

                def by_meaning(positions: list[int]) -> dict[int, float]:
                    return similar([Recallable(row.id, row.position, row.content) for row in recallable_at(positions)])

            ranked = fulltext.rank_recalled(matches, before, keep=2 * limit + 16, similar=by_meaning)
            recalled: list[MessagePublic] = []
            # Neighbours that are not recallable (a system message, an undone turn) are passed over.
            size = max(2 * limit, 16)
            for start in range(0, len(ranked), size):
                if len(recalled) >= limit:
                    break
                taken = recallable_at(ranked[start : start + size])[: limit - len(recalled)]
                recalled += [message_of(row, thread_id) for row in taken]
        return recalled

    def _said_between(
        self, session: Session | Connection, thread_id: str, start: datetime, end: datetime, before: int, scan: int
    ) -> fulltext.WordMatches:
        """The recallable messages said in [start, end), newest first, at most `scan`: found by
        halving the thread's positions (its messages are in the order they were said), so a
        date costs a few index reads whatever the thread's length."""

        def first_said_from(moment: datetime) -> int:
            low, high = 0, before
            while low < high:
                middle = (low + high) // 2
                found = self._across(
                    session, thread_id, _SAID_FROM, {"from_position": middle}, oldest_first=True, limit=1
                )
                said = found[0] if found else None
                if said is not None and said.position < before and as_utc(said.created_at) < moment:
                    low = said.position + 1
                else:
                    high = middle
            return low

        first, last = first_said_from(start), first_said_from(end)
        rows = self._across(
            session,
            thread_id,
            _SAID_BETWEEN,
            {"first": first, "last": min(last, before), "start": start, "end": end},
            limit=scan,
            limit_key="scan",
        )
        return fulltext.WordMatches(
            [row.position for row in rows], [as_utc(row.created_at).timestamp() for row in rows], len(rows) < scan
        )

    def vectors(self, model: str, message_ids: Iterable[int]) -> dict[int, bytes]:
        """The vectors by `model` kept for these messages (`memchat.vectors`), by message id: a
        fork's copy of a message has its original's (the same text has the same vector)."""
        wanted = list(set(message_ids))
        if not wanted:
            return {}
        with self._reading() as session:
            rows = session.execute(
                select_columns(messages_table.c.id, _vectors.c.vector)
                .join(_vectors, (_vectors.c.message_id == HELD_UNDER) & (_vectors.c.model == model))
                .where(messages_table.c.id.in_(wanted))
            )
            return {message_id: bytes(vector) for message_id, vector in rows}

    def save_vectors(self, model: str, vectors: dict[int, bytes]) -> None:
        """Keep vectors made for recall, a copy's under its original; one another process saved
        first is left as it is (the same model gives the same text the same vector). A message
        deleted meanwhile gets none."""
        if not vectors:
            return
        with self._writing() as session:
            owners = session.execute(
                select_columns(messages_table.c.id, HELD_UNDER).where(messages_table.c.id.in_(list(vectors)))
            ).all()
            present = set(
                session.execute(select(Message.id).where(col(Message.id).in_([o for _, o in owners]))).scalars()
            )
            under = {owner: vectors[i] for i, owner in owners if owner in present}
            rows = [{"message_id": i, "model": model, "vector": v} for i, v in under.items()]
            if rows:
                session.execute(insert_ignoring_duplicates(session, MessageVector), rows)

    def unembedded(self, thread_id: str, model: str, *, before: int, limit: int) -> list[MessagePublic]:
        """Up to `limit` of the thread's recallable messages (its own and what it inherits) older
        than position `before` that have no vector by `model`, newest first: a caller going
        through a thread passes the last position it was given, so no page reads again what
        an earlier one passed over."""
        values = {"vector_model": model, "before_position": before}
        with self._reading() as session:
            thread_id = self._resolve(session, thread_id).id
            rows = self._across(session, thread_id, _UNEMBEDDED, values, limit=limit, limit_key="batch")
            return [message_of(row, thread_id) for row in rows]
