"""A fork read while its origin is deleted: every read sees the fork whole, as it was before the
delete or after it (the delete copies into the fork what it read from the origin), never half of
each (revision 0012's copy on write)."""

import threading
import time

import httpx
import pytest
from serving import Served

SAID = [f"message {i}" for i in range(30)]
ROUNDS = 6
READERS_PER_KIND = 2


def _origin_and_fork(memory) -> tuple[str, str]:
    origin = memory.new_thread(model="openai/gpt-4o")
    memory.add_messages(origin.id, [("user" if i % 2 == 0 else "assistant", text) for i, text in enumerate(SAID)])
    return origin.id, memory.fork(origin.id).id


def _race(memory, readers) -> list[str]:
    """Each round: a fresh origin and fork, `readers` (read(fork) -> the contents it saw) reading
    it over and over while the origin is deleted; what any read got wrong."""
    wrong: list[str] = []
    reads = 0
    for _ in range(ROUNDS):
        origin, fork = _origin_and_fork(memory)
        stop = threading.Event()

        def keep_reading(read):
            nonlocal reads
            while not stop.is_set():
                try:
                    seen = read(fork)
                except Exception as exc:  # any failure of a read is a wrong answer here
                    seen = f"{type(exc).__name__}: {exc}"
                reads += 1
                if seen != SAID:
                    wrong.append(f"{read.__name__}: {str(seen)[:300]}")

        threads = [threading.Thread(target=keep_reading, args=(read,)) for read in readers for _ in range(READERS_PER_KIND)]
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        memory.delete(origin)
        time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
        assert [m.content for m in memory.messages(fork)] == SAID
    assert reads > 0
    return wrong


@pytest.mark.fault
def test_a_fork_read_through_memory_while_its_origin_is_deleted_is_read_whole(memory):
    def messages(fork):
        return [m.content for m in memory.messages(fork)]

    def page(fork):
        return [m.content for m in memory.message_page(fork, limit=100)[0]]

    def export(fork):
        return [m["content"] for m in memory.export(fork)["messages"]]

    def context(fork):
        return [e.content for e in memory.context(fork).entries if e.kind == "history"]

    assert _race(memory, [messages, page, export, context]) == []


@pytest.mark.fault
@pytest.mark.slow
def test_a_fork_read_over_http_while_its_origin_is_deleted_is_read_whole(memory):
    served = Served()
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=served.url, timeout=30)
        return local.client

    def ok(response: httpx.Response):
        assert response.status_code == 200, response.text
        return response.json()

    def messages(fork):
        return [m["content"] for m in ok(client().get(f"/memchat/v1/threads/{fork}/messages"))]

    def export(fork):
        return [m["content"] for m in ok(client().get(f"/memchat/v1/threads/{fork}/export"))["messages"]]

    def items(fork):
        listed = ok(client().get(f"/v1/conversations/{fork}/items", params={"limit": 100, "order": "asc"}))
        return [item["content"][0]["text"] for item in listed["data"]]

    def context(fork):
        entries = ok(client().post(f"/memchat/v1/threads/{fork}/context", json={}))["entries"]
        return [e["content"] for e in entries if e["kind"] == "history"]

    try:
        assert _race(memory, [messages, export, items, context]) == []
    finally:
        served.stop()
