"""Every failure memchat reports on purpose is a MemchatError.

The CLI turns these into one line on stderr and the class's exit code, in one place, so a
script can tell "thread not found" from "provider down" without parsing text.
"""


class MemchatError(Exception):
    exit_code = 1
    unanswered_in: str | None = None
    """Set on a failure that came after the user's message was stored: the thread whose last
    message is kept unanswered (so a face can say how to send it again)."""


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
    """The model call failed: missing key, unknown model, provider error, network.

    `kind` names the cause for a face that tells them apart (the server's status codes and
    metrics): auth, permission, too_long, not_found, rate_limited, timeout, unreachable,
    rejected, empty, cut_off, setup or error; `retry_after` is the wait the provider asked for."""

    exit_code = 5

    def __init__(self, message: str, *, kind: str = "error", retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class ContextTooLong(ProviderError):
    """The provider counted the prompt as longer than its context (its tokenizer differs from ours)."""


class ReplyCutOff(ProviderError):
    """The reply stopped part-way (connection dropped, time out, a signal); `text` is what had arrived."""

    def __init__(self, message: str, text: str, *, interrupted: bool = False, signal_number: int | None = None):
        super().__init__(message, kind="cut_off")
        self.text = text
        self.interrupted = interrupted
        if interrupted:
            self.exit_code = exit_code_for_signal(signal_number)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the process is, as Ctrl-C (SIGINT) is: a turn keeps what
    arrived and releases its lease; the exit code is 128 + the signal's number."""

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal_number = signal_number


def exit_code_for_signal(signal_number: int | None) -> int:
    import signal

    return 128 + (signal_number or signal.SIGINT)


class ThreadBusy(MemchatError):
    """Another process kept the thread's turn lease for longer than this turn would wait."""

    exit_code = 7


class LeaseLost(ThreadBusy):
    """The turn's lease lapsed while its process was stalled and another turn took the thread:
    storing this turn's reply would put it after that turn's messages, so it is not stored."""

    def __init__(self, thread_id: str):
        super().__init__(
            f"thread {thread_id}: this turn lost its lease while it was stalled and another turn took over; "
            "its reply was not stored (`memchat retry` sends the message again)"
        )


class HistoryMoved(MemchatError):
    """Internal: a turn about to start found the thread changed since it built its context; it
    builds the context again. Never reaches a user."""

    def __init__(self, thread_id: str):
        super().__init__(f"thread {thread_id} changed while the turn was being prepared")


class AccessDenied(MemchatError):
    """A memchat server refused the client's API key (`--server` with MEMCHAT_API_KEY)."""

    exit_code = 8


class StorageError(MemchatError):
    """The database cannot be opened, migrated or written."""

    exit_code = 6


def describe_validation_error(exc) -> str:
    """The first problem of a pydantic ValidationError, as `messages[3].role: Input should be ...`."""
    problem = exc.errors()[0]
    location = ""
    for part in problem["loc"]:
        location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
    reason = problem["msg"].removeprefix("Value error, ")
    return f"{location}: {reason}" if location else reason
