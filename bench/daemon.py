"""The background server (`memchat.daemon`), issue 27's three figures, whole processes in one run
against a local OpenAI-protocol provider, medians of 9 taken in interleaved rounds:

1. `memchat say THREAD "..." --no-stream` with its server warm against `llm -c "..."` (llm 0.36,
   from the bench extra), both continuing the same 10-message history on the same provider.
   Target: memchat <= 0.5x llm.
2. The first `memchat say` (no server running: it runs here and starts one) against the local say
   (MEMCHAT_DAEMON=off). Target: <= 1.1x.
3. `memchat chat THREAD` with its server warm, in a pseudo-terminal: from its start until the
   line editor has taken the terminal, and the peak resident memory of the process started.
   Targets: <= 0.3 s and <= 80 MiB.

Everything runs in a temporary data directory, database and settings file, with one environment
(the terminal's variables included), so every command finds the same server.

    python bench/daemon.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from common import ROOT, conversation, export_file, machine, memchat_command, run, table

sys.path.insert(0, str(ROOT / "tests"))
from fake_openai import FakeOpenAI  # noqa: E402

RUNS = 9
WARMUP = 3
HISTORY = 10
QUESTION = "and then?"
LLM_MODEL = "bench-gpt-4o"
IDLE_SECONDS = "300"
SAY_TARGET = 0.5
FIRST_SAY_TARGET = 1.1
READY_TARGET_SECONDS = 0.3
MEMORY_TARGET_MIB = 80


class Bench:
    """The run's provider, files and environment, and the commands the figures time."""

    def __init__(self, folder: Path, provider: FakeOpenAI):
        self.folder = folder
        self.provider = provider
        self.servers = folder / "data" / "memchat" / "daemon"
        self.llm_dir = folder / "llm"
        self.llm_dir.mkdir()
        self.env = {
            **os.environ,
            "OPENAI_API_BASE": provider.url,
            "OPENAI_BASE_URL": provider.url,
            "OPENAI_API_KEY": "sk-bench",
            "XDG_DATA_HOME": str(folder / "data"),
            "MEMCHAT_DB": str(folder / "memchat.db"),
            "MEMCHAT_CONFIG": str(folder / "config.json"),
            "MEMCHAT_DAEMON": "on",
            "MEMCHAT_DAEMON_IDLE": IDLE_SECONDS,
            "LLM_USER_PATH": str(self.llm_dir),
            "TERM": "xterm",
            "NO_COLOR": "1",
            "PROMPT_TOOLKIT_NO_CPR": "1",
        }
        self.env.pop("MEMCHAT_SERVER", None)
        self.local_env = {**self.env, "MEMCHAT_DAEMON": "off"}
        self.llm = str(Path(sys.executable).parent / "llm")
        self.llm_log = self.llm_dir / "logs.db"
        self.llm_pristine = folder / "llm-logs.db"
        self.thread = ""

    # ---- the histories --------------------------------------------------------------------

    def histories(self) -> None:
        """The same 10 messages in both tools: imported into memchat, and told to llm turn by
        turn (the provider answering each prompt with the conversation's reply), whose log is
        then kept aside and put back before each `llm -c`, as memchat's turn is undone."""
        chat = conversation(HISTORY)
        path = export_file(self.folder / "history.json", HISTORY, chat=chat)
        self.thread = run(memchat_command() + ["import", str(path)], env=self.local_env).stdout.strip()
        shown = json.loads(run(memchat_command() + ["show", self.thread, "--json"], env=self.local_env).stdout)
        assert len(shown["messages"]) == HISTORY, f"memchat's thread holds {len(shown['messages'])} messages"

        (self.llm_dir / "extra-openai-models.yaml").write_text(
            f"- model_id: {LLM_MODEL}\n  model_name: gpt-4o\n  api_base: {self.provider.url}\n"
        )
        run([self.llm, "models", "default", LLM_MODEL], env=self.env)
        for index in range(0, HISTORY, 2):
            self.provider.reply(chat[index + 1]["content"])
            run([self.llm, *([] if index == 0 else ["-c"]), chat[index]["content"]], env=self.env)
        logs = sqlite3.connect(self.llm_log)
        messages = logs.execute("select count(*) from messages").fetchone()[0]
        threads = logs.execute("select count(*) from threads").fetchone()[0]
        logs.close()
        assert (messages, threads) == (HISTORY, 1), f"llm's log holds {messages} messages in {threads} threads"
        assert not list(self.llm_dir.glob("logs.db-*")), "llm's log has a journal beside it: copying it is not enough"
        shutil.copyfile(self.llm_log, self.llm_pristine)

    # ---- the commands ---------------------------------------------------------------------

    def say(self, env: dict) -> float:
        """One `memchat say` on the thread, timed, then undone (untimed), so the next one
        continues the same 10 messages."""
        started = time.perf_counter()
        subprocess.run(
            memchat_command() + ["say", self.thread, QUESTION, "--no-stream"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        elapsed = time.perf_counter() - started
        run(memchat_command() + ["undo", self.thread], env=self.local_env)
        return elapsed

    def llm_continue(self) -> float:
        """One `llm -c`, timed, on the log as it was after the 10 messages."""
        shutil.copyfile(self.llm_pristine, self.llm_log)
        started = time.perf_counter()
        subprocess.run(
            [self.llm, "-c", QUESTION], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env
        )
        return time.perf_counter() - started

    def chat_ready(self) -> tuple[float, dict[str, float]]:
        """`memchat chat THREAD` in a pseudo-terminal: seconds until the line editor has put the
        terminal in raw mode (echo and signals off), and the memory (MiB) of the process
        started and of the command the server forked for it, read while it waits at the prompt."""
        import pexpect

        command = memchat_command()
        started = time.perf_counter()
        child = pexpect.spawn(
            command[0],
            [*command[1:], "chat", self.thread],
            env=self.env,
            encoding="utf-8",
            timeout=60,
            dimensions=(40, 200),
        )
        try:
            deadline = started + 60
            while termios.tcgetattr(child.child_fd)[3] & (termios.ECHO | termios.ISIG):
                if time.perf_counter() > deadline:
                    raise TimeoutError("the line editor did not take the terminal within 60 s")
                time.sleep(0.001)
            ready = time.perf_counter() - started
            memory = {"client peak": _status_mib(child.pid, "VmHWM")}
            forked = self.command_process()
            if forked is not None:
                memory["command resident"] = _status_mib(forked, "VmRSS")
                memory["command proportional"] = _rollup_mib(forked, "Pss")
            child.sendeof()
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
        return ready, memory

    # ---- the servers ----------------------------------------------------------------------

    def server_pids(self) -> dict[int, int]:
        """Every process of this data directory's servers (a server, its watchers and the
        commands they forked share its command line), each with its parent's pid."""
        found = subprocess.run(["pgrep", "-f", f"memchat.daemon.server {self.servers}"], capture_output=True, text=True)
        parents = {}
        for pid in map(int, found.stdout.split()):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            parents[pid] = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))
        return parents

    def command_process(self) -> int | None:
        """The command a server forked (server, watcher, command: the one two forks down)."""
        parents = self.server_pids()
        forked = [pid for pid, parent in parents.items() if parent in parents and parents[parent] in parents]
        return forked[0] if len(forked) == 1 else None

    def stop_servers(self) -> None:
        """`memchat daemon stop`, then until no process of this data directory's servers is
        left (one that had not taken its lock yet is sent SIGTERM, then SIGKILL)."""
        run(memchat_command() + ["daemon", "stop"], env=self.env)
        begun = time.monotonic()
        while pids := self.server_pids():
            waited = time.monotonic() - begun
            if waited > 2:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL if waited > 10 else signal.SIGTERM)
                    except ProcessLookupError:
                        continue
            time.sleep(0.02)

    def loaded_servers(self) -> int:
        log = self.servers / "daemon.log"
        return log.read_text().count(" loaded in ") if log.exists() else 0

    def commands_served(self) -> int:
        log = self.servers / "daemon.log"
        return log.read_text().count(" ended (") if log.exists() else 0

    def last_command_seconds(self) -> float:
        """How long the last command took in the server, from its fork to its exit (its log)."""
        return float(re.findall(r" ended \(-?\d+\) in ([\d.]+) s", (self.servers / "daemon.log").read_text())[-1])

    def warm_server(self) -> float:
        """A server started by a say and loaded, then a few commands through it (it imports what
        they imported on their way, `_learn`): its load time in seconds, as its log says."""
        before = self.loaded_servers()
        self.say(self.env)
        deadline = time.monotonic() + 120
        while self.loaded_servers() == before:
            if time.monotonic() > deadline:
                raise TimeoutError("the background server did not load within 120 s")
            time.sleep(0.05)
        served = self.commands_served()
        for _ in range(WARMUP):
            self.say(self.env)
            self.chat_ready()
        assert self.commands_served() == served + 2 * WARMUP, "the warm-up did not go through the server"
        loads = re.findall(r" loaded in ([\d.]+) s", (self.servers / "daemon.log").read_text())
        return float(loads[-1])


