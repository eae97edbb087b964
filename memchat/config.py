"""Where settings come from: explicit argument, then environment, then built-in default."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL = "openai/gpt-4o"
DEFAULT_MAX_TOKENS = 1024
MAX_REPLY_TOKENS = 1_000_000
MAX_TEMPERATURE = 2.0
"""OpenAI's bounds on a turn's sampling settings (no model writes a million tokens in one reply);
the CLI's options and every request body share them (`storage.models.TurnSettings`)."""
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
        private_directory(directory)
        value = str(directory / "memchat.db")
    if "://" in value:
        return value
    return "sqlite:///" + str(Path(value).expanduser().absolute())


def memchat_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("memchat")
    except PackageNotFoundError:
        return "unknown"


def private_directory(directory: Path) -> None:
    """memchat's own data directory, readable by its owner only (0700), as ssh and llm keep
    theirs: conversations are private. One created looser by an older memchat is tightened."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if directory.stat().st_mode & 0o077:
        os.chmod(directory, 0o700)


DEFAULT_IMPORT_LIMIT_MIB = 1024


def import_limit_bytes() -> int:
    """The largest import accepted (MEMCHAT_IMPORT_MAX_MIB, default 1 GiB): an import is
    validated whole before anything is written, so it is held in memory whole."""
    value = os.environ.get("MEMCHAT_IMPORT_MAX_MIB", "")
    mib = int(value) if value.isdigit() and int(value) > 0 else DEFAULT_IMPORT_LIMIT_MIB
    return mib * 2**20


def default_model() -> str:
    """MEMCHAT_MODEL, else the user's `memchat config set model`, else openai/gpt-4o."""
    from memchat import settings

    return os.environ.get("MEMCHAT_MODEL") or settings.get("model") or DEFAULT_MODEL


DEFAULT_RETRY_BACKOFF = 0.5


def retry_backoff_seconds() -> float:
    """The first pause before a model call is retried (MEMCHAT_RETRY_BACKOFF, seconds, default
    0.5); each later retry waits about twice the one before. 0 retries at once, which the tests
    use so a provider's transient failures cost them no waiting."""
    value = os.environ.get("MEMCHAT_RETRY_BACKOFF", "")
    try:
        seconds = float(value)
    except ValueError:
        return DEFAULT_RETRY_BACKOFF
    return seconds if 0 <= seconds < float("inf") else DEFAULT_RETRY_BACKOFF


def debug_enabled() -> bool:
    return os.environ.get("MEMCHAT_DEBUG", "") not in ("", "0")


DEFAULT_MAX_BODY = 4 * 1024 * 1024
"""The largest request body `memchat serve` accepts (bytes) unless `--max-body` says otherwise."""

DEFAULT_READ_TIMEOUT = 30.0
"""Seconds `memchat serve` gives a client to send a request's head, and to pause within its body,
unless `--read-timeout` says otherwise."""

DEFAULT_MAX_PENDING = 256
"""Requests one `memchat serve` worker process takes on at once unless `--max-pending` says
otherwise; the next is refused with 503 and Retry-After instead of waiting for a thread."""

DEFAULT_DB_TIMEOUT = 30.0
"""Seconds a database statement may wait (for a lock, for an answer) before its request fails
with a storage error, unless MEMCHAT_DB_TIMEOUT (`memchat serve --db-timeout`) says otherwise."""
