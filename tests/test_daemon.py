"""The background server (memchat/daemon): model commands run by it print, stream, store and
exit as local runs do; it is private to its user, serves one environment, leaves when idle or
stopped, and a dead one is replaced. Every command here is the installed script (the launcher
decides), and the servers are real processes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import termios
import time
from pathlib import Path

import pexpect
import pytest
from helpers import sqlite_only

pytestmark = sqlite_only  # what is checked is the process mechanism; the database is any


def wait_for(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("the awaited event did not happen")
        time.sleep(0.05)
    return found


class Background:
    """The test's data directory, where its servers live, and ways to look at them."""

    def __init__(self, memchat, folder: Path):
        self.memchat = memchat
        self.folder = folder

    @property
    def log(self) -> str:
        path = self.folder / "daemon.log"
        return path.read_text() if path.exists() else ""

    def loaded(self, count: int = 1) -> None:
        """Until `count` servers have loaded (each says so in the log)."""
        wait_for(lambda: self.log.count(" loaded in ") >= count, 90)

    def commands_served(self) -> int:
        return self.log.count(" ended (")

    def status(self) -> list[dict]:
        result = self.memchat.installed("daemon", "status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def pids(self) -> list[int]:
        """Every server process of this data directory, loaded or not."""
        found = subprocess.run(["pgrep", "-f", f"memchat.daemon.server {self.folder}"], capture_output=True, text=True)
        return [int(pid) for pid in found.stdout.split()]


@pytest.fixture
def background(memchat, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("MEMCHAT_DAEMON", "on")
    monkeypatch.setenv("MEMCHAT_DAEMON_IDLE", "120")
    running = Background(memchat, tmp_path / "data" / "memchat" / "daemon")
    yield running
    memchat.installed("daemon", "stop")
    for pid in running.pids():
        os.kill(pid, signal.SIGKILL)


def say(memchat, *args, **options):
    return memchat.installed("say", *args, "--no-stream", **options)


def test_turns_through_the_server_print_store_and_fail_as_local_ones(memchat, server, background):
    thread = memchat.installed("new").stdout.strip()
    server.reply("first, run here")
    first = say(memchat, thread, "one")
    assert (first.returncode, first.stdout) == (0, "first, run here\n")
    background.loaded()
    assert background.commands_served() == 0, "the first command ran in its own process"

    server.reply("second, run by the server")
    second = say(memchat, thread, "two")
    assert (second.returncode, second.stdout, second.stderr) == (0, "second, run by the server\n", "")
    assert background.commands_served() == 1
    assert server.last_messages[-1] == {"role": "user", "content": "two"}
    assert [m["content"] for m in server.last_messages] == ["one", "first, run here", "two"]

    server.reply("a long one")
    long = " ".join(["a long message of many words"] * 4000)  # 116 KB: larger than one socket write
    assert say(memchat, thread, long).stdout == "a long one\n"
    assert server.last_messages[-1] == {"role": "user", "content": long}
    undone = memchat.installed("undo", thread)
    assert undone.returncode == 0, undone.stderr

    server.reply("piped and streamed")
    piped = memchat.installed("say", "-c", "--stream", input="from stdin\n")
    assert piped.returncode == 0 and piped.stdout == "piped and streamed\n"
    assert piped.stderr == f"memchat: continuing thread {thread} (one), the most recent\n"
    assert server.last_messages[-1] == {"role": "user", "content": "from stdin"}

    for args in (["say", "no-such-thread", "hi"], ["say", thread], ["retry", thread], ["context", thread, "--json"]):
        remote = memchat.installed(*args)
        local = memchat.installed(*args, env={"MEMCHAT_DAEMON": "off"})
        assert (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)
    assert background.commands_served() == 7
    shown = json.loads(memchat.installed("show", thread, "--json").stdout)["messages"]
    assert [m["content"] for m in shown if m["status"] != "undone"] == [
        "one",
        "first, run here",
        "two",
        "second, run by the server",
        "from stdin",
        "piped and streamed",
    ]
    listed = memchat.installed("list")
    assert listed.returncode == 0 and background.commands_served() == 7, "a command without a model stays local"


def test_the_server_is_private_and_keeps_no_key(memchat, server, background):
    thread = memchat.installed("new").stdout.strip()
    say(memchat, thread, "hello")
    background.loaded()
    folder = background.folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
    sockets = list(folder.glob("*.sock"))
    assert len(sockets) == 1 and stat.S_ISSOCK(sockets[0].stat().st_mode)
    assert stat.S_IMODE(sockets[0].stat().st_mode) == 0o600
    for path in folder.iterdir():
        if not stat.S_ISSOCK(path.stat().st_mode):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
            assert b"sk-test" not in path.read_bytes(), f"the provider key is in {path.name}"
    [described] = background.status()
    assert described["current"] is True and described["idle_seconds"] == 120
    command_line = Path(f"/proc/{described['pid']}/cmdline").read_bytes()
    assert b"sk-test" not in command_line


def test_another_environment_gets_another_server_and_the_first_is_not_used(memchat, server, background):
    thread = memchat.installed("new").stdout.strip()
    say(memchat, thread, "hello")
    background.loaded()
    server.reply("answered with the other key")
    other = say(memchat, thread, "again", env={"OPENAI_API_KEY": "sk-other"})
    assert other.returncode == 0 and other.stdout == "answered with the other key\n"
    assert background.commands_served() == 0, "the server of the first environment did not run it"
    background.loaded(2)
    assert len(background.pids()) == 2
    kinds = sorted(s["current"] for s in background.status())
    assert kinds == [False, True]
    assert "stopped 2 background servers" in memchat.installed("daemon", "stop").stdout
    wait_for(lambda: background.pids() == [])
    assert background.status() == []
    assert list(background.folder.glob("*.sock")) == []


@pytest.mark.parametrize("number, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"])
def test_a_signal_to_the_client_ends_the_turn_as_locally(memchat, server, background, memory, number, code):
    """The signal reaches the command through its client: the partial reply is kept, the lease
    released, the exit code the signal's; a client killed outright takes its command along."""
    thread = memory.new_thread()
    say(memchat, thread.id, "warm up")
    background.loaded()
    server.reply(" ".join(f"word{i}" for i in range(200)))
    server.piece_delay = 0.05
    process = memchat.start("say", thread.id, "long answer please", "--stream")
    assert process.stdout.read(5) == "word0"
    process.send_signal(number)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code
    assert err.startswith("memchat: ") and err.count("\n") == 1
    assert ": interrupted (the partial reply is kept: " in err
    assert background.commands_served() == 1
    (*_, user, partial) = memory.messages(thread.id)
    assert (user.status, partial.status) == ("failed", "partial") and partial.content.startswith("word0")
    assert not memory.turn_in_progress(thread.id)

    server.reply(" ".join(f"word{i}" for i in range(200)))
    victim = memchat.start("say", thread.id, "and now?", "--stream")
    assert victim.stdout.read(5) == "word0"
    victim.kill()
    victim.wait()
    wait_for(lambda: background.commands_served() == 2, 30)
    assert background.status()[0]["running"] == 0, "the command went with its client"


def test_a_killed_server_is_replaced_and_racing_commands_start_one(memchat, server, background):
    thread = memchat.installed("new").stdout.strip()
    say(memchat, thread, "hello")
    background.loaded()
    [pid] = background.pids()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: background.pids() == [])
    assert len(list(background.folder.glob("*.sock"))) == 1, "a killed server leaves its socket"
    server.reply("still answered")
    after = say(memchat, thread, "are you there?")
    assert (after.returncode, after.stdout) == (0, "still answered\n")
    background.loaded(2)
    [replacement] = background.pids()
    assert replacement != pid
    memchat.installed("daemon", "stop")

    racing = [memchat.start("say", thread, f"race {i}", "--no-stream") for i in range(3)]
    assert [process.wait(timeout=120) for process in racing] == [0, 0, 0]
    background.loaded(3)
    time.sleep(1)
    assert len(background.pids()) == 1, "one server for racing commands"


