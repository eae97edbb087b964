"""`memchat --server URL`: the CLI as a client of a running `memchat serve` (a real server
process on the test's database, the tests' local provider behind it): the same commands print
the same output and exit with the same codes as on the database itself, the server's errors
come back as memchat's, and the client process loads neither SQLAlchemy nor litellm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import sqlite_only
from serving import Served


def remote(memchat, served: Served, *args: str, key: str | None = None, **env: str) -> subprocess.CompletedProcess:
    """The command through the server: `--server` given after the command, as users type it,
    and no database named anywhere the client could open."""
    extra = {"MEMCHAT_DB": "/nonexistent/never-opened.db", **env}
    if key is not None:
        extra["MEMCHAT_API_KEY"] = key
    return memchat(*args, "--server", served.url, env=extra)


def same(here: subprocess.CompletedProcess, there: subprocess.CompletedProcess) -> tuple:
    return (there.stdout, there.stderr, there.returncode), (here.stdout, here.stderr, here.returncode)


def test_commands_print_what_they_print_on_the_database(memchat, served, server):
    server.reply("Lisbon, in May.", "The 12th.")
    thread = remote(memchat, served, "new", "--title", "trip", "--model", "openai/gpt-4o", "--budget", "2000").stdout.strip()
    assert len(thread) == 12
    first = remote(memchat, served, "say", thread, "where do we go?")
    assert (first.stdout, first.returncode) == ("Lisbon, in May.\n", 0)
    second = remote(memchat, served, "say", thread, "and when exactly?", "--usage")
    assert second.stdout == "The 12th.\n" and "prompt +" in second.stderr
    assert server.last_messages == [
        {"role": "user", "content": "where do we go?"},
        {"role": "assistant", "content": "Lisbon, in May."},
        {"role": "user", "content": "and when exactly?"},
    ]
    for args in (
        ["list"],
        ["list", "--json"],
        ["show", thread, "--no-pager"],
        ["show", thread, "--json"],
        ["show", thread[:6], "--last", "1", "--no-pager"],
        ["context", thread, "what next?"],
        ["context", thread, "--json", "--budget", "40"],
        ["search", "Lisbon"],
        ["search", "Lisbon", "--json"],
        ["search", "nowhere-to-be-found"],
        ["summary", thread],
        ["summary", thread, "--all", "--json"],
        ["export", thread],
        ["export", "--all"],
    ):
        there, here = same(memchat(*args), remote(memchat, served, *args))
        assert there == here, args


def test_branching_and_repair_through_the_server(memchat, served, server):
    server.reply("one", "the second answer, cut short", "two", "two, again")
    thread = remote(memchat, served, "new", "--model", "openai/gpt-4o").stdout.strip()
    remote(memchat, served, "say", thread, "first")
    server.drop_after(1)
    cut = remote(memchat, served, "say", thread, "second", "--stream")
    assert cut.returncode == 5
    assert f"(the partial reply is kept: `memchat accept {thread}` keeps it, `memchat retry {thread}` asks again)" in cut.stderr
    assert cut.stderr.count("kept") == 1, "that the partial reply is kept is said once"
    retried = remote(memchat, served, "retry", thread, "--stream")
    assert (retried.stdout, retried.returncode) == ("two\n", 0)
    fork = remote(memchat, served, "fork", thread, "--at", "1")
    assert fork.returncode == 0 and f"forked thread {thread} at #1 into {fork.stdout.strip()}" in fork.stderr
    edited = remote(memchat, served, "edit", thread, "2", "second, said better")
    assert edited.stdout == "two, again\n" and "asking again in a new thread" in edited.stderr
    assert server.last_messages[-1] == {"role": "user", "content": "second, said better"}
    undone = remote(memchat, served, "undo", thread)
    assert undone.returncode == 0 and "undid the last turn" in undone.stderr
    stored = json.loads(memchat("show", thread, "--json").stdout)["messages"]
    assert [m["status"] for m in stored][-2:] == ["undone", "undone"]
    assert memchat("context", thread, "--json").stdout.count('"second"') == 0


def test_c_and_a_session_left_at_once_do_through_the_server_what_they_do_on_the_database(memchat, served, server):
    older = remote(memchat, served, "new", "--title", "older").stdout.strip()
    newer = remote(memchat, served, "new", "--title", "newer").stdout.strip()
    said = remote(memchat, served, "say", "-c", "to the newest")
    assert said.returncode == 0 and said.stderr == f"memchat: continuing thread {newer} (newer), the most recent\n"
    for args in (["show", "-c", "--no-pager"], ["export"], ["export", "-c", "--format", "markdown"], ["undo"]):
        there, here = same(memchat(*args), remote(memchat, served, *args))
        assert there == here, args
    left = memchat("chat", "--server", served.url, input="", env={"MEMCHAT_DB": "/nonexistent/never-opened.db"})
    assert left.returncode == 0 and "holds no message: not kept" in left.stderr, left.stderr
    assert [t["id"] for t in json.loads(memchat("list", "--json").stdout)] == [newer, older]
    undone = remote(memchat, served, "undo", "-c")
    assert undone.returncode == 0 and undone.stderr.startswith(f"memchat: undoing the last turn of thread {newer} (newer)")
    assert "undone" in memchat("show", newer, "--no-pager").stdout


def test_failures_come_back_as_the_same_line_and_exit_code(memchat, served, server):
    thread = remote(memchat, served, "new", "--model", "openai/gpt-4o").stdout.strip()
    too_long = ["say", thread, "--budget", "3", "a long message " * 20]
    for args in (["show", "nosuchthread"], ["say", "nosuchthread", "hi"], too_long):
        there, here = same(memchat(*args), remote(memchat, served, *args))
        assert there[1:] == here[1:], args
    server.fail(401, "the provider refused the key")
    failed = remote(memchat, served, "say", thread, "hello")
    assert failed.returncode == 5
    assert failed.stderr.endswith(f"(your message is saved: `memchat retry {thread}` sends it again)\n")
    assert failed.stderr.count("\n") == 1

    operator = remote(memchat, served, "key", "list")
    assert operator.returncode == 2 and "works on the database itself" in operator.stderr
    assert memchat("key", "list", env={"MEMCHAT_SERVER": served.url}).returncode == 0  # the operator's: the database
    tenant = remote(memchat, served, "list", "--tenant", "alice")
    assert tenant.returncode == 2 and "works on the database itself" in tenant.stderr
    both = memchat("--db", "x.db", "--server", served.url, "list")
    assert both.returncode == 2 and "either --db or --server" in both.stderr
    gone = memchat("--server", "http://127.0.0.1:9", "list")
    assert gone.returncode == 6 and "cannot reach the memchat server at http://127.0.0.1:9" in gone.stderr
    assert remote(memchat, served, "say", thread, "hi", "--api-base", "http://elsewhere/v1").returncode == 2


def test_a_key_is_sent_and_a_refused_one_is_exit_8(memchat, served, server):
    key = memchat("key", "create", "alice").stdout.strip()
    without = remote(memchat, served, "list")
    assert without.returncode == 8 and without.stderr.startswith("memchat: this server needs an API key")
    wrong = remote(memchat, served, "list", key="mc-not-a-key")
    assert wrong.returncode == 8 and key not in wrong.stderr
    made = remote(memchat, served, "new", "--title", "alice's", key=key)
    assert made.returncode == 0
    listed = remote(memchat, served, "list", "--json", key=key)
    assert [t["title"] for t in json.loads(listed.stdout)] == ["alice's"]
    assert remote(memchat, served, "list", key=key, MEMCHAT_SERVER=served.url).returncode == 0


def test_a_client_process_loads_neither_sqlalchemy_nor_litellm(memchat, served, server):
    server.reply("hello back")
    thread = remote(memchat, served, "new", "--model", "openai/gpt-4o").stdout.strip()
    program = (
        "import sys\n"
        "from memchat.cli import main\n"
        f"sys.argv = ['memchat', 'say', {thread!r}, 'hello']\n"
        "try:\n    main()\nexcept SystemExit as end:\n    code = end.code\n"
        "heavy = sorted(m for m in ('sqlalchemy', 'sqlmodel', 'alembic', 'litellm', 'fastapi', 'openai') if m in sys.modules)\n"
        "print(heavy, code, file=sys.stderr)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
        env={**os.environ, "MEMCHAT_SERVER": served.url, "MEMCHAT_DB": "/nonexistent/never-opened.db"},
    )
    assert run.stdout == "hello back\n"
    assert run.stderr.strip() == "[] 0"


def test_recall_by_meaning_is_set_and_embedded_through_the_server(memchat, served, server):
    model = "openai/text-embedding-3-small"
    thread = remote(memchat, served, "new", "--model", "openai/gpt-4o", "--recall-embeddings", model).stdout.strip()
    assert json.loads(remote(memchat, served, "show", thread, "--json").stdout)["recall_embeddings"] == model
    remote(memchat, served, "say", thread, "we keep bees on the roof")
    made = remote(memchat, served, "embed", thread)
    assert (made.stdout, made.returncode) == ("embedded 2 messages\n", 0)
    assert [len(r["input"]) for r in server.embedding_requests] == [2]
    assert json.loads(remote(memchat, served, "embed", thread, "--json").stdout) == {"thread": thread, "embedded": 0}
    remote(memchat, served, "set", thread, "--recall-embeddings", "")
    refused = remote(memchat, served, "embed", thread)
    assert refused.returncode == 2 and "--recall-embeddings" in refused.stderr


class _Garbage(BaseHTTPRequestHandler):
    """A server that answers on memchat's paths, but not with what memchat's API sends."""

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self):
        content_type, body = self.server.answers[self.path.split("?")[0].removeprefix("/memchat/v1")]
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def garbage_server():
    running = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    running.answers = {}
    threading.Thread(target=running.serve_forever, daemon=True).start()
    yield running
    running.shutdown()
    running.server_close()


@pytest.mark.bad_input
@sqlite_only
@pytest.mark.parametrize(
    ("args", "path", "content_type", "body"),
    [
        (["list"], "/threads", "application/json", b'{"threads": []}'),
        (["list"], "/threads", "application/json", b"[1, 2]"),
        (["list"], "/threads", "application/json", b'[{"id": "t1"}]'),
        (["stats"], "/stats", "application/json", b"[]"),
        (["say", "t1", "hi"], "/threads/t1/say", "text/event-stream", b"event: text\ndata: {not json\n\n"),
        (["say", "t1", "hi"], "/threads/t1/say", "text/event-stream", b'event: reply\ndata: {"text": "hi"}\n\n'),
    ],
)
def test_a_server_answering_what_memchat_cannot_read_is_exit_6(memchat, garbage_server, args, path, content_type, body):
    garbage_server.answers[path] = (content_type, body)
    url = f"http://127.0.0.1:{garbage_server.server_address[1]}"
    done = memchat(*args, "--server", url, env={"MEMCHAT_DB": "/nonexistent/never-opened.db"})
    assert done.returncode == 6, done.stderr
    assert done.stderr.startswith(f"memchat: the memchat server at {url} sent an answer memchat cannot read (")
    assert len(done.stderr.splitlines()) == 1


@pytest.mark.bad_input
@sqlite_only
@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999", "ftp://127.0.0.1"])
def test_a_server_url_that_does_not_read_is_exit_2(memchat, url):
    done = memchat("list", "--server", url, env={"MEMCHAT_DB": "/nonexistent/never-opened.db"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("memchat: --server needs an http(s) URL") and len(done.stderr.splitlines()) == 1
