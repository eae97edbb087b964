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
