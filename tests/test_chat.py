"""`memchat chat` as a person uses it: the installed script in a real pseudo-terminal (pexpect),
talking to the tests' local provider through litellm."""

import json
import os
import re
import stat
import termios
import time

import pexpect
import pytest
from fake_openai import Raw
from serving import Served

from memchat import Memory


def ready(child: pexpect.spawn) -> None:
    """The line editor waits for input: it has put the terminal in raw mode, echo and signals off
    (a turn turns echo off too, but leaves Ctrl-C a signal)."""
    deadline = time.monotonic() + 60
    while termios.tcgetattr(child.child_fd)[3] & (termios.ECHO | termios.ISIG):
        if time.monotonic() > deadline:
            raise TimeoutError("the line editor did not take the terminal within 60 s")
        time.sleep(0.05)


@pytest.fixture
def session(memchat, tmp_path, server, isolated_env):
    """Start `memchat chat ARGS…` in a pseudo-terminal; every session is closed at the end."""
    started: list[pexpect.spawn] = []
    # A terminal that does not answer cursor-position requests, as pexpect's is not.
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "TERM": "xterm", "NO_COLOR": "1",
           "PROMPT_TOOLKIT_NO_CPR": "1"}

    def start(*args: str, **extra_env: str) -> tuple[pexpect.spawn, str]:
        child = pexpect.spawn(
            memchat.script, ["chat", *args], env={**env, **extra_env}, encoding="utf-8", timeout=60, dimensions=(40, 200)
        )
        started.append(child)
        child.expect(r"chat on thread (\w+)")
        thread = child.match.group(1)
        ready(child)
        return child, thread

    yield start
    for child in started:
        child.close(force=True)


def ask(child: pexpect.spawn, text: str, reply: str) -> None:
    child.sendline(text)
    child.expect_exact(reply)
    ready(child)


def test_a_session_streams_replies_keeps_the_history_and_leaves_on_ctrl_d(session, server, tmp_path):
    server.reply("Hello, Ada.", "Your name is Ada.")
    child, thread = session("--model", "openai/gpt-4o", "--title", "intro")
    ask(child, "My name is Ada.", "Hello, Ada.")
    ask(child, "What is my name?", "Your name is Ada.")
    assert server.last_messages == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello, Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    assert server.requests[-1]["stream"] is True
    child.sendeof()
    child.expect(f"thread {thread} \\(continue it: memchat chat {thread}")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    history = tmp_path / "data" / "memchat" / "chat-history"
    assert "My name is Ada." in history.read_text()
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    with Memory() as memory:
        assert memory.thread(thread).title == "intro"
        assert [m.content for m in memory.messages(thread)] == [
            "My name is Ada.", "Hello, Ada.", "What is my name?", "Your name is Ada."
        ]


def test_the_session_continues_a_thread_and_input_history_survives_sessions(session, server):
    child, thread = session("--model", "openai/gpt-4o")
    ask(child, "first session", "reply 1")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    again, same = session(thread)
    assert same == thread
    # Up twice brings back what was typed in the last session before /exit (the renderer draws
    # only what changes on the line, so the outcome is checked, not the drawing).
    again.send("\x1b[A")
    again.expect_exact("/exit")
    again.send("\x1b[A")
    again.expect_exact("session")
    again.send("\r")
    again.expect_exact("reply 2")
    assert server.last_messages[-1] == {"role": "user", "content": "first session"}
    assert len(server.last_messages) == 3


def interrupted_mid_reply(session, server, **env: str) -> tuple[pexpect.spawn, str]:
    """A session whose first reply, streamed slowly, is stopped by Ctrl-C after its second word."""
    server.reply("one two three four five six seven eight nine ten eleven twelve")
    server.piece_delay = 0.4
    child, thread = session("--model", "openai/gpt-4o", **env)
    child.sendline("count slowly")
    child.expect_exact("two")
    child.sendintr()
    child.expect("interrupted; the partial reply is kept: /retry asks again")
    ready(child)
    server.piece_delay = 0.0
    return child, thread


