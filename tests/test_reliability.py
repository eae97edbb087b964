"""What an adversarial probe broke (issue 8), each case reproduced with real processes, the local
provider server and both backends where a database is involved."""

import json
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from fake_openai import Raw
from helpers import sqlite_only

from memchat import InvalidInput, Memory, ProviderError, ReplyCutOff, Unanswered
from memchat import lease as leases
from memchat.storage import database


def wait_for(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the awaited event did not happen")
        time.sleep(0.02)


def _stop_between_writes(process, memory, attempts: int = 50) -> None:
    """SIGSTOP `process` at a moment it is inside no transaction (its lease heartbeat writes a
    few times a second): a process frozen inside a write holds its locks (SQLite's database lock,
    PostgreSQL's row lock on the lease) until it runs again, which is the database's locking, not
    the stall these tests are about."""
    url = memory.store.url
    for _ in range(attempts):
        os.kill(process.pid, signal.SIGSTOP)
        if _no_transaction_open(url):
            return
        os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the process was inside a transaction every time it was stopped")


def _no_transaction_open(url: str) -> bool:
    if url.startswith("sqlite"):
        import sqlite3

        connection = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            connection.close()
    import psycopg

    # Each test has a database of its own: any other session in it with an open transaction is
    # the stopped process's.
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        return not connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
        ).fetchone()[0]


def stored(memory, thread_id):
    return [(m.role, m.content, m.status) for m in memory.messages(thread_id)]


def stored_message_rows(memory) -> int:
    """Every message row, in threads visible or not."""
    from sqlalchemy import text

    with memory.store.engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM messages")).scalar()


def one_line(stderr: str) -> bool:
    return stderr.startswith("memchat: ") and stderr.count("\n") == 1 and "Traceback" not in stderr


# A turn never interleaves with another.


@pytest.mark.fault
def test_a_turn_longer_than_its_lease_keeps_it_by_heartbeat(memchat, server, memory, monkeypatch):
    monkeypatch.setenv("MEMCHAT_LEASE_SECONDS", "1")
    thread = memory.new_thread()
    server.echo = True
    long_reply = " ".join(f"slow{i}" for i in range(16))
    server.on(lambda body: body["messages"][-1]["content"] == "first", long_reply)
    server.piece_delay = 0.25
    first = memchat.start("say", thread.id, "first", "--stream")
    wait_for(lambda: server.pieces_sent >= 1)
    second = memchat("say", thread.id, "second", "--no-stream")
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, (err, second.stderr)
    assert stored(memory, thread.id) == [
        ("user", "first", "complete"),
        ("assistant", long_reply, "complete"),
        ("user", "second", "complete"),
        ("assistant", "re: second", "complete"),
    ]
    assert server.last_messages == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": long_reply},
        {"role": "user", "content": "second"},
    ]


@pytest.mark.fault
def test_a_turn_that_lost_its_lease_while_stalled_stores_nothing(memchat, server, memory, monkeypatch):
    monkeypatch.setenv("MEMCHAT_LEASE_SECONDS", "1")
    thread = memory.new_thread()
    server.echo = True
    server.on(lambda body: body["messages"][-1]["content"] == "first", " ".join(f"w{i}" for i in range(10)))
    server.piece_delay = 0.1
    stalled = memchat.start("say", thread.id, "first", "--stream")
    wait_for(lambda: server.pieces_sent >= 1)
    _stop_between_writes(stalled, memory)
    try:
        second = memchat("say", thread.id, "second", "--no-stream")
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    _, err = stalled.communicate(timeout=60)
    assert second.returncode == 0, second.stderr
    assert stalled.returncode == 7 and one_line(err) and "lost its lease" in err
    assert err.count("retry") == 1, "how to send it again is said once"
    assert stored(memory, thread.id) == [
        ("user", "first", "failed"),
        ("user", "second", "complete"),
        ("assistant", "re: second", "complete"),
    ]
    assert server.last_messages == [{"role": "user", "content": "second"}]


