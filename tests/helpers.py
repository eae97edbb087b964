"""Small checks shared by the tests."""

import sys
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