def test_ctrl_c_stops_a_streaming_reply_keeps_it_partial_and_the_session_goes_on(session, server):
    child, thread = interrupted_mid_reply(session, server)
    with Memory() as memory:
        stored = memory.messages(thread)
        assert [(m.role, m.status) for m in stored] == [("user", "failed"), ("assistant", "partial")]
        assert stored[1].content.startswith("one two") and "twelve" not in stored[1].content
    server.reply("all the way to twelve")
    ask(child, "/retry", "all the way to twelve")
    child.sendline("/exit")
    child.expect(pexpect.EOF)


def test_a_session_through_a_server_streams_and_ctrl_c_keeps_the_partial_reply(session, server):
    served = Served()
    try:
        child, thread = interrupted_mid_reply(session, server, MEMCHAT_SERVER=served.url)
        server.reply("all the way to twelve")
        ask(child, "/retry", "all the way to twelve")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
        with Memory() as memory:
            stored = memory.messages(thread)
        assert [(m.role, m.status) for m in stored] == [("user", "complete"), ("assistant", "partial"), ("assistant", "complete")]
        assert stored[1].content.startswith("one two") and "twelve" not in stored[1].content
    finally:
        served.stop()


def test_ctrl_c_at_the_prompt_clears_the_line_and_alt_enter_makes_a_second_line(session, server):
    child, _ = session("--model", "openai/gpt-4o")
    child.send("never sent")
    child.sendintr()
    ready(child)
    child.send("line one")
    child.send("\x1b\r")
    child.send("line two\r")
    child.expect_exact("reply 1")
    assert server.last_messages == [{"role": "user", "content": "line one\nline two"}]


def test_a_provider_failure_is_one_line_and_retry_resends(session, server):
    child, thread = session("--model", "openai/gpt-4o")
    server.fail(401, "bad key")
    child.sendline("are you there?")
    child.expect(r"memchat: .*bad key.*\(your message is saved: /retry sends it again\)")
    ready(child)
    ask(child, "/retry", "reply 2")
    assert server.last_messages == [{"role": "user", "content": "are you there?"}]


def test_slash_commands_do_what_the_cli_commands_of_their_names_do(session, server, tmp_path):
    server.echo = True
    child, thread = session("--model", "openai/gpt-4o")
    ask(child, "apples are red", "re: apples are red")
    ask(child, "bananas are yellow", "re: bananas are yellow")
    child.sendline("/help")
    child.expect_exact("/export FILE")
    child.sendline("/nonsense")
    child.expect_exact("unknown command /nonsense; the commands: /help /retry")
    child.sendline("/system Answer in French.")
    child.expect_exact("system prompt set")
    child.sendline("/budget 900")
    child.expect_exact("budget set")
    child.sendline("/title fruit")
    child.expect_exact("renamed thread")
    child.sendline("/search bananas")
    child.expect(r"#2 user: .*bananas")
    child.sendline("/context")
    child.expect(r"sends 5 of 5 messages")
    child.sendline("/undo")
    child.expect_exact("undid the last turn (#2, #3)")
    ask(child, "cherries?", "re: cherries?")
    assert server.last_messages == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "apples are red"},
        {"role": "assistant", "content": "re: apples are red"},
        {"role": "user", "content": "cherries?"},
    ]
    child.sendline("/edit 0 pears are green")
    child.expect_exact("re: pears are green")
    child.expect(r"now on thread (\w+)")
    edited = child.match.group(1)
    ready(child)
    child.sendline("/fork")
    child.expect(rf"forked thread {edited} at #\d+ into (\w+); now on")
    forked = child.match.group(1)
    out = tmp_path / "fork.json"
    child.sendline(f"/export {out}")
    child.expect_exact(f"wrote thread {forked}")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    exported = json.loads(out.read_text())
    assert [m["content"] for m in exported["messages"]] == ["Answer in French.", "pears are green", "re: pears are green"]
    assert exported["forked_from"]["thread"] == edited
    with Memory() as memory:
        original = memory.thread(thread)
        assert (original.title, original.system, original.budget) == ("fruit", "Answer in French.", 900)
        assert [m.status for m in memory.messages(thread)] == ["complete", "complete", "undone", "undone", "complete", "complete"]