@pytest.mark.fault
@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is not installed")
def test_turns_in_separate_pid_namespaces_on_one_host_do_not_interleave(memchat, server, memory):
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("this machine does not allow new PID namespaces here")
    thread = memory.new_thread()
    server.echo = True
    server.reply_delay = 2.0
    # In the first namespace memchat runs as PID 3, in the second as PID 2: PID 3 is not found
    # in the second one although the first turn is alive.
    first = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
         f"true & wait; {memchat.script} say {thread.id} first --no-stream; exit $?"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    wait_for(lambda: len(server.arrivals) == 1)
    second = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
         f"{memchat.script} say {thread.id} second --no-stream; exit $?"],
        capture_output=True, text=True, timeout=120,
    )
    first.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert server.max_in_flight == 1
    assert server.last_messages == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "re: first"},
        {"role": "user", "content": "second"},
    ]


def asleep_most_of(pid: int, seconds: float = 1.0) -> bool:
    """Whether process `pid` slept through most of the next `seconds`, sampled every 20 ms: a
    process that imports or computes is running or waiting for a CPU (R) or a disk (D), even on
    a loaded machine; one that waits for a lease sleeps between its tries (S)."""
    states = []
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        try:
            states.append(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
        except FileNotFoundError:
            return False
        time.sleep(0.02)
    return states.count("S") > 0.6 * len(states)


@pytest.mark.fault
def test_a_waiting_turn_is_ready_before_it_takes_the_lease(memchat, server, memory):
    """The waiting process loads litellm (seconds) while the other turn runs, not after it. The
    first turn's reply is held until the second process sleeps between tries for the lease (a
    process still loading does not sleep), or for a minute should it never do so."""
    thread = memory.new_thread()
    server.echo = True
    held = server.gate = threading.Barrier(2, timeout=120)
    first = {}  # a preloaded command: the one that loads litellm is the second
    holder = threading.Thread(target=lambda: first.update(done=memchat("say", thread.id, "first", "--no-stream")))
    holder.start()
    wait_for(lambda: len(server.arrivals) == 1)
    server.gate = None  # the first request holds the barrier; the second's is not held
    second = memchat.start("say", thread.id, "second", "--no-stream")  # a new interpreter: it loads litellm
    release_by = time.monotonic() + 60
    while second.poll() is None and time.monotonic() < release_by and not asleep_most_of(second.pid):
        pass
    stored = []

    def watch() -> None:
        # The first turn's reply and the lease's release are one commit: from then on the
        # second may go (on a loaded machine, the first process takes a while to get there).
        while len(memory.messages(thread.id)) < 2:
            time.sleep(0.01)
        stored.append(time.monotonic())

    watcher = threading.Thread(target=watch)
    watcher.start()
    held.wait()
    holder.join(60)
    _, second_err = second.communicate(timeout=60)
    watcher.join(60)
    assert first["done"].returncode == 0 and second.returncode == 0, second_err
    assert server.arrivals[1] - stored[0] < 2.0, "the second call followed the first at once"


@pytest.mark.fault
def test_a_thread_busy_for_longer_than_a_turn_waits_exits_7(memchat, server, memory, monkeypatch):
    monkeypatch.setenv("MEMCHAT_LEASE_SECONDS", "1")
    thread = memory.new_thread()
    elsewhere = f"another-host/boot/ns:{os.getpid()}:feedface"
    assert memory.store.acquire_lease(thread.id, elsewhere, 3600, lambda _: False)
    started = time.monotonic()
    busy = memchat("say", thread.id, "hello?", "--timeout", "1", "--no-stream")
    assert busy.returncode == 7 and one_line(busy.stderr) and "busy" in busy.stderr
    assert time.monotonic() - started < 30
    assert server.requests == [] and memory.messages(thread.id) == []


@pytest.mark.fault
def test_threads_sharing_one_memory_see_every_completed_turn(memory, server):
    thread = memory.new_thread()
    server.echo = True
    stop = threading.Event()
    errors = []

    def read():
        while not stop.is_set():
            memory.context(thread.id, "peek")

    def write(worker):
        try:
            for turn in range(4):
                memory.say(thread.id, f"w{worker}t{turn}")
        except Exception as exc:  # reported below
            errors.append(exc)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    reader.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    stop.set()
    reader.join(30)
    assert errors == []
    assert sorted(len(request["messages"]) for request in server.requests) == list(range(1, 24, 2))
    messages = memory.messages(thread.id)
    for question, answer in zip(messages[::2], messages[1::2]):
        assert answer.content == "re: " + question.content


# A reply is never lost as an empty success.

MISBEHAVIOURS = {
    "closed after the headers": Raw(None),
    "closed after event-stream headers": Raw(None, content_type="text/event-stream"),
    "an HTML page": Raw(b"<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
    "truncated JSON": Raw(b'{"id": "x", "choices": [{"index": 0, "mess'),
    "a truncated event": Raw(b'data: {"id": "x", "choices": [{"index": 0, "del', content_type="text/event-stream"),
    "null content": Raw(
        b'{"id":"x","object":"chat.completion","created":1,"model":"gpt-4o","choices":'
        b'[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":"stop"}]}'
    ),
    "null content streamed": Raw(
        b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":'
        b'[{"index":0,"delta":{"role":"assistant","content":null},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n',
        content_type="text/event-stream",
    ),
    "no choices": Raw(b'{"id":"x","object":"chat.completion","created":1,"model":"gpt-4o","choices":[]}'),
}


@pytest.mark.fault
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("answer", MISBEHAVIOURS.values(), ids=MISBEHAVIOURS.keys())
def test_an_empty_or_unreadable_reply_is_a_provider_failure(memory, server, answer, stream):
    thread = memory.new_thread()
    server.answer_raw(*[answer] * 10)
    with pytest.raises(Unanswered) as caught:
        memory.say(thread.id, "hello", stream=stream, timeout=2)
    assert "\n" not in str(caught.value) and type(caught.value.cause) is ProviderError
    assert stored(memory, thread.id) == [("user", "hello", "failed")]
    server.reset()
    server.reply("a real answer")
    assert memory.retry(thread.id, stream=stream).text == "a real answer"
    assert server.last_messages == [{"role": "user", "content": "hello"}]
    assert stored(memory, thread.id) == [("user", "hello", "complete"), ("assistant", "a real answer", "complete")]


@pytest.mark.fault
def test_an_empty_reply_exits_5_and_retry_works(memchat, server, memory):
    thread = memory.new_thread()
    server.answer_raw(MISBEHAVIOURS["null content"])
    empty = memchat("say", thread.id, "hello", "--no-stream")
    assert empty.returncode == 5 and one_line(empty.stderr) and "empty reply" in empty.stderr
    assert empty.stderr.endswith(f"empty reply (your message is saved: `memchat retry {thread.id}` sends it again)\n")
    assert empty.stderr.count("retry") == 1, "how to send it again is said once"
    assert empty.stdout == ""
    server.reply("there you are")
    again = memchat("retry", thread.id, "--no-stream")
    assert again.returncode == 0 and again.stdout == "there you are\n"


@pytest.mark.fault
def test_the_timeout_bounds_a_whole_streamed_reply(memory, server):
    thread = memory.new_thread()
    server.reply(" ".join(f"w{i}" for i in range(60)))
    server.piece_delay = 0.1
    with pytest.raises(Unanswered) as caught:
        memory.say(thread.id, "take your time", stream=True, timeout=1.5)
    assert isinstance(caught.value.cause, ReplyCutOff)
    assert time.monotonic() - server.arrivals[0] < 2.5
    (user, partial) = memory.messages(thread.id)
    assert (user.status, partial.status) == ("failed", "partial") and partial.content.startswith("w0 w1")


@pytest.mark.fault
def test_retry_after_is_honoured(memory, server):
    thread = memory.new_thread()
    server.fail(429, "slow down", headers={"Retry-After": "1"})
    server.reply("thanks for waiting")
    assert memory.say(thread.id, "hi", timeout=10).text == "thanks for waiting"
    assert server.arrivals[1] - server.arrivals[0] >= 1.0


@pytest.mark.fault
def test_retries_back_off_from_memchat_retry_backoff_doubling_each_time(memory, server, monkeypatch):
    """The one test that waits for real back-off (the others retry at once, MEMCHAT_RETRY_BACKOFF=0):
    each pause is the base times 2**attempt times a jitter in [0.5, 1.5)."""
    monkeypatch.setenv("MEMCHAT_RETRY_BACKOFF", "0.2")
    thread = memory.new_thread()
    server.fail(503, "overloaded")
    server.fail(503, "overloaded")
    server.reply("after two pauses")
    assert memory.say(thread.id, "hi", timeout=20).text == "after two pauses"
    first_pause, second_pause = (later - earlier for earlier, later in zip(server.arrivals, server.arrivals[1:]))
    assert 0.1 <= first_pause < 3 and 0.2 <= second_pause < 3


@pytest.mark.fault
def test_a_drop_before_the_first_byte_and_a_504_are_retried(memory, server):
    thread = memory.new_thread()
    server.answer_raw(Raw(None))
    server.fail(504, "gateway timeout")
    server.reply("third time lucky")
    assert memory.say(thread.id, "hi", timeout=20).text == "third time lucky"
    assert len(server.requests) == 3


@pytest.mark.fault
def test_context_too_long_is_retried_once_only(memory, server):
    thread = memory.new_thread()
    for turn in range(4):
        memory.say(thread.id, f"turn {turn} " + "words " * 30)
    server.reset()
    for _ in range(3):
        server.fail(400, "This model's maximum context length is 10 tokens", code="context_length_exceeded")
    with pytest.raises(Unanswered, match="too long") as caught:
        memory.say(thread.id, "hi", timeout=10)
    assert isinstance(caught.value.cause, ProviderError)
    assert len(server.requests) == 2
    assert len(server.requests[1]["messages"]) < len(server.requests[0]["messages"])


@pytest.mark.fault
def test_a_reply_far_longer_than_asked_is_kept_whole_but_cut_in_later_contexts(memory, server):
    thread = memory.new_thread(budget=3000)
    huge = " ".join(["lorem ipsum dolor sit amet"] * 8000)
    server.reply(huge, "short")
    notes = []
    memory.say(thread.id, "write a lot", max_tokens=100, on_note=notes.append)
    kept = memory.messages(thread.id)[-1]
    assert kept.content == huge and kept.context_limit == 100
    assert len(notes) == 1 and "stored whole" in notes[0]
    reply = memory.say(thread.id, "and now?", max_tokens=100)
    sent = server.last_messages
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"].startswith("lorem ipsum") and sent[1]["content"].endswith("first 100 tokens]")
    assert reply.context.prompt_tokens <= 3000
    (copy,) = memory.import_(json.dumps(memory.export(thread.id))).threads
    assert memory.messages(copy)[1].context_limit == 100


# Signals.


@pytest.mark.fault
@sqlite_only
@pytest.mark.parametrize(
    "number, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)], ids=["TERM", "HUP", "INT"]
)
def test_a_signal_during_a_streamed_reply_keeps_the_partial_reply(memchat, server, memory, number, code):
    """SIGINT is ignored in the child as it starts (as a shell does for background jobs):
    memchat installs its own handlers."""
    thread = memory.new_thread()
    server.reply(" ".join(f"word{i}" for i in range(200)))
    server.piece_delay = 0.05
    process = memchat.start(
        "say", thread.id, "long answer please", "--stream",
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert process.stdout.read(5) == "word0"
    process.send_signal(number)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code and one_line(err)
    assert f": interrupted (the partial reply is kept: `memchat accept {thread.id}` keeps it" in err
    assert err.count("kept") == 1, "that the partial reply is kept is said once"
    (user, partial) = memory.messages(thread.id)
    assert (user.status, partial.status) == ("failed", "partial") and partial.content.startswith("word0")
    assert not memory.turn_in_progress(thread.id), "the lease was released"
    server.reply("fine")
    assert memchat("say", thread.id, "next", "--no-stream", timeout=30).returncode == 0


@pytest.mark.fault
def test_a_turn_killed_mid_call_shows_as_interrupted_and_retry_resends_it(memchat, server, memory):
    thread = memory.new_thread()
    server.reply_delay = 30
    victim = memchat.start("say", thread.id, "lost in flight?", "--no-stream")
    wait_for(lambda: len(server.arrivals) == 1)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    server.reset()  # the killed turn's request, still held, will answer no one and take no reply
    assert "user (interrupted)" in memchat("show", thread.id).stdout
    server.reply("answered at last")
    again = memchat("retry", thread.id, "--no-stream", timeout=30)
    assert again.returncode == 0 and again.stdout == "answered at last\n"
    assert server.last_messages == [{"role": "user", "content": "lost in flight?"}]


# Files outside the database.


@pytest.mark.fault
@sqlite_only
def test_export_writes_through_fifos_and_devices_and_follows_symlinks(memchat, server, memory, tmp_path):
    thread = memory.new_thread(title="kept")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    assert memchat("export", thread.id, "-o", fifo).returncode == 0
    reader.join(30)
    assert json.loads(received[0])["title"] == "kept" and stat.S_ISFIFO(fifo.stat().st_mode)

    try:
        device = tmp_path / "null"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        device = None
    if device is not None:
        assert memchat("export", thread.id, "-o", device).returncode == 0
        assert stat.S_ISCHR(device.stat().st_mode)

    target = tmp_path / "target.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert memchat("export", thread.id, "-o", link).returncode == 0
    assert link.is_symlink() and json.loads(target.read_text())["title"] == "kept"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640

    fresh = tmp_path / "fresh.json"
    assert memchat("export", thread.id, "-o", fresh).returncode == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


@pytest.mark.fault
@sqlite_only
@pytest.mark.parametrize("where", ["directory", "empty"])
def test_export_to_a_directory_or_no_name_is_bad_input(memchat, server, memory, tmp_path, where):
    thread = memory.new_thread()
    refused = memchat("export", thread.id, "-o", tmp_path if where == "directory" else "")
    assert refused.returncode == 2 and one_line(refused.stderr)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("memchat.db")] == []


@pytest.mark.fault
@sqlite_only
def test_a_full_disk_is_one_line(memchat, server, memory):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    thread = memory.new_thread(title="x" * 100)
    to_file = memchat("export", thread.id, "-o", "/dev/full")
    assert to_file.returncode == 6 and one_line(to_file.stderr) and "No space left" in to_file.stderr
    with open("/dev/full", "w") as full:
        to_stdout = subprocess.run(
            [memchat.script, "export", thread.id], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60
        )
    assert to_stdout.returncode == 6 and one_line(to_stdout.stderr) and "No space left" in to_stdout.stderr
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


# Private data.


@pytest.mark.fault
def test_the_default_data_directory_and_database_are_private(memchat, tmp_path, monkeypatch):
    monkeypatch.delenv("MEMCHAT_DB")
    made = memchat(
        "new", env={"XDG_DATA_HOME": str(tmp_path / "data")}, preexec_fn=lambda: os.umask(0o022)
    )
    assert made.returncode == 0, made.stderr
    directory = tmp_path / "data" / "memchat"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "memchat.db").stat().st_mode) == 0o600