def _status_mib(pid: int, field: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1)) / 1024


def _rollup_mib(pid: int, field: str) -> float:
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", rollup, re.M).group(1)) / 1024


def _sent(provider: FakeOpenAI, since: int) -> list[dict]:
    """The messages of the one request made since `since`, as role and content."""
    assert len(provider.requests) == since + 1, f"{len(provider.requests) - since} requests instead of one"
    return [(message["role"], message["content"]) for message in provider.last_messages]


def warm(bench: Bench) -> tuple[dict[str, list[float]], dict[str, int], list[dict[str, float]]]:
    """Figures 1 and 3, interleaved: each round a warm say, an `llm -c` (their order alternating)
    and a chat session started. The say and `llm -c` of the first round must send the same
    messages: the 10 of the history and the question."""
    timings: dict[str, list[float]] = {"memchat": [], "in the server": [], "llm": [], "chat": []}
    sent: dict[str, list] = {}
    memory: list[dict[str, float]] = []
    served = bench.commands_served()
    for round_ in range(RUNS):
        for tool in ("memchat", "llm") if round_ % 2 == 0 else ("llm", "memchat"):
            requests = len(bench.provider.requests)
            timings[tool].append(bench.say(bench.env) if tool == "memchat" else bench.llm_continue())
            sent.setdefault(tool, _sent(bench.provider, requests))
            if tool == "memchat":
                timings["in the server"].append(bench.last_command_seconds())
        ready, used = bench.chat_ready()
        timings["chat"].append(ready)
        memory.append(used)
    assert bench.commands_served() == served + 2 * RUNS, "a measured command did not go through the server"
    assert sent["memchat"] == sent["llm"] and len(sent["llm"]) == HISTORY + 1, "the two tools sent different messages"
    return timings, {tool: len(messages) for tool, messages in sent.items()}, memory


