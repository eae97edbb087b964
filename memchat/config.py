"""Where settings come from: explicit argument, then environment, then built-in default."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL = "openai/gpt-4o"
DEFAULT_MAX_TOKENS = 1024
FALLBACK_BUDGET = 8192


def database_url(db: str | None = None) -> str:
    """`--db`, else MEMCHAT_DB, else a file in the user data directory.

    A value containing "://" is an SQLAlchemy URL; anything else is a file path, so users can
    write `--db chat.db` without knowing SQLAlchemy's URL syntax. The default directory is
    memchat's own, so it is created on first use; a directory the user named is not.
    """
    value = db or os.environ.get("MEMCHAT_DB")
    if not value:
        from platformdirs import user_data_dir

        directory = Path(user_data_dir("memchat", appauthor=False))
        directory.mkdir(parents=True, exist_ok=True)
        value = str(directory / "memchat.db")
    if "://" in value:
        return value
    return "sqlite:///" + str(Path(value).expanduser().absolute())


def default_model() -> str:
    return os.environ.get("MEMCHAT_MODEL") or DEFAULT_MODEL


def debug_enabled() -> bool:
    return os.environ.get("MEMCHAT_DEBUG", "") not in ("", "0")