@pytest.mark.fault
def test_wal_and_shared_memory_files_are_private(tmp_path, server):
    old = os.umask(0o022)
    try:
        with Memory(str(tmp_path / "private.db")) as memory:
            memory.new_thread(title="secret")
            files = sorted(tmp_path.glob("private.db*"))
            assert {f.name for f in files} >= {"private.db", "private.db-wal", "private.db-shm"}
            assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    finally:
        os.umask(old)


@pytest.mark.fault
def test_passwords_and_keys_never_reach_stderr(memchat, server, memory):
    thread = memory.new_thread()
    masked = memchat(
        "say", thread.id, "hi", "--api-base", "http://alice:hunter2secret@127.0.0.1:9/v1", "--timeout", "1"
    )
    assert masked.returncode == 5 and one_line(masked.stderr)
    assert "hunter2secret" not in masked.stderr and "alice:***@" in masked.stderr
    key = "sk-test-0123456789abcdefSECRET"
    server.fail(401, f"Incorrect API key provided: {key}. Find your key at the dashboard.")
    echoed = memchat("say", thread.id, "hi", env={"OPENAI_API_KEY": key})
    assert echoed.returncode == 5 and one_line(echoed.stderr)
    assert key not in echoed.stderr and "***" in echoed.stderr


@pytest.mark.fault
def test_control_characters_never_reach_the_terminal_but_stay_in_json(memchat, server, memory):
    evil_title = "trip\x1b]0;owned\x07\u202e"
    evil = "\x1b[2J\x1b[31m wiped\r"
    (thread,) = memory.import_(json.dumps({"title": evil_title, "messages": [{"role": "user", "content": evil}]})).threads
    for args in (["list"], ["show", thread], ["search", "wiped"], ["context", thread]):
        shown = memchat(*args)
        assert shown.returncode == 0, shown.stderr
        assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "\r" not in shown.stdout
        assert "\\x1b" in shown.stdout
    exported = json.loads(memchat("show", thread, "--json").stdout)
    assert exported["title"] == evil_title and exported["messages"][0]["content"] == evil


