"""Every failure memchat reports on purpose is a MemchatError.

The CLI turns these into one line on stderr and the class's exit code, in one place, so a
script can tell "thread not found" from "provider down" without parsing text.
"""


class MemchatError(Exception):
    exit_code = 1


class InvalidInput(MemchatError):
    """The caller asked for something malformed: empty message, bad JSON, unknown role."""

    exit_code = 2


class NotFound(MemchatError):
    exit_code = 3


class BudgetExceeded(MemchatError):
    """The parts that may never be dropped (system prompt, new message) do not fit the budget."""

    exit_code = 4

    def __init__(self, needed: int, budget: int, room: int | None = None):
        self.needed = needed
        self.budget = budget
        self.room = budget if room is None else room
        margin = "" if self.room == budget else f" ({self.room} after the margin held back for an approximate tokenizer)"
        super().__init__(
            f"the system prompt and the new message need {needed} tokens but the budget is {budget}{margin}; "
            "shorten the message or raise --budget"
        )


class ProviderError(MemchatError):
    """The model call failed: missing key, unknown model, provider error, network."""

    exit_code = 5


class ContextTooLong(ProviderError):
    """The provider counted the prompt as longer than its context (its tokenizer differs from ours)."""


class ReplyCutOff(ProviderError):
    """The reply stopped part-way (connection dropped, Ctrl-C); `text` is what had arrived."""

    def __init__(self, message: str, text: str, *, interrupted: bool = False):
        super().__init__(message)
        self.text = text
        self.interrupted = interrupted
        if interrupted:
            self.exit_code = 130


class ThreadBusy(MemchatError):
    """Another process kept the thread's turn lease for longer than this turn would wait."""

    exit_code = 7


class StorageError(MemchatError):
    """The database cannot be opened, migrated or written."""

    exit_code = 6


def describe_validation_error(exc) -> str:
    """The first problem of a pydantic ValidationError, as `messages[3].role: Input should be ...`."""
    problem = exc.errors()[0]
    location = ""
    for part in problem["loc"]:
        location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
    return f"{location}: {problem['msg']}" if location else problem["msg"]
