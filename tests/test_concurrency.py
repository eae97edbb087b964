"""Real processes saying at once: turns on one thread run one at a time, other threads do not wait."""

import json
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import quiet

from memchat import lease

WRITERS = int(os.environ.get("MEMCHAT_TEST_WRITERS", "3"))
TURNS = int(os.environ.get("MEMCHAT_TEST_TURNS", "2"))
"""bench/adversary.py raises these to measure more writers for longer."""


def _lanes(memchat, jobs):
    """Run the jobs at once, each (a list of `memchat` argument lists) in its own lane, one
    command after another, stopping at the first that fails: each lane's exit code (its last
    command's), stdout and stderr."""

    def lane(commands):
        outputs = []
        for args in commands:
            done = memchat(*args, "--no-stream", timeout=300)
            outputs.append(done)
            if done.returncode:
                break
        return done.returncode, "".join(o.stdout for o in outputs), "".join(o.stderr for o in outputs)

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lane, jobs))


@pytest.mark.writers
def test_writers_on_one_thread_are_serialised_and_lose_nothing(memchat, server):
    thread = memchat("new", check=True).stdout.strip()
    server.echo = True
    server.reply_delay = 0.2
    results = _lanes(
        memchat, [[("say", thread, f"w{w}t{t}") for t in range(TURNS)] for w in range(WRITERS)]
    )
    for code, out, err in results:
        assert code == 0, err
        assert quiet(err), err
    exported = memchat("export", thread, check=True)
    messages = json.loads(exported.stdout)["messages"]
    assert len(messages) == 2 * WRITERS * TURNS
    assert all(m["status"] == "complete" for m in messages)
    for question, answer in zip(messages[::2], messages[1::2]):
        assert (question["role"], answer["role"]) == ("user", "assistant")
        assert answer["content"] == "re: " + question["content"]
    assert sorted(m["content"] for m in messages[::2]) == sorted(f"w{w}t{t}" for w in range(WRITERS) for t in range(TURNS))
    # Each turn's context held every turn completed before it started.
    assert sorted(len(request["messages"]) for request in server.requests) == list(range(1, 2 * WRITERS * TURNS, 2))


def test_turns_on_different_threads_run_at_the_same_time(memchat, server):
    threads = [memchat("new", check=True).stdout.strip() for _ in range(2)]
    # Each call is held until the other arrives too (or 60 s pass): however slowly the two
    # processes start, both calls are in flight at once unless one turn waits for the other.
    server.gate = threading.Barrier(2, timeout=60)
    results = _lanes(memchat, [[("say", thread, "hello")] for thread in threads])
    assert all(code == 0 for code, _, _ in results), results
    assert server.max_in_flight == 2


@pytest.mark.fault
def test_a_lease_left_by_a_dead_process_does_not_wedge_the_thread(memchat, server, memory):
    thread = memory.new_thread()
    dead = subprocess.Popen(["true"])
    dead.wait()
    holder = f"{lease._machine()}:{dead.pid}:deadbeef"
    assert memory.store.acquire_lease(thread.id, holder, 3600, lambda _: False)
    said = memchat("say", thread.id, "still usable?", "--no-stream", timeout=120)
    assert said.returncode == 0, said.stderr