# Writers queue, not fail.


def _blocking_counts(release: threading.Event, sizes):
    def counts(size):
        def count():
            assert release.wait(60)
            return [1] * size

        return count

    return [("o200k_base", counts(size)) for size in sizes]


@pytest.mark.fault
def test_other_writers_keep_going_while_an_import_runs(memory, server):
    from memchat.transfer.native import parse

    records = parse(json.dumps({"title": "big", "messages": [{"role": "user", "content": f"m{i}"} for i in range(5000)]}))
    assert memory.threads() == []
    release = threading.Event()
    outcome = []
    importer = threading.Thread(
        target=lambda: outcome.append(
            memory.store.import_threads(
                records, _blocking_counts(release, [5000]), importer=leases.identity(), is_gone=leases.holder_is_gone
            )
        )
    )
    importer.start()
    try:
        wait_for(lambda: stored_message_rows(memory) >= 5000, 60)
        started = time.monotonic()
        other = memory.new_thread(title="meanwhile")
        memory.say(other.id, "still answering?")
        assert time.monotonic() - started < 5
        assert [t.title for t in memory.threads()] == ["meanwhile"], "the import is not visible until it ends"
        assert memory.search("m42") == []
    finally:
        release.set()
        importer.join(60)
    (imported,) = outcome[0].threads
    assert sorted(t.title for t in memory.threads()) == ["big", "meanwhile"]
    assert memory.thread(imported).message_count == 5000


