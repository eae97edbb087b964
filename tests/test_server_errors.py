"""`memchat serve`'s error paths as a probe meets them: numbers too large for the database, bodies
over the limit however they are sent, an internal error, and clients too slow to send a request."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers import sqlite_only
from serving import Served

from memchat import Memory

HUGE = 2**70


@pytest.fixture
def served(server):
    running = Served()
    yield running
    running.stop()


def _cli(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "memchat"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120)


def _openai_error(answer: httpx.Response, status: int) -> dict:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], answer.text
    return error


@pytest.mark.bad_input
def test_a_budget_too_large_for_the_database_is_400_and_stores_nothing(served):
    thread = Memory().new_thread(title="kept", budget=1000)
    with httpx.Client(base_url=served.url, timeout=60) as http:
        for method, path, payload in [
            ("POST", "/v1/conversations", {"memchat": {"budget": HUGE}}),
            ("POST", f"/v1/conversations/{thread.id}", {"memchat": {"budget": HUGE}}),
            ("POST", "/memchat/v1/threads", {"budget": HUGE}),
            ("PATCH", f"/memchat/v1/threads/{thread.id}", {"budget": HUGE}),
        ]:
            error = _openai_error(http.request(method, path, json=payload), 400)
            assert "budget" in error["message"] or error["param"].endswith("budget"), error
    refused = _cli("new", "--budget", str(HUGE))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert [(t.id, t.budget) for t in Memory().threads()] == [(thread.id, 1000)]


@pytest.mark.bad_input
def test_a_chunked_body_over_the_limit_is_413_and_stores_nothing(served):
    thread = Memory().new_thread(title="kept", model="openai/gpt-4o-mini")

    def chunks():  # no Content-Length: the server learns the size only as the body arrives
        yield b'{"model": "openai/gpt-4o-mini", "input": "'
        for _ in range(80):
            yield b"x" * 64 * 1024
        yield b'"}'

    with httpx.Client(base_url=served.url, timeout=60) as http:
        for path in ("/v1/responses", f"/memchat/v1/threads/{thread.id}/say", "/memchat/v1/import"):
            answer = http.post(path, content=chunks(), headers={"Content-Type": "application/json", "X-Memchat-Thread": thread.id})
            assert "--max-body" in _openai_error(answer, 413)["message"], path
    assert Memory().messages(thread.id) == [] and len(Memory().threads()) == 1


@sqlite_only
@pytest.mark.fault
def test_an_internal_error_is_an_ordinary_500_and_the_connection_stays_usable(served, db_url):
    thread = Memory().new_thread(title="damaged", budget=1000)
    with sqlite3.connect(db_url) as damage:  # a value no memchat writes: reading the thread fails
        damage.execute("UPDATE threads SET budget = 'lots'")
    with httpx.Client(base_url=served.url, timeout=60) as http:
        for _ in range(3):
            error = _openai_error(http.get(f"/v1/conversations/{thread.id}"), 500)
            assert error["code"] == "internal_error"
            assert http.get("/healthz").status_code == 200
        assert http.get(f"/memchat/v1/threads/{thread.id}").status_code == 500
        assert http.get("/healthz").status_code == 200
    log = served.output()
    assert log.count("internal error on GET") == 4 and "Traceback" not in log