@pytest.mark.fault
@pytest.mark.sqlite_only
def test_kill_9_mid_turn_leaves_a_sound_database_and_a_usable_thread(memchat, server, db_url):
    """SQLite's integrity_check is the measure here; PostgreSQL's own recovery is not memchat's."""
    import signal
    import sqlite3
    import time

    thread = memchat("new", check=True).stdout.strip()
    server.reply_delay = 30
    victim = subprocess.Popen([memchat.script, "say", thread, "lost in flight?", "--no-stream"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.in_flight == 0:
        time.sleep(0.05)
    assert server.in_flight == 1
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    server.reply_delay = 0
    with sqlite3.connect(db_url) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("SELECT content, status FROM messages").fetchall() == [("lost in flight?", "pending")]
    server.reply("carried on")
    said = memchat("say", thread, "next", "--no-stream", timeout=120)
    assert said.returncode == 0, said.stderr
    assert said.stdout == "carried on\n"
    assert server.last_messages == [{"role": "user", "content": "next"}]
    # The killed turn's message stays stored, marked pending, and out of every later context.
    exported = json.loads(memchat("export", thread).stdout)
    assert [(m["content"], m["status"]) for m in exported["messages"]] == [
        ("lost in flight?", "pending"),
        ("next", "complete"),
        ("carried on", "complete"),
    ]


KILL_POINTS = {
    # Each point is an event the test observes, not a delay: a slow machine moves the event, and
    # the kill still lands there.
    "lease taken": "SELECT count(*) FROM thread_leases WHERE holder != ''",
    "message stored": "SELECT count(*) FROM messages WHERE status = 'pending'",
    "model call in flight": None,
    "reply streaming": None,
}


@pytest.mark.fault
@pytest.mark.sqlite_only
@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_at_any_point_of_a_turn(memchat, server, db_url, point):
    import signal
    import sqlite3
    import time

    thread = memchat("new", check=True).stdout.strip()
    server.reply_delay = 1.0
    server.piece_delay = 0.2
    server.reply("one two three four five six seven eight")
    stream = "--stream" if point == "reply streaming" else "--no-stream"
    victim = subprocess.Popen([memchat.script, "say", thread, "first try", stream], stdout=subprocess.DEVNULL)
    observed = {
        "model call in flight": lambda: len(server.arrivals) == 1,
        "reply streaming": lambda: server.pieces_sent >= 2,
    }.get(point)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if observed is not None:
            if observed():
                break
        else:
            with sqlite3.connect(db_url, timeout=10) as connection:
                try:
                    if connection.execute(KILL_POINTS[point]).fetchone()[0]:
                        break
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.005)
    else:
        raise AssertionError(f"the turn never reached: {point}")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    with sqlite3.connect(db_url) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = connection.execute("SELECT role, status FROM messages ORDER BY position").fetchall()
    assert rows in ([], [("user", "pending")], [("user", "complete"), ("assistant", "complete")])
    if point in ("model call in flight", "reply streaming"):
        assert rows == [("user", "pending")]
    server.reset()
    said = memchat("say", thread, "again", "--no-stream", timeout=60)
    assert said.returncode == 0, said.stderr
    assert [m["role"] for m in server.last_messages].count("user") == 1 + (rows == [("user", "complete"), ("assistant", "complete")])


def test_writers_on_a_summarized_thread_fold_each_span_once(memchat, server):
    thread = memchat("new", "--policy", "summary", "--budget", "250", check=True).stdout.strip()
    server.echo = True
    server.reply_delay = 0.1
    folds = []

    def summarize(body):
        material = body["messages"][-1]["content"]
        folds.append(material)
        return f"summary {len(folds)}"

    server.on(lambda body: body["messages"][-1]["content"].startswith("Summary so far:"), summarize)
    words = "with enough words to fill the window " * 3
    results = _lanes(
        memchat, [[("say", thread, f"'w{w}t{t} {words}'") for t in range(TURNS)] for w in range(WRITERS)]
    )
    assert all(code == 0 for code, _, _ in results), results
    exported = json.loads(memchat("export", thread, check=True).stdout)
    assert len(exported["messages"]) == 2 * WRITERS * TURNS
    spans = [(s["first_position"], s["last_position"]) for s in exported["summaries"]]
    assert folds and len(spans) == len(folds)
    assert [last for _, last in spans] == sorted({last for _, last in spans}), "each fold covers new messages"
    for previous, material in zip(exported["summaries"], folds[1:]):
        assert material.startswith(f"Summary so far:\n{previous['content']}\n\nNew messages #{previous['last_position'] + 1}–")