@pytest.mark.fault
@pytest.mark.slow
def test_a_failed_import_leaves_nothing_and_an_abandoned_one_is_cleaned_up(memory, server, tmp_path):
    from memchat.transfer.native import parse

    records = parse(json.dumps({"title": "doomed", "messages": [{"role": "user", "content": "x"}] * 3000}))

    def broken():
        raise RuntimeError("counting failed")

    with pytest.raises(RuntimeError):
        memory.store.import_threads(
            records, [("o200k_base", broken)], importer=leases.identity(), is_gone=leases.holder_is_gone
        )
    assert memory.threads() == [] and stored_message_rows(memory) == 0
    dead = subprocess.Popen(["true"])
    dead.wait()
    with pytest.raises(RuntimeError):
        memory.store.import_threads(
            records, [("o200k_base", broken)], importer=f"{leases._machine()}:{dead.pid}:x", is_gone=lambda _: False
        )
    memory.import_(json.dumps({"title": "next", "messages": []}))
    assert [t.title for t in memory.threads()] == ["next"]


# Bad input.

BAD_IMPORTS = {
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "a 5,000-digit integer": '{"messages":[{"role":"user","content":"a","latency_ms":' + "9" * 5000 + "}]}",
    "an integer over 2^63": '{"messages":[{"role":"user","content":"a","latency_ms":' + str(2**63) + "}]}",
    "a lone surrogate": '{"messages":[{"role":"user","content":"a\\ud800"}]}',
    "a NUL byte": '{"messages":[{"role":"user","content":"a\\u0000b"}]}',
    "a NUL in a title": '{"title":"x\\u0000","messages":[]}',
    "a tool message": '{"messages":[{"role":"tool","content":"a"}]}',
    "Infinity": '{"messages":[{"role":"assistant","content":"a","cost":Infinity}]}',
    "NaN": '{"messages":[{"role":"assistant","content":"a","cost":NaN}]}',
    "a boolean budget": '{"budget":true,"messages":[]}',
    "a date in 9999": '{"created_at":"9999-01-01T00:00:00Z","messages":[]}',
}


