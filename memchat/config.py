"""Where settings come from: explicit argument, then environment, then built-in default.

Every environment variable memchat reads is read here, each by one function with one meaning,
and nothing here imports the rest of memchat: the modules above ask this one. A flag is on when
it is set to anything but an empty string or `0`. The user's own settings file, which comes after
the environment, is read by `memchat.settings`.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL = "openai/gpt-4o"
DEFAULT_MAX_TOKENS = 1024
MAX_REPLY_TOKENS = 1_000_000
MAX_TEMPERATURE = 2.0
"""OpenAI's bounds on a turn's sampling settings (no model writes a million tokens in one reply);
the CLI's options and every request body share them (`schemas.TurnOptions`)."""
FALLBACK_BUDGET = 8192

DEFAULT_IMPORT_LIMIT_MIB = 1024

DEFAULT_MAX_ITEM_BYTES = 20 * 2**20
"""The largest image or file one part of an item may hold, decoded, unless MEMCHAT_MAX_ITEM_BYTES
says otherwise: 20 MiB, the bound OpenAI's schema puts on an input image's URL."""

DEFAULT_RETRY_BACKOFF = 0.5
DEFAULT_LEASE_SECONDS = 30.0
"""How long a turn's lease lasts without a heartbeat unless MEMCHAT_LEASE_SECONDS says otherwise."""

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


def _given(name: str) -> str | None:
    """The variable's value; an empty one is no value, as if it were unset."""
    return os.environ.get(name) or None


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _seconds(name: str, default: float, low: float, high: float) -> float:
    """A number of seconds from `low` to `high` (inclusive); anything else is the default."""
    try:
        seconds = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return seconds if low <= seconds <= high else default


# ---- memchat's own variables --------------------------------------------------------------


def database_url(db: str | None = None) -> str:
    """`--db`, else MEMCHAT_DB, else a file in the user data directory.

    A value containing "://" is an SQLAlchemy URL; anything else is a file path, so users can
    write `--db chat.db` without knowing SQLAlchemy's URL syntax. The default directory is
    memchat's own, so it is created on first use; a directory the user named is not.
    """
    value = db or _given("MEMCHAT_DB")
    if not value:
        from platformdirs import user_data_dir

        directory = Path(user_data_dir("memchat", appauthor=False))
        private_directory(directory)
        value = str(directory / "memchat.db")
    if "://" in value:
        return value
    return "sqlite:///" + str(Path(value).expanduser().absolute())


def database_from_environment() -> str | None:
    """MEMCHAT_DB as given (a path or URL), or None for the default database."""
    return _given("MEMCHAT_DB")


def model_from_environment() -> str | None:
    """MEMCHAT_MODEL: the model of threads that name none, before the user's settings file."""
    return _given("MEMCHAT_MODEL")


def debug_enabled() -> bool:
    """MEMCHAT_DEBUG: tracebacks instead of one-line errors (CLI) and in the log (server)."""
    return _flag("MEMCHAT_DEBUG")


def settings_file_from_environment() -> Path | None:
    """MEMCHAT_CONFIG: the user's settings file, instead of the one in the user config directory."""
    value = _given("MEMCHAT_CONFIG")
    return Path(value).expanduser() if value else None


def settings_file() -> Path:
    """The user's settings file (`memchat config`): MEMCHAT_CONFIG, else config.json in the user
    config directory."""
    override = settings_file_from_environment()
    if override:
        return override
    from platformdirs import user_config_dir

    return Path(user_config_dir("memchat", appauthor=False)) / "config.json"


def import_limit_bytes() -> int:
    """The largest import accepted (MEMCHAT_IMPORT_MAX_MIB, default 1 GiB): an import is
    validated whole before anything is written, so it is held in memory whole."""
    value = os.environ.get("MEMCHAT_IMPORT_MAX_MIB", "")
    mib = int(value) if value.isdigit() and int(value) > 0 else DEFAULT_IMPORT_LIMIT_MIB
    return mib * 2**20


