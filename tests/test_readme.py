"""The README's examples that run offline, run as written: the quickstart, the terminal sessions
shown with their output, the Python API example and the OpenAI SDK example (against a real
`memchat serve`, its address put in). Blocks that need a real provider's key, a PostgreSQL host,
a fixed port or an installation (`pip install`, the benchmarks) are not run here; .ci/run runs
the install and the quickstart from a fresh virtual environment."""

import itertools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import sqlite_only

README = Path(__file__).parent.parent / "README.md"


def fenced_blocks() -> list[tuple[str, str, str]]:
    """The README's fenced blocks in order: (the heading above, the language, the text)."""
    blocks, heading, language, lines = [], "", None, []
    for line in README.read_text().splitlines():
        if language is None:
            if line.startswith("#"):
                heading = line
            elif line.startswith("```"):
                language, lines = line[3:].strip(), []
        elif line == "```":
            blocks.append((heading, language, "\n".join(lines) + "\n"))
            language = None
        else:
            lines.append(line)
    return blocks


def code_blocks(language: str = "") -> list[str]:
    """The text of the blocks opened with ```<language>."""
    return [text for _, kind, text in fenced_blocks() if kind == language]


def block_after(heading: str, language: str) -> str:
    """The first ```<language> block under the heading `heading`."""
    return next(text for above, kind, text in fenced_blocks() if above == heading and kind == language)


