"""The database under stress (issue 24): a database that stops answering must fail requests in
seconds, never take /healthz and /metrics down with it, and never let requests pile up without
bound. Real server processes, real clients, both backends."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from helpers import sqlite_only
from serving import Served


@contextmanager
def stalled(db_url: str):
    """The database stops answering memchat: on PostgreSQL, its tables locked by another
    transaction (every read and write waits); on SQLite, its write lock held (every write waits)."""
    if db_url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(db_url) as holder:
            holder.execute("LOCK TABLE threads, messages, alembic_version IN ACCESS EXCLUSIVE MODE")
            yield
            holder.rollback()
        return
    holder = sqlite3.connect(db_url, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _add_item(served: Served, conversation: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    answer = httpx.post(
        f"{served.base_url}/conversations/{conversation}/items",
        json={"items": [{"type": "message", "role": "user", "content": "while stalled"}]},
        timeout=20,
    )
    return answer.status_code, {"headers": answer.headers, "body": answer.json()}, time.monotonic() - started


def _timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    status = httpx.get(url, timeout=20).status_code
    return status, time.monotonic() - started


@pytest.mark.fault
@pytest.mark.slow
def test_a_stalled_database_fails_requests_in_seconds_and_health_and_metrics_still_answer(server, db_url):
    served = Served("--db-timeout", "2")
    try:
        conversation = served.client().conversations.create().id
        with stalled(db_url), ThreadPoolExecutor(max_workers=60) as pool:
            stuck = [pool.submit(_add_item, served, conversation) for _ in range(50)]
            time.sleep(0.5)  # more requests held than the server has threads for them
            metrics_status, metrics_took = _timed_get(f"{served.url}/metrics")
            health_status, health_took = _timed_get(f"{served.url}/healthz")
            answers = [future.result() for future in stuck]
        assert metrics_status == 200 and metrics_took < 1.5
        assert health_took < 6
        assert health_status == (503 if db_url.startswith("postgresql") else 200)
        assert {status for status, _, _ in answers} == {503}
        assert all(answer["body"]["error"]["code"] == "storage_unavailable" for _, answer, _ in answers)
        assert max(took for _, _, took in answers) < 15
        assert httpx.get(f"{served.url}/healthz", timeout=10).status_code == 200
        assert served.client().conversations.items.list(conversation).data == []
    finally:
        served.stop()


@pytest.mark.fault
@pytest.mark.slow
def test_requests_past_the_pending_limit_are_refused_at_once_with_retry_after(server, db_url):
    served = Served("--db-timeout", "3", "--max-pending", "4")
    try:
        conversation = served.client().conversations.create().id
        with stalled(db_url), ThreadPoolExecutor(max_workers=12) as pool:
            answers = [future.result() for future in [pool.submit(_add_item, served, conversation) for _ in range(12)]]
        refused = [(answer, took) for status, answer, took in answers if answer["body"]["error"]["code"] == "server_busy"]
        assert len(refused) == 8
        for answer, took in refused:
            assert took < 1.5
            assert answer["headers"]["retry-after"] == "1"
            assert answer["body"]["error"]["type"] == "server_error"
        assert {status for status, _, _ in answers} == {503}
        assert served.client().conversations.items.list(conversation).data == []
        assert httpx.get(f"{served.url}/metrics", timeout=5).status_code == 200
    finally:
        served.stop()


@sqlite_only
@pytest.mark.fault
@pytest.mark.slow
def test_sqlite_writers_queue_behind_each_other_while_hundreds_of_reads_run(db_url, server):
    """One worker, 500 list requests and 60 turns at once: every turn is stored. SQLite's busy
    handler let a writer lose the lock to newcomers until its time-out ran out ("database is
    locked"); the writers of a process now queue in order. A short --db-timeout makes that race
    show on any machine. The backlog cap is raised above the 300 requests in flight: this test is
    about the writers' queue, not about refusing a flood."""
    server.echo = True
    served = Served("--workers", "1", "--db-timeout", "1", "--max-pending", "1000")
    try:
        client = served.client()
        conversations = [client.conversations.create().id for _ in range(10)]

        def turn(number: int) -> tuple[int, str]:
            answer = httpx.post(
                f"{served.base_url}/responses",
                json={"model": "openai/gpt-4o-mini", "conversation": conversations[number % 10], "input": f"turn {number}"},
                timeout=120,
            )
            return answer.status_code, answer.text[:200]

        def listing(_: int) -> int:
            return httpx.get(f"{served.url}/memchat/v1/threads", timeout=120).status_code

        with ThreadPoolExecutor(max_workers=300) as pool:
            lists = [pool.submit(listing, number) for number in range(500)]
            turns = [pool.submit(turn, number) for number in range(60)]
            failed = [answer for answer in (future.result() for future in turns) if answer[0] != 200]
            list_statuses = {future.result() for future in lists}
        assert failed == []
        assert list_statuses == {200}
        stored = [item for conversation in conversations for item in client.conversations.items.list(conversation, limit=100).data]
        assert sorted(item.role for item in stored) == ["assistant"] * 60 + ["user"] * 60
    finally:
        served.stop()