def max_item_bytes() -> int:
    """The largest image or file (decoded bytes) one part of a message or tool output may hold:
    MEMCHAT_MAX_ITEM_BYTES, a positive number of bytes, else 20 MiB. It is checked when the item
    is read, before anything is stored, so a refused one costs no write."""
    value = os.environ.get("MEMCHAT_MAX_ITEM_BYTES", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_ITEM_BYTES


def retry_backoff_seconds() -> float:
    """The first pause before a model call is retried (MEMCHAT_RETRY_BACKOFF, seconds, default
    0.5); each later retry waits about twice the one before. 0 retries at once, which the tests
    use so a provider's transient failures cost them no waiting."""
    return _seconds("MEMCHAT_RETRY_BACKOFF", DEFAULT_RETRY_BACKOFF, 0, 3600)


def lease_seconds() -> float:
    """How long a turn's lease lasts without a heartbeat: MEMCHAT_LEASE_SECONDS, from 0.5 s to an
    hour, else 30 s."""
    return _seconds("MEMCHAT_LEASE_SECONDS", DEFAULT_LEASE_SECONDS, 0.5, 3600)


def db_timeout() -> float:
    """MEMCHAT_DB_TIMEOUT seconds, else the default: a stalled database fails a request in
    seconds instead of holding its worker thread for as long as the stall lasts."""
    return _seconds("MEMCHAT_DB_TIMEOUT", DEFAULT_DB_TIMEOUT, 1e-9, float("inf"))


def set_db_timeout(seconds: float) -> None:
    """`memchat serve --db-timeout`: for this process's database and for its workers'."""
    os.environ["MEMCHAT_DB_TIMEOUT"] = str(seconds)


def server_from_environment() -> str | None:
    """MEMCHAT_SERVER: the `memchat serve` the CLI works through when `--server` is not given."""
    return _given("MEMCHAT_SERVER")


def daemon_from_environment() -> bool | None:
    """MEMCHAT_DAEMON: `off` (or 0, no, false) keeps model commands from using a background
    server, anything else lets them; None when unset (the `daemon` setting decides)."""
    value = os.environ.get("MEMCHAT_DAEMON", "").strip().lower()
    return None if not value else value not in ("off", "0", "no", "false")


def daemon_idle_from_environment() -> float | None:
    """MEMCHAT_DAEMON_IDLE: seconds a background server waits for a command before it leaves
    (a positive number; anything else is no value)."""
    try:
        seconds = float(os.environ.get("MEMCHAT_DAEMON_IDLE", ""))
    except ValueError:
        return None
    return seconds if 0 < seconds < float("inf") else None


def whole_environment() -> dict[str, str]:
    """Every variable: a command run by the background server gets its client's whole
    environment, and a server serves only commands whose environment matches its own."""
    return dict(os.environ)


def take_environment(variables: dict[str, str]) -> None:
    """This process's environment becomes `variables` (the background server's fork of a
    command, which runs with its client's)."""
    os.environ.clear()
    os.environ.update(variables)


def api_key_from_environment() -> str | None:
    """MEMCHAT_API_KEY: the key a client of `memchat serve` sends."""
    return _given("MEMCHAT_API_KEY")


def pager_from_environment() -> str | None:
    """The pager command as git picks one, from MEMCHAT_PAGER, else PAGER: "" when one of them
    is set to nothing or `cat` (no pager), None when neither is set."""
    for variable in ("MEMCHAT_PAGER", "PAGER"):
        if variable in os.environ:
            command = os.environ[variable].strip()
            return "" if command in ("", "cat") else command
    return None


def pager_environment() -> dict[str, str]:
    """The environment a pager runs in: `less` with LESS=FRX and `lv` with LV=-c, unless the
    user set them (quit when the text fits one screen, keep colours)."""
    return {**os.environ, "LESS": os.environ.get("LESS", "FRX"), "LV": os.environ.get("LV", "-c")}


def colour_refused() -> bool:
    """NO_COLOR (no-color.org): set to anything but an empty string, no colour."""
    return bool(_given("NO_COLOR"))


# ---- the hand-off from `memchat serve` to its worker processes ----------------------------
# uvicorn starts each worker from a factory with no arguments: the environment is the channel.


def hand_to_workers(
    *,
    database: str,
    max_body: int,
    keys_required: bool,
    without_keys: bool,
    turn_timeout: float | None,
    busy_wait: float | None,
    read_timeout: float,
    max_pending: int,
    separate_metrics: bool,
) -> None:
    """What `memchat serve` tells the worker processes it starts, read back by the functions
    below. `separate_metrics`: several workers, so metrics are gathered from files in a
    directory of their own (made here unless PROMETHEUS_MULTIPROC_DIR names one)."""
    os.environ["MEMCHAT_DB"] = database
    os.environ["MEMCHAT_MAX_BODY"] = str(max_body)
    os.environ["MEMCHAT_REQUIRE_KEYS"] = "1" if keys_required else "0"
    os.environ["MEMCHAT_SERVE_WITHOUT_KEYS"] = "1" if without_keys else "0"
    os.environ["MEMCHAT_SERVE_TIMEOUT"] = "" if turn_timeout is None else str(turn_timeout)
    os.environ["MEMCHAT_SERVE_BUSY_WAIT"] = "" if busy_wait is None else str(busy_wait)
    os.environ["MEMCHAT_SERVE_READ_TIMEOUT"] = str(read_timeout)
    os.environ["MEMCHAT_MAX_PENDING"] = str(max_pending)
    if separate_metrics and not metrics_directory():
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="memchat-metrics-")