@pytest.mark.bad_input
@pytest.mark.parametrize("raw", BAD_IMPORTS.values(), ids=BAD_IMPORTS.keys())
def test_bad_imports_are_one_line_and_store_nothing(memchat, memory, raw):
    refused = memchat("import", "-", input=raw)
    assert refused.returncode == 2 and one_line(refused.stderr), refused.stderr
    assert memory.threads() == []


@pytest.mark.bad_input
def test_a_nul_byte_is_named_in_the_field_on_both_backends(memory):
    with pytest.raises(InvalidInput, match=r"messages\[0\]\.content: contains a NUL"):
        memory.import_('{"messages":[{"role":"user","content":"a\\u0000b"}]}')
    with pytest.raises(InvalidInput, match="NUL"):
        memory.say(memory.new_thread().id, "a\x00b")
    with pytest.raises(InvalidInput, match="title"):
        memory.new_thread(title="a\x00b")


@pytest.mark.bad_input
@pytest.mark.parametrize("value", ["inf", "1e308", "nan", "0"])
def test_an_unbounded_timeout_is_bad_input(memchat, memory, server, value):
    thread = memory.new_thread()
    refused = memchat("say", thread.id, "hi", "--timeout", value)
    assert refused.returncode == 2 and one_line(refused.stderr)
    assert server.requests == [] and memory.messages(thread.id) == []


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "args",
    [[b"say", b"THREAD", b"caf\xff"], [b"show", b"\xff"], [b"search", b"caf\xff"], [b"rename", b"THREAD", b"\xff"],
     [b"new", b"--title", b"\xff"], [b"set", b"THREAD", b"--system", b"\xff"]],
    ids=["say", "show", "search", "rename", "new", "set"],
)
def test_an_argument_that_is_not_utf8_is_bad_input(memchat, memory, server, args):
    thread = memory.new_thread(title="unchanged")
    argv = [memchat.script.encode(), *(thread.id.encode() if arg == b"THREAD" else arg for arg in args)]
    refused = subprocess.run(argv, capture_output=True, timeout=60)
    assert refused.returncode == 2 and refused.stderr.decode().count("\n") == 1, refused.stderr
    assert server.requests == [] and memory.messages(thread.id) == []
    assert [(t.title, t.system) for t in memory.threads()] == [("unchanged", None)]


@pytest.mark.bad_input
def test_a_database_from_a_newer_memchat_names_the_version_to_install(memchat, memory, db_url):
    memory.new_thread()
    engine = memory.store.engine
    from sqlalchemy import text

    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfuture'"))
        connection.execute(text("UPDATE schema_info SET value = '9.9.0' WHERE key = 'memchat_version'"))
    current = memchat("db", "current")
    assert current.returncode == 0 and "newer memchat" in current.stdout and "install memchat 9.9.0" in current.stdout
    assert "memchat db upgrade" not in current.stdout
    refused = memchat("db", "upgrade")
    assert refused.returncode == 6 and one_line(refused.stderr) and "install memchat 9.9.0" in refused.stderr
    assert database.current_revision(engine) == "f00dfuture"


@pytest.mark.bad_input
@sqlite_only
def test_memchat_debug_turns_the_one_line_into_a_traceback(memchat, tmp_path):
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database, just a file with text" * 100)
    plain = memchat("--db", broken, "list")
    assert plain.returncode == 6 and one_line(plain.stderr) and "not a database" in plain.stderr
    debug = memchat("--db", broken, "list", env={"MEMCHAT_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr
