"""The `memchat` command: Typer's CliRunner for each command, plus real runs of the installed script."""

import json
import os
import re
import subprocess
import sys

import pytest
from helpers import connection_attempts, installed_script, quiet, sqlite_only
from serving import free_port
from typer.testing import CliRunner

from memchat.cli import app

runner = CliRunner()
"""For tests whose subject is not the storage backend (each run of the script costs seconds)."""

pytestmark = pytest.mark.usefixtures("db_url")
"""The commands run in this process (`run`, `ok`, `fails`) open the test's database through
MEMCHAT_DB: every test here asks for it, and runs on both backends unless marked `sqlite_only`."""


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def ok(*args, input=None):
    result = run(*args, input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def fails(code, *args, input=None):
    result = run(*args, input=input)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stderr.startswith("memchat: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return result


def new_thread(*args):
    thread_id = ok("new", *args).stdout.strip()
    assert thread_id and "\n" not in thread_id
    return thread_id


def test_new_prints_only_the_id_and_say_prints_the_reply(server):
    thread = new_thread("--title", "Ada", "--system", "Be brief.")
    server.reply("Nice to meet you.")
    assert ok("say", thread, "I am Ada").stdout == "Nice to meet you.\n"
    assert server.last_messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "I am Ada"},
    ]


def test_say_options_reach_the_provider(server):
    thread = new_thread()
    ok("say", thread, "hi", "--model", "openai/gpt-4o-mini", "--max-tokens", "55", "--temperature", "0.5")
    request = server.requests[-1]
    assert (request["model"], request["max_tokens"], request["temperature"]) == ("gpt-4o-mini", 55, 0.5)
    assert "top_p" not in request and "reasoning_effort" not in request


def test_top_p_and_reasoning_effort_reach_the_provider(server):
    thread = new_thread()
    ok("say", thread, "hi", "--model", "openai/local-reasoner", "--top-p", "0.5", "--reasoning-effort", "low")
    assert (server.requests[-1]["top_p"], server.requests[-1]["reasoning_effort"]) == (0.5, "low")


@pytest.mark.bad_input
def test_an_option_the_model_does_not_take_is_refused_naming_it_before_anything_is_stored(server):
    thread = new_thread()
    refused = fails(2, "say", thread, "hi", "--model", "openai/gpt-4o-mini", "--reasoning-effort", "low")
    assert "reasoning_effort" in refused.stderr and "gpt-4o-mini" in refused.stderr
    assert server.requests == [] and ok("show", thread, "--json").stdout.count('"role"') == 0


def test_say_reads_stdin_with_dash_or_a_pipe(server):
    thread = new_thread()
    ok("say", thread, "-", input="from a dash\n")
    ok("say", thread, input="from a pipe\n\n")
    ok("say", thread, "summarise this", input="FILE TEXT\n")
    contents = [m["content"] for m in server.last_messages if m["role"] == "user"]
    assert contents == ["from a dash", "from a pipe\n", "FILE TEXT\n\nsummarise this"], "one trailing newline dropped"


def test_a_message_that_starts_with_a_dash_is_explained_and_sent_after_double_dash(server):
    thread = new_thread()
    refused = fails(2, "say", thread, "-1 is negative")
    assert "goes after `--`" in refused.stderr and refused.stderr.count("\n") == 1
    ok("say", thread, "--", "-1 is negative")
    assert server.last_messages[-1] == {"role": "user", "content": "-1 is negative"}


def test_changes_are_reported_in_one_line_and_an_empty_title_is_refused(server):
    thread = new_thread()
    assert ok("rename", thread, "Trip").stderr == f"memchat: renamed thread {thread} to 'Trip'\n"
    assert "the title is empty" in fails(2, "rename", thread, "  ").stderr
    assert ok("set", thread, "--budget", "900", "--recall", "2").stderr == f"memchat: changed budget, recall of thread {thread}\n"
    server.reply("part of it")
    server.drop_after(2)
    run("say", thread, "q", "--stream")
    assert ok("accept", thread).stderr.startswith("memchat: kept the cut-off reply #1 of thread")
    assert ok("rm", thread, "--yes").stderr == f"memchat: deleted thread {thread} and its 2 messages\n"


def test_an_ambiguous_prefix_lists_the_ids_it_matches(server):
    ids = [new_thread() for _ in range(17)]  # 16 hex digits: two of them share a first one
    first = next(digit for digit in "0123456789abcdef" if sum(i.startswith(digit) for i in ids) >= 2)
    refused = fails(2, "show", first)
    sharing = [i for i in ids if i.startswith(first)]
    assert all(thread in refused.stderr for thread in sorted(sharing)[:5]) and "give more characters" in refused.stderr


def test_no_color_is_honoured(server, monkeypatch):
    thread = new_thread()
    monkeypatch.setenv("NO_COLOR", "1")
    shown = runner.invoke(app, ["show", thread], color=True)
    assert "\x1b[" not in shown.stdout
    monkeypatch.delenv("NO_COLOR")
    assert "\x1b[" in runner.invoke(app, ["show", thread], color=True).stdout


@sqlite_only
def test_no_arguments_show_help_without_an_empty_error_line(memchat):
    for args in ([], ["db"]):
        shown = memchat(*args, timeout=60)
        assert "Usage" in shown.stdout + shown.stderr
        assert "memchat:  (" not in shown.stderr and not shown.stderr.startswith("memchat: ")


def test_say_streams_on_request(server):
    thread = new_thread()
    server.reply("streamed words here")
    assert ok("say", thread, "go", "--stream").stdout == "streamed words here\n"
    assert server.requests[-1]["stream"] is True
    ok("say", thread, "go", "--no-stream")
    assert "stream" not in server.requests[-1]