def serve_max_body() -> int:
    return int(os.environ.get("MEMCHAT_MAX_BODY", DEFAULT_MAX_BODY))


def serve_keys_required() -> bool:
    """Every request needs a key (the server listens beyond loopback)."""
    return _flag("MEMCHAT_REQUIRE_KEYS")


def serve_without_keys() -> bool:
    return _flag("MEMCHAT_SERVE_WITHOUT_KEYS")


def serve_max_pending() -> int:
    return int(os.environ.get("MEMCHAT_MAX_PENDING", DEFAULT_MAX_PENDING))


def serve_turn_timeout() -> float | None:
    """Seconds a turn's model call may take (`memchat serve --timeout`)."""
    value = _given("MEMCHAT_SERVE_TIMEOUT")
    return float(value) if value else None


def serve_busy_wait() -> float | None:
    """Seconds a turn waits for another turn on its conversation before a 409 (`--busy-wait`)."""
    value = _given("MEMCHAT_SERVE_BUSY_WAIT")
    return float(value) if value else None


def serve_read_timeout() -> float:
    """Seconds a client may take to send a request's head, and may pause while sending its body."""
    value = _given("MEMCHAT_SERVE_READ_TIMEOUT")
    return float(value) if value else DEFAULT_READ_TIMEOUT


def metrics_directory() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR (prometheus_client's own): the workers' metrics files."""
    return _given("PROMETHEUS_MULTIPROC_DIR")


# ---- other programs' variables, read as those programs read them --------------------------


def use_bundled_model_costs() -> None:
    """Just before memchat loads litellm: its bundled price and context-size map, not one fetched
    over the network, unless the user set LITELLM_LOCAL_MODEL_COST_MAP (litellm reads it then,
    and again whenever it reloads the map, so it stays set in this process)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def provider_endpoint_from_environment(names: tuple[str, ...]) -> str | None:
    """The first of a provider's endpoint variables (OPENAI_BASE_URL, ...) that is set."""
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


def secret_values(suffixes: tuple[str, ...], shortest: int) -> set[str]:
    """The values of the variables named like keys, tokens and passwords (`suffixes`), to blank
    them out of anything memchat prints or logs."""
    return {value for name, value in os.environ.items() if name.upper().endswith(suffixes) and len(value) >= shortest}


def huggingface_hub_cache() -> Path:
    """Where Hugging Face keeps downloaded models: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(Path.home(), ".cache", "huggingface"), "hub"
    )
    return Path(hub)


def tiktoken_files_given() -> bool:
    """TIKTOKEN_CACHE_DIR is set: tiktoken reads its encodings from there."""
    return bool(os.environ.get("TIKTOKEN_CACHE_DIR"))


def use_tiktoken_files(folder: str) -> None:
    """Just before memchat loads tiktoken: its encodings from `folder` (litellm's bundled copies),
    not downloaded."""
    os.environ["TIKTOKEN_CACHE_DIR"] = folder


def llm_user_path() -> Path | None:
    """LLM_USER_PATH: where Simon Willison's llm keeps its files, if not in its user directory."""
    value = _given("LLM_USER_PATH")
    return Path(value) if value else None


# ---- memchat itself -------------------------------------------------------------------------


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