def test_an_idle_server_leaves_and_the_mechanism_can_be_turned_off(memchat, server, background, monkeypatch):
    monkeypatch.setenv("MEMCHAT_DAEMON_IDLE", "2")
    thread = memchat.installed("new").stdout.strip()
    say(memchat, thread, "hello")
    background.loaded()
    # Asking for its status is no activity: it leaves all the same.
    wait_for(lambda: background.status() is not None and "leaves: idle for 2 s" in background.log, 30)
    wait_for(lambda: background.pids() == [])
    assert list(background.folder.glob("*.sock")) == []

    for off in ({"MEMCHAT_DAEMON": "off"}, {"MEMCHAT_DAEMON": "0"}):
        assert say(memchat, thread, "quiet", env=off).returncode == 0
    monkeypatch.delenv("MEMCHAT_DAEMON")
    assert "daemon is now off" in memchat.installed("config", "set", "daemon", "off").stderr
    assert say(memchat, thread, "still quiet").returncode == 0
    time.sleep(0.5)
    assert background.pids() == [] and background.log.count(" started ") == 1
    refused = memchat.installed("config", "set", "daemon", "sometimes")
    assert refused.returncode == 2 and "on or off" in refused.stderr


def test_new_code_on_the_path_means_a_new_server(memchat, server, background, tmp_path, monkeypatch):
    """An install or upgrade changes a site directory: the server started before it leaves, and
    the next command does not use it."""
    packages = tmp_path / "site-packages"
    packages.mkdir()
    monkeypatch.setenv("PYTHONPATH", f"{packages}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    thread = memchat.installed("new").stdout.strip()
    say(memchat, thread, "hello")
    background.loaded()
    assert say(memchat, thread, "served").returncode == 0 and background.commands_served() == 1
    (packages / "newly_installed").mkdir()
    assert say(memchat, thread, "after the upgrade").returncode == 0
    assert background.commands_served() == 1, "the old server was not used"
    wait_for(lambda: "leaves: the installed code changed" in background.log, 30)


def test_chat_through_the_server_in_a_terminal(memchat, memchat_script, server, background, monkeypatch):
    """The session's terminal is the client's: the line editor takes it (raw mode) from the
    server's fork, and gives it back."""
    for name, value in (("TERM", "xterm"), ("NO_COLOR", "1"), ("PROMPT_TOOLKIT_NO_CPR", "1")):
        monkeypatch.setenv(name, value)
    thread = memchat.installed("new").stdout.strip()
    say(memchat, thread, "hello")
    background.loaded()
    server.reply("hi from the chat")
    session = pexpect.spawn(
        memchat_script, ["chat", thread], env=dict(os.environ), encoding="utf-8", timeout=30, dimensions=(40, 200)
    )
    session.expect(f"chat on thread {thread}")
    ready(session)
    session.sendline("hello chat")
    session.expect_exact("hi from the chat")
    ready(session)
    session.sendeof()
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0
    assert background.commands_served() == 1, "the chat ran in the server's fork"
    assert server.last_messages[-1] == {"role": "user", "content": "hello chat"}


def ready(child: pexpect.spawn) -> None:
    """The line editor waits for input: the terminal is in raw mode, echo and signals off."""
    wait_for(lambda: not termios.tcgetattr(child.child_fd)[3] & (termios.ECHO | termios.ISIG), 60)


def test_a_server_killed_mid_turn_is_a_turn_killed_mid_call(memchat, server, background, memory):
    thread = memory.new_thread()
    say(memchat, thread.id, "warm up")
    background.loaded()
    server.reply_delay = 30
    victim = memchat.start("say", thread.id, "lost in flight?", "--no-stream")
    wait_for(lambda: len(server.arrivals) == 2)
    killed = background.pids()  # the server, the command's watcher and the command itself
    assert len(killed) == 3
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    _, err = victim.communicate(timeout=30)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in killed))  # reaped, by init
    assert victim.returncode == 137
    assert err.startswith("memchat: the background server stopped during the command") and err.count("\n") == 1
    server.reply_delay = 0
    assert "user (interrupted)" in memchat.installed("show", thread.id).stdout
    server.reply("answered at last")
    again = memchat.installed("retry", thread.id, "--no-stream")
    assert again.returncode == 0 and again.stdout == "answered at last\n"