def cold(bench: Bench) -> dict[str, list[float]]:
    """Figure 2, interleaved: each round the first say (no server of this data directory left,
    the one it starts stopped and gone before anything else runs) and the local say."""
    timings: dict[str, list[float]] = {"first": [], "local": []}
    bench.stop_servers()
    for round_ in range(RUNS):
        for kind in ("first", "local") if round_ % 2 == 0 else ("local", "first"):
            served = bench.commands_served()
            timings[kind].append(bench.say(bench.env if kind == "first" else bench.local_env))
            assert bench.commands_served() == served, "a cold say went through a server"
            bench.stop_servers()
    return timings


def main() -> str:
    provider = FakeOpenAI()
    try:
        with tempfile.TemporaryDirectory() as folder:
            bench = Bench(Path(folder), provider)
            try:
                bench.histories()
                load = bench.warm_server()
                warm_timings, sent, memory = warm(bench)
                cold_timings = cold(bench)
            finally:
                bench.stop_servers()
    finally:
        provider.close()
    return _report(load, warm_timings, sent, memory, cold_timings)


def _report(load, warm_timings, sent, memory, cold_timings) -> str:
    median = {name: statistics.median(values) * 1000 for name, values in {**warm_timings, **cold_timings}.items()}
    ratio = median["memchat"] / median["llm"]
    first = median["first"] / median["local"]
    ready = median["chat"]
    peak = max(used["client peak"] for used in memory)

    def verdict(met: bool) -> str:
        return "met" if met else "**not met**"

    def spread(name: str) -> str:
        values = (warm_timings | cold_timings)[name]
        return f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f}"

    say = table(
        f"A `say` turn on a 10-message history, whole process, memchat's server warm (median of {RUNS}, interleaved; a local provider)",
        ["command", "ms", "range ms", "messages sent", "vs llm -c"],
        [
            [
                f'memchat say THREAD "{QUESTION}" --no-stream',
                f"{median['memchat']:.0f}",
                spread("memchat"),
                sent["memchat"],
                f"{ratio:.2f}",
            ],
            [
                "of which the command in the server (fork to exit, its log)",
                f"{median['in the server']:.0f}",
                spread("in the server"),
                "-",
                "-",
            ],
            [f'llm -c "{QUESTION}" (llm 0.36)', f"{median['llm']:.0f}", spread("llm"), sent["llm"], "1.00"],
        ],
    )
    say += f"\n- memchat say (warm server) vs llm -c: {ratio:.2f}x (target <= {SAY_TARGET}x: {verdict(ratio <= SAY_TARGET)})\n"
    first_say = table(
        f"The first `memchat say` (no server running: it starts one) and the local say (median of {RUNS}, interleaved)",
        ["command", "ms", "range ms", "vs local say"],
        [
            [
                "memchat say, no server yet (runs here, starts one)",
                f"{median['first']:.0f}",
                spread("first"),
                f"{first:.2f}",
            ],
            ["MEMCHAT_DAEMON=off memchat say (local)", f"{median['local']:.0f}", spread("local"), "1.00"],
        ],
    )
    first_say += (
        f"\n- first say vs local say: {first:.2f}x (target <= {FIRST_SAY_TARGET}x: {verdict(first <= FIRST_SAY_TARGET)})\n"
        f"- the server then loads in the background: {load:.1f} s (its log)\n"
    )
    rows = [
        [
            "ready to type (spawned until the line editor has the terminal), ms",
            f"{ready:.0f}",
            spread("chat"),
            f"<= {READY_TARGET_SECONDS * 1000:.0f}",
        ],
        [
            "the process started (the client), peak resident MiB (VmHWM)",
            f"{peak:.1f}",
            f"{min(used['client peak'] for used in memory):.1f}-{peak:.1f}",
            f"<= {MEMORY_TARGET_MIB}",
        ],
    ]
    if all("command resident" in used for used in memory):
        rows += [
            [
                "the command the server forked, resident MiB (shared with the server)",
                f"{statistics.median(used['command resident'] for used in memory):.1f}",
                "-",
                "-",
            ],
            [
                "the command the server forked, proportional MiB (PSS)",
                f"{statistics.median(used['command proportional'] for used in memory):.1f}",
                "-",
                "-",
            ],
        ]
    chat = table(
        f"`memchat chat THREAD` with its server warm, in a pseudo-terminal (median of {RUNS})",
        ["", "value", "range", "target"],
        rows,
    )
    chat += (
        f"\n- ready to type: {ready / 1000:.3f} s (target <= {READY_TARGET_SECONDS} s: "
        f"{verdict(ready / 1000 <= READY_TARGET_SECONDS)}); the client's peak memory: {peak:.1f} MiB "
        f"(target <= {MEMORY_TARGET_MIB} MiB: {verdict(peak <= MEMORY_TARGET_MIB)})\n"
    )
    return say + "\n" + first_say + "\n" + chat


if __name__ == "__main__":
    print(f"Machine: {machine()}.\n")
    print(main())