def test_budget_error_reports_both_numbers(server):
    thread = new_thread("--system", "rules " * 40)
    result = fails(4, "say", thread, "hello", "--budget", "30")
    assert "30" in result.stderr and "tokens" in result.stderr
    assert server.requests == []


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "args, code",
    [
        (("say", "missing-thread", "hi"), 3),
        (("show", "missing-thread"), 3),
        (("rename", "missing-thread", "x"), 3),
        (("rm", "missing-thread", "--yes"), 3),
        (("export", "missing-thread", "--all"), 2),
        (("new", "--budget", "0"), 2),
        (("say", "x", "hi", "--max-tokens", "-1"), 2),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args, code):
    fails(code, *args)


@pytest.mark.parametrize(
    "args, words",
    [
        (("new", "--bogus"), "No such option: --bogus"),
        (("say",), "no thread: give its id, or --continue"),
        (("show",), "no thread: give its id, or -c for the most recent one"),
        (("undo",), "no thread: give its id, or -c for the most recent one"),
        (("frob",), "No such command 'frob'"),
        (("new", "--budget", "zero"), "--budget"),
    ],
)
@sqlite_only
def test_usage_errors_are_one_line_too(args, words):
    assert words in fails(2, *args).stderr


@sqlite_only
def test_help_still_works():
    assert "say" in ok("--help").stdout
    assert "--budget" in ok("say", "--help").stdout


def _every_command_path(group, path=()):
    yield path
    for name, command in getattr(group, "commands", {}).items():
        yield from _every_command_path(command, (*path, name))


@sqlite_only
def test_help_writes_parameters_as_the_readme_does():
    import typer.main

    for path in _every_command_path(typer.main.get_command(app)):
        shown = ok(*path, "--help").stdout
        assert not re.search(r"<(str|bool|int|float)[^>]*>", shown), (path, shown)
        assert "{" not in shown.split("\n\n")[1], (path, shown)
        assert "[default: (" not in shown, (path, shown)
    said = ok("say", "--help").stdout
    assert "say [OPTIONS] [THREAD] [MESSAGE]" in said
    assert "[default: 1024]" in said and "[window|summary]" in said and "INTEGER" in said
    assert re.search(r"--usage\s+-u\s+Print", said)
    assert re.search(r"show \[OPTIONS\] \[THREAD\] +\n", ok("show", "--help").stdout)


def test_empty_message_is_refused(server):
    thread = new_thread()
    fails(2, "say", thread, "   ")
    fails(2, "say", thread, input="")
    assert json.loads(ok("list", "--json").stdout)[0]["message_count"] == 0


def test_invalid_utf8_on_stdin_is_refused(server):
    thread = new_thread()
    result = runner.invoke(app, ["say", thread, "-"], input=b"\xff\xfe bad")
    assert result.exit_code == 2 and "UTF-8" in result.stderr


def test_missing_key_message(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    thread = new_thread()
    result = fails(5, "say", thread, "hi")
    assert "OPENAI_API_KEY" in result.stderr and "memchat/echo" in result.stderr


def test_list_orders_by_recent_activity_and_shows_counts(server):
    older = new_thread("--title", "older")
    newer = new_thread("--title", "newer", "--model", "memchat/echo")
    ok("say", older, "bump")
    listing = json.loads(ok("list", "--json").stdout)
    assert [(t["id"], t["title"], t["message_count"]) for t in listing] == [(older, "older", 2), (newer, "newer", 0)]
    assert listing[1]["model"] == "memchat/echo"
    text = ok("list").stdout.splitlines()
    assert text[0].split() == ["ID", "TITLE", "MODEL", "MESSAGES", "LAST", "ACTIVITY"]
    assert text[1].startswith(older) and text[2].startswith(newer)


def test_show_renders_the_conversation(server):
    thread = new_thread("--title", "Demo", "--system", "Be kind.")
    server.reply("Hello there!")
    ok("say", thread, "Hi!")
    shown = ok("show", thread).stdout
    for piece in ("Demo", thread, "Be kind.", "Hi!", "Hello there!", "user", "assistant"):
        assert piece in shown
    as_json = json.loads(ok("show", thread, "--json").stdout)
    assert as_json["messages"][-1]["content"] == "Hello there!"


def test_context_shows_kept_and_dropped_messages_without_calling_the_model(server):
    thread = new_thread("--system", "sys")
    for i in range(4):
        ok("say", thread, f"turn {i} " + "words " * 20)
    calls = len(server.requests)
    data = json.loads(ok("context", thread, "next?", "--budget", "100", "--json").stdout)
    assert len(server.requests) == calls
    assert data["budget"] == 100 and data["prompt_tokens"] <= 100
    kinds = [(e["kind"], e["kept"]) for e in data["entries"]]
    assert kinds[0] == ("system", True) and kinds[-1] == ("new", True)
    assert data["dropped"] == sum(1 for e in data["entries"] if not e["kept"]) > 0
    assert data["messages"][-1] == {"role": "user", "content": "next?"}
    text = ok("context", thread, "next?", "--budget", "100").stdout
    assert "✗" in text and "of 100 tokens" in text
    ok("say", thread, "next?", "--budget", "100")
    assert server.last_messages == data["messages"]


def test_export_to_file_and_import_from_file_and_stdin(tmp_path, server):
    thread = new_thread("--title", "Saved")
    ok("say", thread, "remember this")
    target = tmp_path / "out.json"
    ok("export", thread, "-o", target)
    exported = json.loads(target.read_text())
    assert exported["title"] == "Saved" and len(exported["messages"]) == 2
    new_id = ok("import", target).stdout.strip()
    assert json.loads(ok("export", new_id).stdout)["messages"][0]["content"] == "remember this"
    everything = ok("export", "--all").stdout
    ids = ok("import", "-", input=everything).stdout.split()
    assert len(ids) == 2 and len(json.loads(ok("list", "--json").stdout)) == 4


@pytest.mark.bad_input
def test_bad_import_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"messages": [{"role": "robot", "content": "x"}]}')
    assert "messages[0].role" in fails(2, "import", bad).stderr
    truncated = tmp_path / "truncated.json"
    truncated.write_text('[{"messages": [')
    assert "not valid JSON" in fails(2, "import", truncated).stderr
    fails(2, "import", tmp_path / "absent.json")
    assert json.loads(ok("list", "--json").stdout) == []


