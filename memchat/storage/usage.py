"""Usage statistics: tokens, cost, failures and latency, aggregated in SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, literal_column
from sqlalchemy import select as select_columns
from sqlmodel import Session

from memchat.storage.core import StoreCore
from memchat.storage.statements import messages_table, summaries_table, threads_table


def model_calls(table) -> list:
    """The rows that stand for a model call: every summary, and of the messages the replies a
    model wrote (a user's message, or an imported reply no model is named for, is no call)."""
    if table is summaries_table:
        return []
    return [table.c.role == literal_column("'assistant'"), table.c.model.isnot(None)]


def priced(table) -> list:
    """The cost of a group of model calls, as every face shows it: a call litellm had no price
    for is unknown, never free. `cost` sums the known prices (NULL when no call had one) and
    `unknown_cost` counts the calls without one."""
    return [
        func.sum(table.c.cost).label("cost"),
        func.sum(case((table.c.cost.is_(None), literal_column("1")), else_=0)).label("unknown_cost"),
    ]


class Usage(StoreCore):
    """Where tokens and money went, per thread or grouped by model, day or thread."""

    def usage_totals(self, thread_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Sums over the model calls (replies and summaries) of every thread, or of one (one
        grouped query of each table); the cost as `usage_stats` counts it (`priced`)."""
        totals: dict[str, dict[str, Any]] = {}
        with self._reading() as session:
            for table in (messages_table, summaries_table):
                query = (
                    select_columns(
                        table.c.thread_id,
                        func.coalesce(func.sum(table.c.prompt_tokens), 0),
                        func.coalesce(func.sum(table.c.completion_tokens), 0),
                        *priced(table),
                    )
                    .where(*model_calls(table))
                    .group_by(table.c.thread_id)
                )
                if thread_id is not None:
                    query = query.where(table.c.thread_id == thread_id)
                elif self.tenant is not None:
                    query = query.join(threads_table, threads_table.c.id == table.c.thread_id).where(
                        threads_table.c.tenant == self.tenant
                    )
                for owner, prompt, completion, cost, unknown in session.execute(query).all():
                    entry = totals.setdefault(
                        owner, {"prompt_tokens": 0, "completion_tokens": 0, "cost": None, "unknown_cost": 0}
                    )
                    entry["prompt_tokens"] += int(prompt)
                    entry["completion_tokens"] += int(completion)
                    if cost is not None:
                        entry["cost"] = float(f"{(entry['cost'] or 0.0) + float(cost):.10g}")
                    entry["unknown_cost"] += int(unknown or 0)
        return totals

    def usage_stats(self, *, thread_id: str | None, by: str | None, since: datetime | None) -> dict[str, list[dict]]:
        """Where tokens went: model calls (turns, with their failures and cut-offs) and summary
        calls apart, each grouped `by` model, day or thread (None: one row), aggregated in SQL.
        A fork's copies cost nothing again: rows a fork copied are left out (a copy's
        `copied_from`; a summary older than the fork that holds it)."""
        with self._reading() as session:
            sqlite = self._dialect(session) == "sqlite"
            return {
                "turns": self._stats_rows(session, messages_table, thread_id, by, since, sqlite),
                "summaries": self._stats_rows(session, summaries_table, thread_id, by, since, sqlite),
            }

    def _stats_rows(
        self, session: Session, table, thread_id: str | None, by: str | None, since, sqlite: bool
    ) -> list[dict]:
        replies = table is messages_table
        day = (
            func.date(table.c.created_at)
            if sqlite
            else func.to_char(func.timezone("UTC", table.c.created_at), "YYYY-MM-DD")
        )
        group = {
            "model": func.coalesce(table.c.model, threads_table.c.model, literal_column("'(default)'")),
            "day": day,
            "thread": table.c.thread_id,
            None: literal_column("'all'"),
        }[by]
        scope = [threads_table.c.import_holder.is_(None)]
        if replies:
            scope.append(table.c.copied_from.is_(None))
        else:
            scope.append((threads_table.c.forked_from.is_(None)) | (table.c.created_at >= threads_table.c.created_at))
        if thread_id is not None:
            scope.append(table.c.thread_id == thread_id)
        if since is not None:
            scope.append(table.c.created_at >= since)
        if self.tenant is not None:
            scope.append(threads_table.c.tenant == self.tenant)
        joined = table.join(threads_table, threads_table.c.id == table.c.thread_id)
        calls = model_calls(table)
        one = literal_column("1")
        counted = [
            group.label("key"),
            func.count().label("calls"),
            func.sum(table.c.prompt_tokens).label("prompt_tokens"),
            func.sum(table.c.completion_tokens).label("completion_tokens"),
            *priced(table),
        ]
        if replies:
            counted.append(
                func.sum(case((table.c.status == literal_column("'partial'"), one), else_=0)).label("partial")
            )
        grouped = (lambda query: query) if by is None else (lambda query: query.group_by(group))
        rows = {
            row.key: dict(row._mapping)
            for row in session.execute(grouped(select_columns(*counted).select_from(joined).where(*scope, *calls)))
            if row.calls
        }
        latencies = self._latency_percentiles(session, table, group, joined, [*scope, *calls], by is None)
        failed = self._unanswered_turns(session, group, joined, scope, grouped) if replies else {}
        result = []
        for key in sorted(set(rows) | set(failed), key=str):
            row = rows.get(key) or {
                "calls": 0,
                "prompt_tokens": None,
                "completion_tokens": None,
                "cost": None,
                "unknown_cost": 0,
            }
            p50, p95 = latencies.get(key, (None, None))
            entry = {
                by or "group": str(key),
                "calls": int(row["calls"]),
                "prompt_tokens": int(row["prompt_tokens"] or 0),
                "completion_tokens": int(row["completion_tokens"] or 0),
                "cost": float(f"{float(row['cost']):.10g}") if row["cost"] is not None else None,
                "unknown_cost": int(row["unknown_cost"] or 0),
                "latency_p50_ms": p50,
                "latency_p95_ms": p95,
            }
            if replies:
                entry.update(partial=int(row.get("partial") or 0), failed=failed.get(key, 0))
            result.append(entry)
        if by == "thread" and result:
            titles = self._titles({entry["thread"] for entry in result})
            for entry in result:
                entry["title"] = titles.get(entry["thread"], "")
        return result

    @staticmethod
    def _latency_percentiles(session: Session, table, group, joined, scope: list, whole: bool) -> dict[Any, tuple]:
        """(p50, p95) latency of each group, nearest rank, by window functions (SQLite has no
        percentile function; PostgreSQL's would need another query for each group)."""
        partition = None if whole else group
        ranked = (
            select_columns(
                group.label("key"),
                table.c.latency_ms.label("latency"),
                func.row_number().over(partition_by=partition, order_by=table.c.latency_ms).label("rank"),
                func.count().over(partition_by=partition).label("size"),
            )
            .select_from(joined)
            .where(*scope, table.c.latency_ms.isnot(None))
            .subquery()
        )
        percentiles = select_columns(
            func.min(ranked.c.key).label("key"),
            func.min(case((ranked.c.rank >= 0.5 * ranked.c.size, ranked.c.latency))).label("p50"),
            func.min(case((ranked.c.rank >= 0.95 * ranked.c.size, ranked.c.latency))).label("p95"),
        )
        return {
            row.key: (row.p50, row.p95)
            for row in session.execute(percentiles if whole else percentiles.group_by(ranked.c.key))
            if row.key is not None
        }

    @staticmethod
    def _unanswered_turns(session: Session, group, joined, scope: list, grouped) -> dict[Any, int]:
        """Turns that got no reply at all, by group: the user message failed, and no cut-off reply follows it."""
        reply = messages_table.alias("reply")
        answered = (
            select_columns(literal_column("1"))
            .where(
                reply.c.thread_id == messages_table.c.thread_id,
                reply.c.position == messages_table.c.position + 1,
                reply.c.role == literal_column("'assistant'"),
            )
            .exists()
        )
        query = grouped(
            select_columns(group.label("key"), func.count().label("turns"))
            .select_from(joined)
            .where(
                *scope,
                messages_table.c.role == literal_column("'user'"),
                messages_table.c.status == literal_column("'failed'"),
                ~answered,
            )
        )
        return {row.key: row.turns for row in session.execute(query) if row.turns}
