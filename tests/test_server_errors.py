"""`memchat serve`'s error paths as a probe meets them: numbers too large for the database, bodies
over the limit however they are sent, an internal error, and clients too slow to send a request."""

from __future__ import annotations

import socket
import sqlite3
import time

import httpx
import pytest
from helpers import sqlite_only
from serving import Served

from memchat import Memory

HUGE = 2**70


def _openai_error(answer: httpx.Response, status: int) -> dict:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], answer.text
    return error


@pytest.mark.bad_input
def test_a_budget_too_large_for_the_database_is_400_and_stores_nothing(memchat, served):
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
    refused = memchat("new", "--budget", str(HUGE))
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


def _connect(served: Served, sent: bytes = b"") -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    connection.sendall(sent)
    return connection


def _answer(connection: socket.socket) -> bytes:
    """What the server sent before it closed the connection (b"": it closed without a word)."""
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    connection.close()
    return received


def _one_response(connection: socket.socket) -> bytes:
    """One whole response (head and Content-Length body), the connection left open."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += connection.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:"))
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


@sqlite_only
@pytest.mark.fault
@pytest.mark.slow
def test_clients_too_slow_to_send_a_request_are_cut_off_and_others_are_served(db_url, server):
    served = Served("--read-timeout", "1")
    try:
        silent = _connect(served)
        unfinished_head = _connect(served, b"GET /healthz HTTP/1.1\r\nHost: memchat\r\n")
        trickling_head = _connect(served, b"GET /healthz HTTP/1.1\r\n")
        stalled_body = _connect(
            served,
            b"POST /v1/conversations HTTP/1.1\r\nHost: memchat\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{\"metadata\": ",
        )
        kept_alive = _connect(served, b"GET /healthz HTTP/1.1\r\nHost: memchat\r\n\r\n")
        assert _one_response(kept_alive).startswith(b"HTTP/1.1 200")
        kept_alive.sendall(b"GET /heal")  # the next request on the connection, begun and never finished
        for _ in range(10):
            try:
                trickling_head.sendall(b"X-Slow: 1\r\n")  # a byte now and then does not keep a head open
            except OSError:
                break
            assert httpx.get(f"{served.url}/healthz", timeout=5).status_code == 200
            time.sleep(0.25)
        started = time.monotonic()
        for connection in (silent, unfinished_head, trickling_head, kept_alive):
            assert _answer(connection) == b""
        answer = _answer(stalled_body)
        assert answer.startswith(b"HTTP/1.1 408") and b"--read-timeout" in answer and b"connection: close" in answer.lower()
        assert time.monotonic() - started < 3
        assert Memory().threads() == []
    finally:
        served.stop()


@sqlite_only
@pytest.mark.isolation
def test_with_keys_only_the_service_endpoints_answer_without_one_and_they_hold_no_conversation(memchat, server):
    key = memchat("key", "create", "tenant-with-a-name").stdout.strip()
    served = Served()
    try:
        made = httpx.post(f"{served.url}/memchat/v1/threads", json={"title": "private title"}, headers={"Authorization": f"Bearer {key}"})
        for path in ("/healthz", "/metrics", "/docs", "/openapi.json"):
            answer = httpx.get(f"{served.url}{path}")
            assert answer.status_code == 200, path
            assert made.json()["id"] not in answer.text and "private title" not in answer.text and "tenant-with-a-name" not in answer.text
        for path in ("/v1/conversations/x", "/memchat/v1/threads", "/memchat/v1/export", "/memchat/v1/stats"):
            assert httpx.get(f"{served.url}{path}").status_code == 401, path
    finally:
        served.stop()