def shell(script: str, memchat, tmp_path: Path, timeout: float = 120) -> str:
    """`script` run by bash in `tmp_path`, as a user types it; what it printed."""
    done = memchat.shell(script, cwd=tmp_path, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@sqlite_only
def test_the_quickstart_holds_a_two_turn_conversation_offline(memchat, tmp_path):
    [first_line] = [line for line in code_blocks("sh")[0].splitlines() if "memchat new" in line]
    conversation = first_line.split("pip install . && ", 1)[1]
    said = shell(conversation, memchat, tmp_path)
    assert "the oldest it remembers: 'My name is Ada.'" in said.splitlines()[-1]


def transcripts() -> list[str]:
    """The README's terminal sessions with the echo model: blocks of `$ command` lines, each
    followed by what it prints."""
    return [block for block in code_blocks() if block.startswith("$ ") and "memchat/echo" in block.splitlines()[0]]


def expected_output(lines: list[str]) -> str:
    """A transcript's output as a pattern: a line `…` stands for lines left out, and ids and
    times are whatever this run made."""
    parts = []
    for line in lines:
        if line == "…":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        pattern = re.escape(line)
        pattern = re.sub(r"[0-9a-f]{12}", "[0-9a-f]{12}", pattern)
        pattern = re.sub(r"\d{4}\\-\d\d\\-\d\d\\ \d\d:\d\d", r"\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d", pattern)
        parts.append(pattern + r"\n")
    return "".join(parts)


@sqlite_only
@pytest.mark.timeout(900)
@pytest.mark.parametrize("transcript", transcripts(), ids=["context", "summary-and-recall"])
def test_the_terminal_sessions_print_what_the_readme_shows(transcript, memchat, tmp_path):
    """On a database already made, as the sessions assume (the first command that makes one says
    so on stderr). What is shown does not depend on the backend: one run, on SQLite."""
    from memchat import Memory

    Memory().close()
    commands, outputs = [], []
    for line in transcript.splitlines():
        if line.startswith("$ "):
            commands.append(line[2:])
            outputs.append([])
        else:
            outputs[-1].append(line)
    marker = "::readme-command::"
    script = "\n".join(f"echo '{marker}'\n{command} 2>&1" for command in commands)
    # As a user's shell runs them: model commands after the first go to the background server,
    # which also spares the session loading litellm for each of them.
    background = {"MEMCHAT_DAEMON": "on", "XDG_DATA_HOME": str(tmp_path / "data"), "MEMCHAT_DAEMON_IDLE": "120"}
    try:
        done = memchat.shell(script, cwd=tmp_path, timeout=600, env=background)
    finally:
        memchat.installed("daemon", "stop", env=background)
    assert done.returncode == 0, done.stdout + done.stderr
    printed = done.stdout.split(marker + "\n")[1:]
    assert len(printed) == len(commands)
    for command, shown, expected in zip(commands, printed, outputs):
        assert re.fullmatch(expected_output(expected), shown), (command, shown)


def memchat_commands():
    """memchat's commands as click sees them: a group whose `commands` hold the subcommands."""
    import typer.main

    from memchat.cli import app

    return typer.main.get_command(app)


def command_of(words: list[str], group):
    """The command `words` name (what follows `memchat`), and the words after its name."""
    command = group
    while words and words[0] in getattr(command, "commands", {}):
        command, words = command.commands[words[0]], words[1:]
    return command, words


def option_names(command) -> set[str]:
    return {name for parameter in command.params for name in (*parameter.opts, *parameter.secondary_opts)}


def rows_by_command(group) -> dict:
    """The rows of the README's table of commands, by command: [(a synopsis, its whole row)].
    A row may show several commands (`rename`, `rm`) and a command have several rows (`import`);
    a synopsis that names no command (`[--format json\\|markdown]`) is its row's last command's."""
    after = README.read_text().split("\n| command | what it does |\n", 1)[1].splitlines()
    rows: dict = {}
    for row in list(itertools.takewhile(lambda line: line.startswith("|"), after))[1:]:
        command = None
        for synopsis in re.findall(r"`([^`]+)`", row.split(" | ", 1)[0]):
            words = synopsis.removeprefix("memchat ").split()
            if words[0] in group.commands:
                command, _ = command_of(words, group)
            rows.setdefault(command, []).append((synopsis, row))
    return rows


def invocations(shell_line: str, group):
    """Each memchat command a shell line runs (in `$(...)`, after `do`...): (command, its words)."""
    tokens = list(shlex.shlex(shell_line, posix=True, punctuation_chars=True))
    for start in (index + 1 for index, token in enumerate(tokens) if token == "memchat"):
        words = list(itertools.takewhile(lambda token: token not in {";", ")", ">", "&&", "|"}, tokens[start:]))
        yield command_of(words, group)


def test_the_commands_table_names_only_options_its_commands_take():
    """A synopsis naming an option its command no longer has (or never had) is stale."""
    group = memchat_commands()
    for command, rows in rows_by_command(group).items():
        for synopsis, _ in rows:
            for word in synopsis.split():
                option = word.strip("[]").removesuffix("…")  # `--summary-…` stands for several
                if option.startswith("-") and option != "-":
                    assert any(name.startswith(option) for name in option_names(command)), (synopsis, option)


def test_the_commands_table_lists_the_options_the_terminal_sessions_use():
    """A command's row that lacks an option the README's own sessions use (`context --budget`)
    has fallen behind the command."""
    group = memchat_commands()
    rows = rows_by_command(group)
    for transcript in transcripts():
        for line in (line[2:] for line in transcript.splitlines() if line.startswith("$ ")):
            for command, words in invocations(line, group):
                row_text = " ".join(row for _, row in rows[command])
                for option in (word.split("=", 1)[0] for word in words if word.startswith("--")):
                    assert option in option_names(command), (line, option)
                    assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", row_text), (line, option)


@pytest.mark.parametrize("provider", ["offline", "with a provider's key"])
def test_the_python_api_example_runs_as_written(provider, tmp_path, monkeypatch, capsys, server):
    """In a directory of its own (it opens chat.db there); offline it leaves out recall by
    meaning, which needs an embedding model: with a key, the local provider's."""
    monkeypatch.chdir(tmp_path)
    if provider == "offline":
        monkeypatch.delenv("OPENAI_API_KEY")
    example = block_after("## Python API", "python")
    exec(compile(example, "README.md (Python API)", "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    assert "the oldest it remembers: 'My name is Ada.'" in printed
    assert "Summary so far" in printed  # the summary the small budget made the turn fold
    assert (tmp_path / "chat.db").is_file()
    assert bool(server.embedding_requests) == (provider != "offline")


@sqlite_only
def test_the_openai_sdk_example_talks_to_memchat_serve(served, server, capsys):
    example = block_after("## Serving the memory over HTTP", "python")
    assert 'base_url="http://127.0.0.1:8765/v1"' in example
    example = example.replace("http://127.0.0.1:8765/v1", served.base_url)
    server.reply("Stay in Alfama.", "Take the train.")
    exec(compile(example, "README.md (OpenAI SDK)", "exec"), {"__name__": "readme_example"})
    assert capsys.readouterr().out == "Stay in Alfama.\nTake the train."
    assert server.last_messages[0] == {"role": "system", "content": "You are a concise travel planner."}
    assert server.last_messages[-1] == {"role": "user", "content": "And Porto?"}


@sqlite_only
def test_the_agents_sdk_example_continues_the_sdk_examples_conversation(served, server):
    """In a process of its own, after the OpenAI SDK example whose conversation it takes up: the
    Agents SDK keeps a default client and its settings for the whole process."""
    examples = [
        text for above, kind, text in fenced_blocks() if above == "## Serving the memory over HTTP" and kind == "python"
    ]
    script = "\n".join(examples[:2]).replace("http://127.0.0.1:8765/v1", served.base_url)
    assert "from agents import" in examples[1]
    server.reply("Stay in Alfama.", "Take the train.", "Belém.", "Then Sintra.")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("Then Sintra.\n")
    assert server.last_messages[-3:] == [
        {"role": "user", "content": "Where first?"},
        {"role": "assistant", "content": "Belém."},
        {"role": "user", "content": "And then?"},
    ]
    assert server.last_messages[0] == {"role": "system", "content": "Be brief."}


def test_the_agent_example_runs_a_tool_loop_and_sends_an_image(tmp_path, monkeypatch, capsys, server):
    monkeypatch.chdir(tmp_path)
    server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Paris"}}])
    server.reply("It is sunny in Paris.", "A single pixel.")
    example = block_after("## Agents: tool calls, images and reasoning", "python")
    exec(compile(example, "README.md (Agents)", "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "It is sunny in Paris."
    assert "('function_call', 'get_weather({\"city\": \"Paris\"})')" in printed[1]
    assert "('function_call_output', 'sunny, 21 C in Paris')" in printed[1]
    assert printed[2] == "A single pixel."
    assert [image.media_type for image in server.images_received] == ["image/png"]
