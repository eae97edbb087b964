"""Defaults a user sets once (`memchat config set model openai/gpt-4o-mini`), kept in a small
JSON file in the user config directory (0600). They come after everything more specific: an
option, then the thread's setting, then the environment, then these, then memchat's built-in
defaults."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from memchat import llm
from memchat.config import DEFAULT_MODEL, model_from_environment, settings_file
from memchat.errors import InvalidInput, StorageError
from memchat.schemas import check_endpoint


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a whole number") from None
    if not 0 < number < 2**31:
        raise InvalidInput(f"{value} must be a positive number of tokens")
    return number


def _model(value: str) -> str:
    """A provider/model name whose provider litellm knows (checked without loading litellm
    where its installed files settle it: `llm.check_provider`)."""
    if "/" not in value.strip():
        raise InvalidInput(f"name the model as provider/model, e.g. openai/gpt-4o, not {value!r}")
    llm.check_provider(value.strip())
    return value.strip()


def _endpoint(value: str) -> str:
    try:
        checked = check_endpoint(value)
    except ValueError as exc:
        raise InvalidInput(f"the api-base {exc}") from None
    if checked is None:
        raise InvalidInput("the api-base is empty: `memchat config unset api-base` removes it")
    return checked


def _on_or_off(value: str) -> str:
    choice = value.strip().lower()
    if choice not in ("on", "off"):
        raise InvalidInput(f"the daemon setting is on or off, not {value!r}")
    return choice


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= 7 * 24 * 3600:
        raise InvalidInput(f"{value} must be a number of seconds above 0 and at most a week")
    return int(seconds) if seconds.is_integer() else seconds


@dataclass(frozen=True)
class Setting:
    key: str
    parse: Callable[[str], Any]
    help: str


SETTINGS = {
    setting.key: setting
    for setting in (
        Setting("model", _model, "the model of threads that name none (after MEMCHAT_MODEL)"),
        Setting("budget", _positive, "prompt tokens of threads that set none (else the model's input limit)"),
        Setting("max-tokens", _positive, "reply tokens asked for (else 1024)"),
        Setting("api-base", _endpoint, "provider endpoint when none is given (after the provider's own variable)"),
        Setting("daemon", _on_or_off, "on (default) or off: commands that call a model go through a background server"),
        Setting("daemon-idle", _seconds, "seconds a background server waits for a command before it leaves (else 600)"),
    )
}


def path() -> Path:
    return settings_file()


def load() -> dict[str, Any]:
    """The user's settings; a missing file is no settings, a broken one is said plainly. A turn
    asks for several settings: the file is read again only when it has changed."""
    file = path()
    try:
        found = file.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidInput(f"cannot read the settings in {file}: {exc.strerror}; fix or remove the file") from None
    return dict(_read(file, (found.st_ino, found.st_mtime_ns, found.st_size)))


@lru_cache(maxsize=4)
def _read(file: Path, version: tuple[int, int, int]) -> dict[str, Any]:
    """`version` (inode, mtime, size) changes with every write: `_save` replaces the file."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the settings in {file}: {exc}; fix or remove the file") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"the settings in {file} are not a JSON object; fix or remove the file")
    return {key: value for key, value in data.items() if key in SETTINGS}


def get(key: str) -> Any:
    return load().get(key)


def default_model() -> str:
    """MEMCHAT_MODEL, else the user's `memchat config set model`, else openai/gpt-4o."""
    return model_from_environment() or get("model") or DEFAULT_MODEL


def set_value(key: str, value: str) -> Any:
    parsed = _setting(key).parse(value)
    _save({**load(), key: parsed})
    return parsed


def unset(key: str) -> None:
    _setting(key)
    current = load()
    current.pop(key, None)
    _save(current)


def _setting(key: str) -> Setting:
    if key not in SETTINGS:
        raise InvalidInput(f"unknown setting {key!r}: choose from {', '.join(SETTINGS)}")
    return SETTINGS[key]


def _save(values: dict[str, Any]) -> None:
    """Written whole and atomically, readable by its owner only."""
    file = path()
    try:
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=file.parent, delete=False, suffix=".tmp") as handle:
            json.dump(values, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(handle.name, file)
    except OSError as exc:
        raise StorageError(f"cannot write the settings to {file}: {exc.strerror or exc}") from None
