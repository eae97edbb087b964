"""Small checks shared by the tests."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sqlite_only = pytest.mark.sqlite_only
"""For tests of what no database backend changes (argument parsing, files, terminals) that still
open a database: they run once, on SQLite, instead of once per backend. A test that opens no
database runs once without it."""


def installed_script() -> str:
    """The `memchat` console script installed beside this Python."""
    candidate = Path(sys.executable).parent / "memchat"
    if not candidate.exists():
        pytest.fail(f"the memchat script is not installed beside {sys.executable}: pip install '.[test]' first")
    return str(candidate)


def quiet(stderr: str) -> bool:
    """Nothing from memchat on stderr (a library's warning is not memchat's to answer for)."""
    return "memchat:" not in stderr and "Traceback" not in stderr


class ConnectionAttempts:
    """Connections this process tried to open to one port, counted while watched."""

    def __init__(self, port: int):
        self.port = port
        self.count = 0


_watching: list[ConnectionAttempts] = []
_hooks_added: list = []


def _count_connects(event: str, args: tuple) -> None:
    if event != "socket.connect" or not isinstance(args[1], tuple) or len(args[1]) < 2:
        return
    for attempts in _watching:
        if args[1][1] == attempts.port:
            attempts.count += 1


@contextmanager
def connection_attempts(port: int) -> Iterator[ConnectionAttempts]:
    """Counts the connections this process tries to open to `port` (any address) while the block
    runs, by Python's own audit event for every socket connect. An audit hook stays for the life
    of the process, so one hook, added on first use, serves every test that asks."""
    if _count_connects not in _hooks_added:
        sys.addaudithook(_count_connects)
        _hooks_added.append(_count_connects)
    attempts = ConnectionAttempts(port)
    _watching.append(attempts)
    try:
        yield attempts
    finally:
        _watching.remove(attempts)

