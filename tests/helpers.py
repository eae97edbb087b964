"""Small checks shared by the tests."""

import pytest

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
"""For tests of what no database backend changes (pure policy, argument parsing, files): they
run once, on SQLite, instead of once per backend."""


def quiet(stderr: str) -> bool:
    """Nothing from memchat on stderr (a library's warning is not memchat's to answer for)."""
    return "memchat:" not in stderr and "Traceback" not in stderr
