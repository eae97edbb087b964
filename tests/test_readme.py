"""The README's examples that run offline, run as written: the quickstart, the terminal sessions
shown with their output, the Python API example and the OpenAI SDK example (against a real
`memchat serve`, its address put in). Blocks that need a real provider's key, a PostgreSQL host,
a fixed port or an installation (`pip install`, the benchmarks) are not run here; .ci/run runs
the install and the quickstart from a fresh virtual environment."""

import re
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
    printed = shell(script, memchat, tmp_path, timeout=600).split(marker + "\n")[1:]
    assert len(printed) == len(commands)
    for command, shown, expected in zip(commands, printed, outputs):
        assert re.fullmatch(expected_output(expected), shown), (command, shown)


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
