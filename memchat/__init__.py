"""memchat: persistent conversation memory for LLM applications.

`Memory` (and `Reply`) load the database layer on first use, so that `import memchat` and the
commands that never open a database stay light. Importing memchat changes nothing in the
process: what memchat needs of its environment it sets where it loads what needs it."""

from memchat.context import Context
from memchat.errors import (
    BudgetExceeded,
    InvalidInput,
    LeaseLost,
    MemchatError,
    NotFound,
    ProviderError,
    ReplyCutOff,
    StorageError,
    ThreadBusy,
    Unanswered,
)

_LOADED_ON_USE = {"Memory": "memchat.api", "Reply": "memchat.turn"}


def __getattr__(name: str):
    if name not in _LOADED_ON_USE:
        raise AttributeError(f"module 'memchat' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_LOADED_ON_USE[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "BudgetExceeded",
    "Context",
    "InvalidInput",
    "LeaseLost",
    "MemchatError",
    "Memory",
    "NotFound",
    "ProviderError",
    "ReplyCutOff",
    "Reply",
    "StorageError",
    "ThreadBusy",
    "Unanswered",
]