def test_a_scripted_session_reads_stdin_lines_and_blocks(memchat, server, tmp_path):
    server.echo = True
    typed = 'hello\n"""\nfirst line\nsecond line\n"""\n/title scripted\n'
    done = memchat("chat", "--model", "openai/gpt-4o", input=typed, env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["re: hello", "re: first line", "second line"]
    thread = re.search(r"chat on thread (\w+)", done.stderr).group(1)
    with Memory() as memory:
        assert memory.thread(thread).title == "scripted"


def test_a_failed_or_cut_off_turn_says_once_how_to_go_on(memchat, server, tmp_path):
    empty = Raw(
        b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":'
        b'[{"index":0,"delta":{"role":"assistant","content":null},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n',
        content_type="text/event-stream",
    )
    server.answer_raw(*[empty] * 10)
    done = memchat("chat", "--model", "openai/gpt-4o", input="hello\n", env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert done.returncode == 5, done.stderr  # a scripted session ends at its first failure
    [failed] = [line for line in done.stderr.splitlines() if "empty reply" in line]
    thread = re.search(r"chat on thread (\w+)", done.stderr).group(1)
    assert failed == (
        f"memchat: openai/gpt-4o: the provider sent an empty reply (your message is saved: `memchat retry {thread}` sends it again)"
    )
    server.reset()
    server.reply("one two three four")
    server.drop_after(2)
    cut = memchat("chat", thread, input="again\n", env={"XDG_DATA_HOME": str(tmp_path / "data")})
    [dropped] = [line for line in cut.stderr.splitlines() if "dropped" in line]
    assert dropped == (
        "memchat: openai/gpt-4o: the connection dropped part-way through the reply (the partial reply is kept: "
        f"`memchat accept {thread}` keeps it, `memchat retry {thread}` asks again)"
    )


def test_an_edit_whose_turn_fails_leaves_the_session_on_the_fork_for_retry(session, server):
    child, thread = session("--model", "openai/gpt-4o")
    ask(child, "first question", "reply 1")
    server.fail(401, "bad key")
    child.sendline("/edit 0 the question, differently")
    child.expect(r"now on thread (\w+)")
    fork = child.match.group(1)
    child.expect("bad key")
    ready(child)
    ask(child, "/retry", "reply 3")
    assert fork != thread
    assert server.last_messages == [{"role": "user", "content": "the question, differently"}]
    with Memory() as memory:
        assert [m.content for m in memory.messages(thread)] == ["first question", "reply 1"]
        assert [m.status for m in memory.messages(fork)] == ["complete", "complete"]


def test_new_threads_take_new_s_options_and_a_thread_refuses_them(memchat, server, tmp_path):
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Summarize tersely.")
    made = memchat(
        "chat", "--model", "openai/gpt-4o", "--policy", "summary", "--summary-share", "0.5",
        "--summary-prompt", prompt, "--api-base", server.url, "--title", "set up", input="hello\n", env=env,
    )
    assert made.returncode == 0, made.stderr
    thread = re.search(r"chat on thread (\w+)", made.stderr).group(1)
    with Memory() as memory:
        kept = memory.thread(thread)
        assert (kept.title, kept.policy, kept.summary_share, kept.summary_prompt, kept.api_base) == (
            "set up", "summary", 0.5, "Summarize tersely.", server.url
        )
    refused = memchat("chat", thread, "--summary-share", "0.3", input="hello\n", env=env)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "for a new thread" in refused.stderr
    with Memory() as memory:
        assert memory.thread(thread).summary_share == 0.5
        assert len(memory.messages(thread)) == 2


def test_leaving_at_once_keeps_no_thread_and_c_continues_the_last_one_named(session, memchat, server):
    earlier = memchat("new", "--title", "earlier").stdout.strip()
    assert memchat("say", earlier, "first question").returncode == 0
    child, thread = session("--model", "openai/gpt-4o", "--title", "never used")
    child.sendeof()
    child.expect_exact(f"thread {thread} holds no message: not kept")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    with Memory() as memory:
        assert [t.id for t in memory.threads()] == [earlier]
    said = memchat("say", "-c", "second question")
    assert said.returncode == 0 and said.stderr == f"memchat: continuing thread {earlier} (earlier), the most recent\n"
    again, same = session("-c")
    assert same == earlier
    assert f"continuing thread {earlier} (earlier), the most recent" in again.before
    ask(again, "third question", "reply 3")
    again.sendeof()
    again.expect_exact(f"thread {earlier} (continue it: memchat chat {earlier}")
    with Memory() as memory:
        assert [m.content for m in memory.messages(earlier) if m.role == "user"] == [
            "first question", "second question", "third question"
        ]


def test_a_scripted_session_without_a_key_exits_with_its_code_and_keeps_no_thread(memchat, server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    done = memchat("chat", input="hi\nand again\n", env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert done.returncode == 5, done.stderr
    thread = re.search(r"chat on thread (\w+)", done.stderr).group(1)
    assert done.stderr.count("OPENAI_API_KEY is not set") == 1, "the session stopped at the first failure"
    assert f"thread {thread} holds no message: not kept" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("memchat: OPENAI_API_KEY is not set")
    assert server.requests == []
    with Memory() as memory:
        assert memory.threads() == []


def test_a_scripted_session_stops_at_a_failed_turn_with_its_code_and_how_to_resend(memchat, server, tmp_path):
    server.fail(401, "bad key")
    done = memchat("chat", "--model", "openai/gpt-4o", input="first\nsecond\n", env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert done.returncode == 5, done.stderr
    thread = re.search(r"chat on thread (\w+)", done.stderr).group(1)
    assert done.stderr.splitlines()[-1].endswith(f"(your message is saved: `memchat retry {thread}` sends it again)")
    assert [r["messages"][-1]["content"] for r in server.requests] == ["first"], "nothing sent after the failure"
    with Memory() as memory:
        assert [(m.content, m.status) for m in memory.messages(thread)] == [("first", "failed")]


def test_search_in_a_session_highlights_matches_as_memchat_search_does(session, server, memchat, tmp_path):
    server.echo = True
    child, thread = session("--model", "openai/gpt-4o", NO_COLOR="")
    ask(child, "I flew to Lisbon in May.", "re: I flew to Lisbon in May.")
    child.sendline("/search lisbon")
    child.expect(r"#0 user: ([^\r\n]*)\r\n")
    in_session = child.match.group(1)
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    highlighted = "\x1b[33m\x1b[1mLisbon\x1b[0m"
    assert in_session == f"I flew to {highlighted} in May."
    environment = {key: value for key, value in os.environ.items() if key != "NO_COLOR"}
    searched = pexpect.spawn(
        memchat.script, ["search", "lisbon", "--thread", thread], env={**environment, "TERM": "xterm", "MEMCHAT_PAGER": ""},
        encoding="utf-8", timeout=60,
    )
    searched.expect(pexpect.EOF)
    assert f"  {in_session}\r\n" in searched.before
    piped = memchat("chat", thread, input="/search lisbon\n", env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert piped.returncode == 0, piped.stderr
    assert "#0 user: I flew to Lisbon in May." in piped.stdout.splitlines()



def test_a_block_is_one_entry_of_the_input_history(session, server, tmp_path):
    from prompt_toolkit.history import FileHistory

    child, thread = session("--model", "openai/gpt-4o")
    child.sendline('"""')
    for line in ("first line", "second line", '"""'):
        child.expect_exact("…")
        child.sendline(line)
    child.expect_exact("reply 1")
    ready(child)
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    history = FileHistory(str(tmp_path / "data" / "memchat" / "chat-history"))
    assert list(history.load_history_strings()) == ["/exit", "first line\nsecond line"]
    again, _ = session(thread)
    again.send("\x1b[A")
    again.expect_exact("/exit")
    again.send("\x1b[A")
    again.expect_exact("second line")
    again.send("\r")
    again.expect_exact("reply 2")
    assert server.last_messages[-1] == {"role": "user", "content": "first line\nsecond line"}


def test_keys_typed_while_a_reply_streams_stay_out_of_it_and_wait_for_the_prompt(session, server):
    server.reply("one two three four five six seven eight")
    server.piece_delay = 0.3
    child, _ = session("--model", "openai/gpt-4o")
    child.sendline("count slowly")
    child.expect_exact("two")
    child.send("typed ahead")
    child.expect_exact("eight")
    assert "typed" not in child.before
    server.piece_delay = 0.0
    child.send(" and sent\r")
    child.expect_exact("reply 2")
    assert server.last_messages[-1] == {"role": "user", "content": "typed ahead and sent"}


def test_the_terminal_echoes_again_after_a_reply_stopped_by_ctrl_c(session, server):
    child, _ = interrupted_mid_reply(session, server)
    child.sendeof()
    child.expect(pexpect.EOF)
    assert child.getecho()