def test_ctrl_z_stops_the_command_with_its_client(memchat, server, background, memory):
    thread = memory.new_thread()
    say(memchat, thread.id, "warm up")
    background.loaded()
    server.reply(" ".join(f"word{i}" for i in range(60)))
    server.piece_delay = 0.05
    # Its own process group under this one, as a shell runs a job: a stop signal to a process of
    # an orphaned group (as the suite's may be, started from a script) is discarded by the kernel.
    process = memchat.start("say", thread.id, "long answer please", "--stream", process_group=0)
    assert process.stdout.read(5) == "word0"
    process.send_signal(signal.SIGTSTP)
    wait_for(lambda: Path(f"/proc/{process.pid}/stat").read_text().split(")")[1].split()[0] == "T", 10)
    states = lambda: [Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] for pid in background.pids()]  # noqa: E731
    wait_for(lambda: states().count("T") == 1, 10)  # the command, beside its server and watcher
    process.send_signal(signal.SIGCONT)
    out, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (0, "")
    assert out.rstrip().endswith("word58 word59"), "the whole reply came, after the pause"


@pytest.mark.parametrize("leaving", ["daemon stop", "kill -9 of the server alone"])
def test_a_command_running_when_its_server_leaves_ends_as_it_ended(memchat, server, background, memory, leaving):
    """A server that leaves (stopped, its code changed, or killed without the processes of its
    commands) lets its running commands finish, and their clients exit as the commands did."""
    thread = memory.new_thread()
    say(memchat, thread.id, "warm up")
    background.loaded()
    [pid] = background.pids()
    server.reply(" ".join(f"word{i}" for i in range(60)))
    server.piece_delay = 0.05
    process = memchat.start("say", thread.id, "long answer please", "--stream")
    assert process.stdout.read(5) == "word0"
    if leaving == "daemon stop":
        assert "stopped 1 background server" in memchat.installed("daemon", "stop").stdout
    else:
        os.kill(pid, signal.SIGKILL)
    out, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (0, "")
    assert out.rstrip().endswith("word58 word59")
    assert [m.status for m in memory.messages(thread.id)][-2:] == ["complete", "complete"]
    assert "Traceback" not in background.log


