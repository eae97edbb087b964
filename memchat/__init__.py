"""memchat: persistent conversation memory for LLM applications.

Every name is loaded on first use (`Memory` and `Reply` load the database layer), so that
`import memchat`, which every `memchat` command does first, costs nothing it does not use.
Importing memchat changes nothing in the process: what memchat needs of its environment it sets
where it loads what needs it."""

_ERRORS = (
    "BudgetExceeded",
    "InvalidInput",
    "LeaseLost",
    "MemchatError",
    "NotFound",
    "ProviderError",
    "ReplyCutOff",
    "StorageError",
    "ThreadBusy",
    "Unanswered",
)
_LOADED_ON_USE = {
    "Memory": "memchat.api",
    "Reply": "memchat.turn",
    "Context": "memchat.context",
    **{name: "memchat.errors" for name in _ERRORS},
}


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