def test_rename_and_rm(server):
    thread = new_thread("--title", "before")
    ok("rename", thread, "after")
    assert json.loads(ok("list", "--json").stdout)[0]["title"] == "after"
    result = fails(2, "rm", thread)
    assert "--yes" in result.stderr
    ok("rm", thread, "--yes")
    assert json.loads(ok("list", "--json").stdout) == []


def test_db_commands_and_global_db_option(tmp_path):
    other = tmp_path / "other.db"
    assert ok("--db", other, "db", "upgrade").stdout.strip()
    assert "up to date" in ok("--db", other, "db", "current").stdout
    new_thread_id = ok("--db", other, "new", "--title", "elsewhere").stdout.strip()
    assert json.loads(ok("--db", other, "list", "--json").stdout)[0]["id"] == new_thread_id
    assert json.loads(ok("list", "--json").stdout) == []


@sqlite_only
def test_missing_database_directory(tmp_path):
    result = fails(6, "--db", tmp_path / "no" / "such" / "dir.db", "list")
    assert "does not exist" in result.stderr


@sqlite_only
def test_not_a_database(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    fails(6, "--db", junk, "list")
    assert junk.read_bytes() == b"this is not sqlite" * 100


# Real processes: the installed console script, as users and CI run it. The other tests' commands
# run forked from a preloaded interpreter (tests/preloaded.py); the last test here checks that
# such a command prints, reads and exits as the installed script does.


def test_installed_script_quickstart_with_the_echo_model(memchat):
    made = memchat.installed("new", "--model", "memchat/echo", "--title", "demo")
    assert made.returncode == 0, made.stderr
    thread = made.stdout.strip()
    first = memchat.installed("say", thread, "My name is Ada.")
    second = memchat.installed("say", thread, "What is my name?")
    assert first.returncode == second.returncode == 0, (first.stderr, second.stderr)
    assert "received 3 messages" in second.stdout and "My name is Ada." in second.stdout
    assert quiet(second.stderr), second.stderr


def test_installed_script_against_the_local_server_streaming_from_a_pipe(memchat, server):
    thread = memchat.installed("new").stdout.strip()
    server.reply("a streamed answer")
    said = memchat.installed("say", thread, "--stream", input="piped question")
    assert said.returncode == 0, said.stderr
    assert said.stdout == "a streamed answer\n" and quiet(said.stderr)
    assert server.last_messages == [{"role": "user", "content": "piped question"}]


@sqlite_only
def test_installed_script_errors_are_one_line(memchat):
    result = memchat.installed("say", "nothing-here", "hi")
    assert result.returncode == 3
    assert result.stderr.startswith("memchat: no thread") and result.stderr.count("\n") == 1


@sqlite_only
def test_a_preloaded_command_prints_reads_and_exits_as_the_installed_script(memchat, server, tmp_path):
    import preloaded

    thread = memchat.installed("new", "--model", "memchat/echo", "--title", "same").stdout.strip()
    memchat.installed("say", thread, "My name is Ada.")
    (tmp_path / "bad.json").write_text("not json")
    for args, given in (
        (["list"], None),
        (["show", thread, "--no-pager"], None),
        (["context", thread, "What is my name?"], None),
        (["say", "nothing-here", "hi"], None),
        (["import", "bad.json"], None),
        (["import", "-"], "piped, not JSON"),
        (["new", "--budget", "nonsense"], None),
        (["--help"], None),
    ):
        forked = memchat(*args, input=given, cwd=tmp_path)
        installed = memchat.installed(*args, input=given, cwd=tmp_path)
        assert (forked.stdout, forked.stderr, forked.returncode) == (
            installed.stdout,
            installed.stderr,
            installed.returncode,
        ), args
    here = preloaded.server(dict(os.environ))
    assert preloaded.server({**os.environ, "MEMCHAT_DB": "elsewhere.db"}) is here  # read when a command runs
    assert preloaded.server({**os.environ, "LITELLM_LOG": "DEBUG"}) is not here  # read when litellm is imported


@sqlite_only
@pytest.mark.slow
def test_python_dash_m(tmp_path):
    result = subprocess.run([sys.executable, "-m", "memchat", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "say" in result.stdout


@sqlite_only
def test_installed_script_uses_the_user_data_directory_by_default(memchat, tmp_path, monkeypatch):
    monkeypatch.delenv("MEMCHAT_DB")
    data_home = tmp_path / "xdg-data"
    made = memchat("new", "--model", "memchat/echo", env={"XDG_DATA_HOME": str(data_home)})
    assert made.returncode == 0, made.stderr
    assert (data_home / "memchat" / "memchat.db").is_file()


@sqlite_only
def test_installed_script_streams_when_stdout_is_a_terminal(memchat, server):
    import pty

    thread = memchat("new").stdout.strip()
    server.reply("typed out live")
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [memchat.script, "say", thread, "hello"], stdout=terminal, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 1024)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=60) == 0, process.stderr.read()
    os.close(controller)
    assert server.requests[-1]["stream"] is True
    assert output.replace(b"\r\n", b"\n") == b"typed out live\n"


def _on_a_terminal(command, env):
    """Run command with its stdout on a pseudo-terminal; its output and exit code."""
    import pty

    controller, terminal = pty.openpty()
    process = subprocess.Popen(command, stdout=terminal, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    code = process.wait(timeout=60)
    os.close(controller)
    return output.replace(b"\r\n", b"\n").decode(), code, process.stderr.read().decode()


@sqlite_only
def test_show_pages_on_a_terminal_like_git_and_never_when_piped(memchat, server):
    from memchat import Memory

    said = [(role, f"line {n // 2}") for n, role in enumerate(["user", "assistant"] * 3)]
    with Memory() as memory:
        thread = memory.new_thread(title="paged", messages=said).id
    environment = {**os.environ, "PAGER": 'echo "LESS=$LESS"; sed "s/^/PAGED:/"'}
    environment.pop("LESS", None)
    environment.pop("NO_COLOR", None)
    shown, code, errors = _on_a_terminal([memchat.script, "show", thread], environment)
    assert code == 0 and errors == ""
    lines = shown.splitlines()
    assert lines[0] == "LESS=FRX"
    assert all(line.startswith("PAGED:") for line in lines[1:]) and "line 2" in shown
    assert "\x1b[" in shown  # colours go through to the pager, which shows them (less -R)
    assert "\x1b[" not in _on_a_terminal([memchat.script, "show", thread], {**environment, "NO_COLOR": "1"})[0]
    unpaged, code, _ = _on_a_terminal([memchat.script, "show", thread, "--no-pager"], environment)
    assert code == 0 and "PAGED:" not in unpaged and "line 2" in unpaged
    assert "PAGED:" not in _on_a_terminal([memchat.script, "show", thread], {**environment, "MEMCHAT_PAGER": ""})[0]
    piped = subprocess.run([memchat.script, "show", thread], capture_output=True, text=True, env=environment, timeout=60)
    assert piped.returncode == 0 and "PAGED:" not in piped.stdout and "line 2" in piped.stdout


@sqlite_only
def test_quitting_the_pager_early_is_not_an_error(memchat, server):
    from memchat import Memory

    said = [(("user", "assistant")[n % 2], f"message {n} " * 50) for n in range(2000)]
    with Memory() as memory:
        long_thread = memory.new_thread(title="long", messages=said).id
    shown, code, errors = _on_a_terminal([memchat.script, "show", long_thread], {**os.environ, "PAGER": "head -n 1"})
    assert code == 0 and errors == "" and len(shown.splitlines()) == 1


@sqlite_only
def test_llama_model_names_do_not_wait_on_a_tokenizer_download(memchat, server):
    thread = memchat("new", "--model", "openai/llama-3-8b-instruct").stdout.strip()
    # A download attempt would hang far longer; a loaded CI machine needs more than 20 s to start.
    said = memchat("say", thread, "hi", "--no-stream", timeout=45)
    assert said.returncode == 0, said.stderr
    assert quiet(said.stderr), said.stderr
    assert server.requests[-1]["model"] == "llama-3-8b-instruct"


def test_retry_command_and_a_cut_off_stream(server):
    thread = new_thread()
    server.reply("half of this answer arrives")
    server.drop_after(2)
    result = run("say", thread, "tell me", "--stream")
    assert result.exit_code == 5
    assert result.stdout == "half of \n"
    assert "dropped part-way" in result.stderr and result.stderr.count("\n") == 1
    assert f"memchat accept {thread}" in result.stderr and f"memchat retry {thread}" in result.stderr
    assert "assistant (partial)" in ok("show", thread).stdout
    server.reply("the full answer")
    assert ok("retry", thread, "--timeout", "30").stdout == "the full answer\n"
    assert server.last_messages == [{"role": "user", "content": "tell me"}]
    assert "nothing to retry" in fails(2, "retry", thread).stderr


def test_accepting_a_cut_off_reply_sends_it_as_history(server):
    thread = new_thread()
    server.reply("part of an answer that breaks")
    server.drop_after(3)
    assert run("say", thread, "question", "--stream").exit_code == 5
    ok("accept", thread)
    ok("say", thread, "go on")
    assert server.last_messages == [
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": "part of an "},
        {"role": "user", "content": "go on"},
    ]
    assert "nothing to accept" in fails(2, "accept", thread).stderr


@sqlite_only
def test_ctrl_c_during_a_streamed_reply_keeps_the_partial_reply(memchat, server, tmp_path):
    import signal

    thread = memchat("new").stdout.strip()
    server.reply(" ".join(f"word{i}" for i in range(200)))
    server.piece_delay = 0.05
    process = subprocess.Popen(
        [memchat.script, "say", thread, "long answer please", "--stream"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Straight from the pipe: a read through the text wrapper could buffer more than it returns,
    # and communicate() below reads the pipe itself, so what was buffered would be lost. The
    # signal comes once the first two words are out, so the partial reply has something to keep.
    raw = b""
    while b"word0 word1" not in raw:
        piece = os.read(process.stdout.fileno(), 64)
        assert piece, "the reply ended before its first words were printed"
        raw += piece
    first = raw.decode()
    assert first.startswith("word0")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.startswith("memchat: ") and err.count("\n") == 1 and "Traceback" not in err
    shown = json.loads(memchat("show", thread, "--json").stdout)["messages"]
    assert [(m["role"], m["status"]) for m in shown] == [("user", "failed"), ("assistant", "partial")]
    assert shown[1]["content"].startswith("word0 word1") and len(shown[1]["content"]) < 1200
    assert (first + out).strip().startswith(shown[1]["content"].strip())


def test_a_ten_megabyte_message_on_stdin_is_refused_by_the_budget(server):
    thread = new_thread()
    result = fails(4, "say", thread, "-", input="lorem ipsum " * 900_000)
    assert "budget" in result.stderr
    assert server.requests == []
    assert json.loads(ok("list", "--json").stdout)[0]["message_count"] == 0


def test_an_import_over_the_size_limit_is_refused_before_it_is_read_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMCHAT_IMPORT_MAX_MIB", "1")
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"messages": [{"role": "user", "content": "x" * 2_000_000}]}))
    assert "1 MiB limit" in fails(2, "import", big).stderr
    assert "1 MiB limit" in fails(2, "import", "-", input=big.read_text()).stderr
    assert json.loads(ok("list", "--json").stdout) == []


@sqlite_only
def test_a_database_where_no_file_can_be_created(tmp_path):
    result = fails(6, "--db", "/proc/memchat-test.db", "new")
    assert "cannot create database /proc/memchat-test.db" in result.stderr


def summary_call(body):
    return body["messages"][-1]["content"].startswith("Summary so far:")


def test_set_changes_only_what_it_is_given(memory):
    thread = new_thread("--title", "T", "--model", "openai/gpt-4o-mini", "--budget", "900")
    shown = ok("set", thread, "--policy", "summary", "--recall", "3", "--summary-share", "0.3").stdout
    assert "policy          summary" in shown and "recall          3" in shown
    info = memory.thread(thread)
    assert (info.model, info.budget, info.policy, info.recall, info.summary_share) == ("openai/gpt-4o-mini", 900, "summary", 3, 0.3)
    ok("set", thread, "--model", "", "--budget", "0", "--recall", "0")
    info = memory.thread(thread)
    assert (info.model, info.budget, info.recall, info.policy) == (None, None, 0, "summary")
    fails(2, "set", thread)
    fails(2, "set", thread, "--policy", "forget")
    fails(2, "new", "--policy", "forget")
    fails(2, "set", thread, "--recall", "99")
    fails(3, "set", "nosuchthread", "--recall", "1")


def test_summary_prompt_from_a_file_and_back_to_the_default(memory, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Keep names only, {max_words} words at most.")
    thread = new_thread("--policy", "summary", "--summary-prompt", str(prompt))
    assert ok("summary", thread, "--prompt").stdout == "Keep names only, {max_words} words at most.\n"
    ok("set", thread, "--summary-prompt", "default")
    assert ok("summary", thread, "--prompt").stdout.startswith("You keep the long-term memory")
    fails(2, "set", thread, "--summary-prompt", str(tmp_path / "missing.txt"))
    (tmp_path / "blank.txt").write_text("  \n")
    fails(2, "new", "--summary-prompt", str(tmp_path / "blank.txt"))


def test_summary_command_shows_rebuilds_and_lists(memory, server):
    server.on(summary_call, lambda body: f"SUMMARY of {body['messages'][-1]['content'].count('[#')} messages")
    thread = new_thread("--policy", "summary", "--budget", "300")
    empty = ok("summary", thread)
    assert empty.stdout == "" and "no summary yet" in empty.stderr
    assert ok("summary", thread, "--json").stdout.strip() == "null"
    for i in range(12):
        ok("say", thread, f"turn {i} " + "with some words " * 6)
    current = memory.summary(thread)
    shown = ok("summary", thread).stdout
    assert shown.startswith(f"messages #0–#{current.last_position} · ") and current.content in shown
    rebuilt = ok("summary", thread, "--rebuild", "--json")
    data = json.loads(rebuilt.stdout)
    assert data["first_position"] == 0 and data["last_position"] >= current.last_position
    assert server.requests[-1]["messages"][-1]["content"].startswith("Summary so far:\n(none yet)")
    assert f"summarized: messages #0–#{data['last_position']}" in ok("show", thread).stdout
    listed = json.loads(ok("summary", thread, "--all", "--json").stdout)
    assert [s["id"] for s in listed] == [s.id for s in memory.summaries(thread)] and listed[-1] == data


def test_context_json_shows_the_summary_span_recall_and_a_due_fold(memory, server):
    server.on(summary_call, "SUMMARY: words.")
    thread = new_thread("--budget", "300")
    ok("say", thread, "The locker code is 4711.")
    for i in range(10):
        ok("say", thread, f"turn {i} " + "with some words " * 6)
    data = json.loads(ok("context", thread, "locker code?", "--policy", "summary", "--recall", "1", "--json").stdout)
    assert data["policy"] == "summary" and data["summary_due"][0] == 0
    recall = next(e for e in data["entries"] if e["kind"] == "recall")
    assert recall["recalled"] == [0] and "The locker code is 4711." in recall["content"]
    ok("say", thread, "locker code?", "--policy", "summary")
    data = json.loads(ok("context", thread, "--policy", "summary", "--json").stdout)
    summary = next(e for e in data["entries"] if e["kind"] == "summary")
    assert summary["span"][0] == 0 and summary["content"].endswith("SUMMARY: words.")
    assert data["messages"][0]["content"] == summary["content"]
    text = ok("context", thread, "--policy", "summary").stdout
    assert f"#0–#{summary['span'][1]}" in text and "(in the summary)" in text


def test_a_failed_summary_is_said_on_stderr_and_the_reply_still_comes(memory, server):
    from fake_openai import Fault

    server.on(summary_call, Fault(503, "overloaded"))
    thread = new_thread("--policy", "summary", "--budget", "300")
    for i in range(12):
        result = ok("say", thread, f"turn {i} " + "with some words " * 6, "--timeout", "2")
        assert result.stdout.startswith("reply ")
    assert "could not update the summary" in result.stderr and "window policy" in result.stderr
    assert memory.summary(thread) is None


def test_a_failed_turn_says_the_message_is_saved_and_how_to_resend_it(server):
    thread = new_thread()
    server.fail(401, "bad key")
    failed = fails(5, "say", thread, "hello")
    assert failed.stderr.count("\n") == 1
    assert f"(your message is saved: `memchat retry {thread}` sends it again)" in failed.stderr
    assert "litellm." not in failed.stderr and "Exception" not in failed.stderr


def test_cannot_reach_names_the_url_it_tried(server, monkeypatch):
    thread = new_thread()
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_BASE", "http://127.0.0.1:9/v1")
    failed = fails(5, "say", thread, "hello", "--timeout", "1")
    assert "cannot reach http://127.0.0.1:9/v1" in failed.stderr


def test_a_wrong_api_base_port_fails_at_once_with_one_line(server):
    thread = new_thread()
    port = free_port()
    with connection_attempts(port) as attempts:
        failed = fails(5, "say", thread, "hello", "--api-base", f"http://127.0.0.1:{port}/v1")
    assert attempts.count == 1
    assert f"cannot reach http://127.0.0.1:{port}/v1 (connection refused: nothing listens there)" in failed.stderr
    assert f"(your message is saved: `memchat retry {thread}` sends it again)" in failed.stderr


def test_new_set_and_config_refuse_a_provider_litellm_does_not_know(server):
    refused = fails(2, "new", "--model", "nonsense/xyz")
    assert "litellm knows no provider 'nonsense'" in refused.stderr and "openai/gpt-4o" in refused.stderr
    assert ok("list", "--json").stdout.strip() == "[]"
    thread = new_thread("--model", "openai/gpt-5-something-new")
    assert "litellm knows no provider 'nonsense'" in fails(2, "set", thread, "--model", "nonsense/xyz").stderr
    assert "embedding model 'x/y'" in fails(2, "set", thread, "--recall-embeddings", "x/y").stderr
    [kept] = json.loads(ok("list", "--json").stdout)
    assert (kept["model"], kept["recall_embeddings"]) == ("openai/gpt-5-something-new", None)
    assert "litellm knows no provider 'nonsense'" in fails(2, "config", "set", "model", "nonsense/xyz").stderr
    assert "(not set)" in ok("config", "list").stdout.splitlines()[1]
    ok("config", "set", "model", "ollama/llama3")


@sqlite_only
@pytest.mark.slow
def test_version_short_help_completion_and_db_path(tmp_path):
    from importlib.metadata import version

    assert ok("--version").stdout == f"memchat {version('memchat')}\n"
    assert "Usage" in ok("-h").stdout and "Usage" in ok("say", "-h").stdout
    # Typer finds the shell among the parent processes: run the script from bash (`; true` keeps
    # bash from replacing itself with it), whatever started the tests.
    shown = subprocess.run(["bash", "-c", f"'{installed_script()}' --show-completion; true"], capture_output=True, text=True, timeout=60)
    assert "_memchat_completion" in shown.stdout, shown.stderr
    database = tmp_path / "where.db"
    assert ok("--db", str(database), "db", "path").stdout == f"{database}\n"


@sqlite_only
def test_the_same_mistake_gets_the_same_words(server):
    thread = new_thread()
    wordings = {fails(2, *args, "--policy", "bogus").stderr.split(" (see")[0] for args in (["new"], ["say", thread, "hi"], ["set", thread])}
    assert wordings == {"memchat: Invalid value for '--policy': 'bogus' is not one of 'window', 'summary'."}


def test_the_global_db_option_after_the_command(memchat, tmp_path):
    elsewhere = tmp_path / "elsewhere.db"
    made = memchat("new", "--title", "there", "--db", str(elsewhere), timeout=60)
    assert made.returncode == 0, made.stderr
    listed = memchat("list", "--json", f"--db={elsewhere}", timeout=60)
    assert [t["title"] for t in json.loads(listed.stdout)] == ["there"]
    said = memchat("say", made.stdout.strip(), "--model", "memchat/echo", "--db", str(elsewhere), "--", "--db is a flag", timeout=60)
    assert said.returncode == 0 and said.stdout.startswith("You said: --db is a flag")


def test_a_thread_remembers_its_endpoint_and_needs_no_key_there(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_BASE", "http://127.0.0.1:9/v1")
    thread = ok("new", "--api-base", server.url).stdout.strip()
    server.reply("from the local server")
    assert ok("say", thread, "hi").stdout == "from the local server\n"
    assert "api base" in ok("set", thread, "--budget", "500").stdout
    refused = fails(2, "set", thread, "--api-base", "http://me:hunter2@127.0.0.1:1/v1")
    assert "password" in refused.stderr and "hunter2" not in refused.stderr
    other = new_thread()
    assert "OPENAI_API_KEY is not set" in fails(5, "say", other, "hi").stderr
    assert ok("say", other, "hi", "--api-base", server.url).stdout == "reply 2\n"


@sqlite_only
def test_continue_the_latest_thread_with_usage_and_the_first_use_is_announced(memchat, tmp_path, monkeypatch, server):
    monkeypatch.delenv("MEMCHAT_DB")
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    made = memchat("new", env=env, timeout=60)
    assert made.returncode == 0 and "created the database" in made.stderr and "memchat db path" in made.stderr
    again = memchat("new", "--title", "latest", env=env, timeout=60)
    assert "created the database" not in again.stderr
    server.reply("continued")
    said = memchat("say", "-c", "go on", "-u", "--no-stream", env=env, timeout=60)
    assert said.returncode == 0 and said.stdout == "continued\n", said.stderr
    assert f"{server.PROMPT_TOKENS} prompt + {server.COMPLETION_TOKENS} completion tokens" in said.stderr
    shown = memchat("show", again.stdout.strip(), env=env, timeout=60)
    assert "go on" in shown.stdout and f"usage of the thread: {server.PROMPT_TOKENS} prompt + {server.COMPLETION_TOKENS} completion" in shown.stdout
    both = memchat("say", "-c", "x", "y", env=env, timeout=60)
    assert both.returncode == 2 and "give the message alone" in both.stderr


def test_a_message_without_a_thread_says_no_thread_is_named_and_stores_nothing(memchat, db_url, server):
    alone = memchat("say", "hello there")
    assert alone.returncode == 3 and alone.stderr.count("\n") == 1, alone.stderr
    assert alone.stderr.startswith("memchat: no thread named: 'hello there' is no thread id")
    for advice in ("`memchat new`", "`memchat chat`", "memchat say -c 'hello there'"):
        assert advice in alone.stderr
    if not db_url.startswith("postgresql"):
        assert not os.path.exists(db_url), "looking for the thread made no database"
    thread = memchat("new").stdout.strip()
    again = memchat("say", "hello there")
    assert again.returncode == 3 and "no thread named" in again.stderr
    without_message = memchat("say", thread)
    assert without_message.returncode == 2 and "no message" in without_message.stderr
    piped = memchat("say", "nothing-here", input="a message on stdin")
    assert piped.returncode == 3 and piped.stderr.startswith("memchat: no thread 'nothing-here'")
    assert [t["message_count"] for t in json.loads(memchat("list", "--json").stdout)] == [0]
    assert server.requests == []


def test_c_takes_the_most_recent_thread_and_names_it_in_show_export_and_undo(memchat, server):
    older = memchat("new", "--title", "older").stdout.strip()
    newer = memchat("new", "--title", "newer").stdout.strip()
    assert memchat("say", older, "about the older one").returncode == 0
    chosen = "the most recent\n"
    said = memchat("say", "-c", "more on it")
    assert said.returncode == 0 and said.stderr == f"memchat: continuing thread {older} (older), {chosen}"
    assert memchat("say", newer, "about the newer one").returncode == 0
    shown = memchat("show", "-c", "--no-pager")
    assert shown.returncode == 0 and "about the newer one" in shown.stdout and "about the older" not in shown.stdout
    assert shown.stderr == f"memchat: showing thread {newer} (newer), {chosen}"
    for args in (["export"], ["export", "-c"]):
        exported = memchat(*args)
        assert exported.returncode == 0 and json.loads(exported.stdout)["id"] == newer, args
        assert exported.stderr == f"memchat: exporting thread {newer} (newer), {chosen}", args
    for args in (["export", newer, "-c"], ["export", "-c", "--all"], ["show", older, "-c"], ["undo", older, "-c"]):
        refused = memchat(*args)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, (args, refused.stderr)
    implicit = memchat("undo")
    assert implicit.returncode == 2 and "-c for the most recent one" in implicit.stderr
    assert "undone" not in memchat("show", newer, "--no-pager").stdout, "undo without -c changed nothing"
    undone = memchat("undo", "-c")
    assert undone.returncode == 0
    assert undone.stderr.splitlines() == [
        f"memchat: undoing the last turn of thread {newer} (newer), the most recent",
        f"memchat: undid the last turn of thread {newer} (#0, #1): kept, and left out of later turns",
    ]
    assert "undone" in memchat("show", newer, "--no-pager").stdout
    assert "undone" not in memchat("show", older, "--no-pager").stdout
    assert "continuing thread" not in memchat("say", older, "named").stderr


@sqlite_only
def test_c_on_a_memory_without_threads_is_not_found_and_makes_no_database(memchat, db_url):
    for args in (["say", "-c", "hi"], ["show", "-c"], ["export"], ["undo", "-c"], ["chat", "-c"]):
        result = memchat(*args)
        assert (result.returncode, result.stderr) == (3, "memchat: no threads yet: `memchat new` starts one\n"), args
    assert not os.path.exists(db_url)


def test_show_last_n_messages(server):
    thread = new_thread()
    for i in range(3):
        ok("say", thread, f"question {i}")
    shown = ok("show", thread, "--last", "2").stdout
    assert "4 earlier messages" in shown and "question 2" in shown and "question 1" not in shown
    assert "#4" in shown and "#5" in shown and "#3" not in shown


@sqlite_only
@pytest.mark.parametrize(
    "url, words",
    [
        ("mysql://u:secretpw@h/x", "SQLite or PostgreSQL, not mysql"),
        ("postgresql://u:secretpw@host:abc/x", "the port must be a number"),
    ],
)
def test_database_urls_memchat_cannot_use_are_bad_input(url, words):
    refused = fails(2, "--db", url, "list")
    assert words in refused.stderr and "secretpw" not in refused.stderr and refused.stderr.count("\n") == 1


def test_unanswered_messages_are_counted_apart_and_noted_once(server):
    thread = new_thread()
    ok("say", thread, "answered")
    server.fail(401, "no")
    fails(5, "say", thread, "lost")
    listed = ok("list").stdout
    assert "3 (1 unanswered)" in listed
    counted = json.loads(ok("list", "--json").stdout)[0]
    assert (counted["message_count"], counted["unfinished_count"]) == (3, 1), "the numbers the table shows"
    first = ok("say", thread, "next")
    assert "earlier message #2 got no reply" in first.stderr
    assert "got no reply" not in ok("say", thread, "and next").stderr


def test_list_titles_threads_from_their_first_message_and_shows_the_n_most_recent(memchat, server):
    older = memchat("new").stdout.strip()
    newer = memchat("new", "--title", "mine").stdout.strip()
    said = memchat("say", older, "What should I pack\nfor Lisbon in May?", "--no-stream")
    assert said.returncode == 0, said.stderr
    table = memchat("list", "-n", "1").stdout.splitlines()
    assert len(table) == 2 and table[1].startswith(older) and " What should I pack for Lisbon i… " in table[1]
    listed = json.loads(memchat("list", "--json", "--last", "2").stdout)
    assert [(t["id"], t["title"]) for t in listed] == [(older, "What should I pack for Lisbon i…"), (newer, "mine")]
    refused = memchat("list", "-n", "0")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and refused.stdout == ""


def test_defaults_set_once_apply_after_options_threads_and_environment(server, monkeypatch, tmp_path):
    import stat

    from memchat import settings

    assert ok("config", "set", "model", "openai/gpt-4o-mini").stderr.startswith("memchat: model is now openai/gpt-4o-mini")
    ok("config", "set", "budget", "700")
    ok("config", "set", "max-tokens", "99")
    assert stat.S_IMODE(settings.path().stat().st_mode) == 0o600
    listed = ok("config", "list").stdout
    assert "openai/gpt-4o-mini" in listed and "700" in listed and "(not set)" in listed
    thread = new_thread()
    ok("say", thread, "hi")
    assert server.requests[-1]["model"] == "gpt-4o-mini" and server.requests[-1]["max_tokens"] == 99
    assert ok("context", thread, "--json").stdout.count('"budget": 700') == 1
    ok("say", thread, "hi", "--model", "openai/gpt-4o", "--max-tokens", "50")
    assert server.requests[-1]["model"] == "gpt-4o" and server.requests[-1]["max_tokens"] == 50
    monkeypatch.setenv("MEMCHAT_MODEL", "openai/gpt-4.1")
    ok("say", thread, "hi")
    assert server.requests[-1]["model"] == "gpt-4.1", "the environment comes before the settings file"
    pinned = new_thread("--model", "openai/gpt-4o", "--budget", "300")
    ok("say", pinned, "hi")
    assert server.requests[-1]["model"] == "gpt-4o"
    assert '"budget": 300' in ok("context", pinned, "--json").stdout
    ok("config", "unset", "budget")
    assert "budget      (not set)" in ok("config", "list").stdout
    assert "unknown setting" in fails(2, "config", "set", "colour", "blue").stderr
    assert "password" in fails(2, "config", "set", "api-base", "http://u:pw@h/v1").stderr
    assert "positive" in fails(2, "config", "set", "budget", "--", "-5").stderr
    assert "whole number" in fails(2, "config", "set", "budget", "many").stderr


def test_the_configured_endpoint_applies_when_the_provider_names_none(server, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_BASE")
    monkeypatch.delenv("OPENAI_API_KEY")
    ok("config", "set", "api-base", server.url)
    thread = new_thread()
    server.reply("via the configured endpoint")
    assert ok("say", thread, "hi").stdout == "via the configured endpoint\n"


def test_list_json_carries_token_and_cost_totals(server):
    used = new_thread()
    idle = new_thread()
    ok("say", used, "one")
    ok("say", used, "two")
    listed = {t["id"]: t["usage"] for t in json.loads(ok("list", "--json").stdout)}
    assert listed[used]["prompt_tokens"] == 2 * server.PROMPT_TOKENS
    assert listed[used]["completion_tokens"] == 2 * server.COMPLETION_TOKENS
    assert listed[used]["cost"] > 0
    assert listed[idle] == {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0, "unknown_cost": 0}


def test_undo_takes_turns_back_and_show_still_shows_them(server):
    thread = new_thread()
    server.reply("Paris.", "Rome.")
    ok("say", thread, "A city?")
    ok("say", thread, "Another?")
    undone = ok("undo", thread)
    assert undone.stdout == "" and "undid the last turn" in undone.stderr and "#2, #3" in undone.stderr
    shown = ok("show", thread, "--no-pager").stdout
    assert "user (undone) · #2" in shown and "assistant (undone) · #3" in shown and "Rome." in shown
    taken = json.loads(ok("undo", thread, "--json").stdout)
    assert [(m["position"], m["status"]) for m in taken] == [(0, "undone"), (1, "undone")]
    nothing = fails(2, "undo", thread)
    assert nothing.stderr.startswith("memchat: nothing to undo") and nothing.stderr.count("\n") == 1
    fails(3, "undo", "nosuchthread")


def test_fork_and_edit_make_new_threads_and_leave_the_original(server):
    thread = new_thread("--system", "Be brief.")
    server.reply("Paris.", "Rome.", "Berlin.")
    ok("say", thread, "A city?")
    ok("say", thread, "Another?")
    forked = ok("fork", thread, "--at", "1")
    fork = forked.stdout.strip()
    assert fork and fork != thread and f"forked thread {thread} at #1" in forked.stderr
    assert f"forked from {thread} at #1" in ok("show", fork, "--no-pager").stdout
    listed = {t["id"]: t for t in json.loads(ok("list", "--json").stdout)}
    assert (listed[fork]["forked_from"], listed[fork]["forked_at"], listed[fork]["message_count"]) == (thread, 1, 2)
    edited = ok("edit", thread, "2", "A big one?", "--no-stream")
    assert edited.stdout == "Berlin.\n" and "asking again in a new thread" in edited.stderr
    assert len(json.loads(ok("list", "--json").stdout)) == 3
    assert "Rome." in ok("show", thread, "--no-pager").stdout
    fails(2, "edit", thread, "1", "x")
    fails(2, "fork", thread, "--at", "9")
    fails(3, "fork", "nosuchthread")


@pytest.mark.slow
def test_commands_that_open_no_database_load_neither_the_database_layer_nor_litellm():
    for args in (["--version"], ["--help"], ["config", "path"], ["chat", "--help"], ["serve", "--help"]):
        shown = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "memchat", *args], capture_output=True, text=True, timeout=120
        )
        assert shown.returncode == 0, shown.stderr
        loaded = {line.rsplit("|", 1)[-1].strip() for line in shown.stderr.splitlines() if line.startswith("import time:")}
        assert not loaded & {"sqlalchemy", "sqlmodel", "litellm", "fastapi"}, args