def test_a_command_with_a_closed_stream_is_not_handed_its_connection(memchat, server, background):
    """stdin, stdout or stderr closed (`<&-`, `>&-`): the command gets /dev/null for it, not the
    client's connection to the server, which would be the descriptor free for it."""
    thread = memchat.installed("new").stdout.strip()
    assert memchat.shell(f"memchat say {thread} hello --no-stream").returncode == 0
    background.loaded()
    server.echo = True
    closed = memchat.shell(f"memchat say {thread} 'no stdin' --no-stream <&-", timeout=60)
    assert (closed.returncode, closed.stdout, closed.stderr) == (0, "re: no stdin\n", "")
    closed = memchat.shell(f"memchat say {thread} 'no stdout' --no-stream >&-; echo $? >&2", timeout=60)
    assert (closed.stdout, closed.stderr) == ("", "0\n")
    closed = memchat.shell("memchat say no-such-thread hi 2>&-; echo $?", timeout=60)
    assert (closed.stdout, closed.stderr) == ("3\n", "")
    assert background.commands_served() == 3
    assert [m["content"] for m in server.last_messages][-3:] == ["no stdin", "re: no stdin", "no stdout"]


def test_a_client_interrupted_before_its_command_began_runs_nothing(memchat, server, background, memory):
    """Ctrl-C while the server has not yet forked the command (it loads for seconds; here it is
    held stopped): the client ends as a local command interrupted before its turn, and the server
    runs nothing of it."""
    thread = memory.new_thread()
    say(memchat, thread.id, "warm up")
    background.loaded()
    [pid] = background.pids()
    os.kill(pid, signal.SIGSTOP)
    try:
        waiting = memchat.start("say", thread.id, "never mind", "--no-stream")
        time.sleep(1)
        waiting.send_signal(signal.SIGINT)
        waiting.wait(timeout=30)
    finally:
        os.kill(pid, signal.SIGCONT)  # its output pipes are in the request the server holds until then
    out, err = waiting.communicate(timeout=30)
    assert (waiting.returncode, out, err) == (130, "", "memchat: interrupted\n")
    server.reply("still serving")
    assert say(memchat, thread.id, "and now?").stdout == "still serving\n"
    assert background.commands_served() == 1
    assert [m.content for m in memory.messages(thread.id)][-2:] == ["and now?", "still serving"]
