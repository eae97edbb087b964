"""Every failure memchat reports on purpose is a MemchatError, and this module is its one table.

Each class carries how every face shows it: the CLI's exit code (`exit_code`), the server's HTTP
status (`status`) and OpenAI's error `code`; a provider's failure takes its status and code from
its `kind` (`PROVIDER_KINDS`). The CLI, the server and the client of a server all read these, so
a script can tell "thread not found" from "provider down" by the exit code or the status alike,
and a client turns the server's error body back into the same class (`error_from_body`).

A turn that fails once the user's message is stored raises `Unanswered`, which carries the thread,
that message and the cause (the provider's failure, a lost lease, Ctrl-C, ...): every face shows
the cause as it would alone and adds how to send the message again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


class MemchatError(Exception):
    """A failure memchat reports: `exit_code` for the CLI, `status` and `code` for the server (an
    error no subclass names is memchat's own, an internal error)."""

    exit_code = 1
    status = 500
    code: str | None = "internal_error"

    @classmethod
    def rebuilt(cls, message: str, *, code: str | None = None, retry_after: float | None = None) -> MemchatError:
        """This error as a client rebuilds it from a server's error body: the server's message
        word for word, and what the body says of the class's own fields."""
        error = cls.__new__(cls)
        Exception.__init__(error, message)
        return error


class InvalidInput(MemchatError):
    """The caller asked for something malformed: empty message, bad JSON, unknown role."""

    exit_code = 2
    status = 400
    code = None


class NotFound(MemchatError):
    exit_code = 3
    status = 404
    code = "not_found"


NO_THREADS_YET = "no threads yet: `memchat new` starts one"
"""NotFound's message when there is no thread at all to take (`-c` on an empty memory)."""


class BudgetExceeded(MemchatError):
    """The parts that may never be dropped (system prompt, new message) do not fit the budget."""

    exit_code = 4
    status = 400
    code = "context_length_exceeded"

    def __init__(self, needed: int, budget: int, room: int | None = None):
        self.needed = needed
        self.budget = budget
        self.room = budget if room is None else room
        margin = (
            "" if self.room == budget else f" ({self.room} after the margin held back for an approximate tokenizer)"
        )
        super().__init__(
            f"the system prompt and the new message need {needed} tokens but the budget is {budget}{margin}; "
            "shorten the message or raise --budget"
        )

    _NUMBERS = re.compile(r"need (\d+) tokens but the budget is (\d+)(?: \((\d+) after the margin)?")
    """The numbers as `__init__` writes them into the message, which is all an error body carries."""

    @classmethod
    def rebuilt(cls, message: str, **_: Any) -> BudgetExceeded:
        error = super().rebuilt(message)
        numbers = cls._NUMBERS.search(message)
        error.needed = int(numbers[1]) if numbers else None
        error.budget = int(numbers[2]) if numbers else None
        error.room = int(numbers[3]) if numbers and numbers[3] else error.budget
        return error


@dataclass(frozen=True)
class ProviderKind:
    """How one kind of provider failure shows on the server: its HTTP status and OpenAI code."""

    status: int
    code: str


PROVIDER_KINDS = {
    "auth": ProviderKind(502, "provider_auth"),
    "permission": ProviderKind(502, "provider_permission"),
    "too_long": ProviderKind(502, "provider_too_long"),
    "not_found": ProviderKind(502, "provider_not_found"),
    "rate_limited": ProviderKind(429, "rate_limited"),
    "timeout": ProviderKind(504, "provider_timeout"),
    "unreachable": ProviderKind(502, "provider_unreachable"),
    "rejected": ProviderKind(502, "provider_rejected"),
    "empty": ProviderKind(502, "provider_empty"),
    "cut_off": ProviderKind(502, "provider_cut_off"),
    "setup": ProviderKind(400, "model_not_available"),
    "error": ProviderKind(502, "provider_error"),
}
"""A provider's failure by kind: a rate limit is the client's to wait out (429, with Retry-After), a provider that
timed out is a gateway time-out (504), a model the server cannot use is the request's fault (400),
and any other failure is a bad gateway (502)."""


class ProviderError(MemchatError):
    """The model call failed: missing key, unknown model, provider error, network.

    `kind` names the cause for a face that tells them apart (the server's status codes and
    metrics; `PROVIDER_KINDS` lists them); `retry_after` is the wait the provider asked for."""

    exit_code = 5

    def __init__(self, message: str, *, kind: str = "error", retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return PROVIDER_KINDS.get(self.kind, PROVIDER_KINDS["error"]).status

    @property
    def code(self) -> str:
        return PROVIDER_KINDS[self.kind].code if self.kind in PROVIDER_KINDS else f"provider_{self.kind}"

    @classmethod
    def rebuilt(cls, message: str, *, code: str | None = None, retry_after: float | None = None) -> ProviderError:
        kind = next((kind for kind, shown in PROVIDER_KINDS.items() if shown.code == code), None)
        if kind is None:
            kind = (code or "error").removeprefix("provider_")
        return cls(message, kind=kind, retry_after=retry_after)


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

    @classmethod
    def rebuilt(cls, message: str, **_: Any) -> ReplyCutOff:
        """Without the text that arrived: a server sends it beside the error body (`partial`)."""
        return cls(message, "")


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
    status = 409
    code = "conversation_busy"


class LeaseLost(ThreadBusy):
    """The turn's lease lapsed while its process was stalled and another turn took the thread:
    storing this turn's reply would put it after that turn's messages, so it is not stored."""

    def __init__(self, thread_id: str):
        super().__init__(
            f"thread {thread_id}: this turn lost its lease while it was stalled and another turn took over; "
            "its reply was not stored"
        )


class HistoryMoved(MemchatError):
    """Internal: a turn about to start found the thread changed since it built its context; it
    builds the context again. Never reaches a user."""

    def __init__(self, thread_id: str):
        super().__init__(f"thread {thread_id} changed while the turn was being prepared")


class AccessDenied(MemchatError):
    """A memchat server refused the client's API key (`--server` with MEMCHAT_API_KEY)."""

    exit_code = 8
    status = 401
    code = "invalid_api_key"


class StorageError(MemchatError):
    """The database cannot be opened, migrated or written."""

    exit_code = 6
    status = 503
    code = "storage_unavailable"


class Unanswered(MemchatError):
    """A turn failed after the user's message was stored: `message` stays in `thread_id`,
    unanswered, for a retry. `cause` is the failure itself (a MemchatError, a KeyboardInterrupt
    for Ctrl-C or a signal, or an unexpected exception); `partial` is the reply's text that
    arrived before a cut-off, kept as a partial message. Every face shows the cause as it would
    alone (its exit code, status and message) and adds how to send the message again."""

    def __init__(self, thread_id: str, message: Any, cause: BaseException):
        super().__init__(_said(cause))
        self.thread_id = thread_id
        self.message = message
        self.cause = cause

    @property
    def partial(self) -> str | None:
        return self.cause.text if isinstance(self.cause, ReplyCutOff) else None

    @property
    def interrupted(self) -> bool:
        """Ctrl-C or a signal ended the turn."""
        return isinstance(self.cause, KeyboardInterrupt) or (
            isinstance(self.cause, ReplyCutOff) and self.cause.interrupted
        )

    @property
    def exit_code(self) -> int:
        if isinstance(self.cause, KeyboardInterrupt):
            return exit_code_for_signal(getattr(self.cause, "signal_number", None))
        return self.cause.exit_code if isinstance(self.cause, MemchatError) else MemchatError.exit_code

    @property
    def status(self) -> int:
        return self.cause.status if isinstance(self.cause, MemchatError) else MemchatError.status

    @property
    def code(self) -> str | None:
        return self.cause.code if isinstance(self.cause, MemchatError) else MemchatError.code


def _said(cause: BaseException) -> str:
    if isinstance(cause, MemchatError):
        return str(cause)
    if isinstance(cause, KeyboardInterrupt):
        return "interrupted"
    return f"{type(cause).__name__}: {cause}"


def cause_of(failure: BaseException) -> BaseException:
    """The failure itself, out of the Unanswered that carries it when the turn had stored its message."""
    return failure.cause if isinstance(failure, Unanswered) else failure


READ_BACK = (InvalidInput, NotFound, ThreadBusy, AccessDenied, BudgetExceeded)
"""The classes a client rebuilds from a server's (status, code), besides a provider's failures
(`PROVIDER_KINDS`): the one whose status and code both match, else the first whose status does
(the most general first)."""

PROVIDER_STATUSES = (429, 502, 504)
"""Statuses that only a provider's failure answers, whatever their code."""

ALSO_READ_AS = {403: AccessDenied, 413: InvalidInput, 422: InvalidInput}
"""Statuses only the server's HTTP layer answers (a refused key, a body too large or malformed)."""


def error_from_body(status: int, body: Any, *, retry_after: float | None = None) -> MemchatError:
    """A server's error answer (an OpenAI error body) as the memchat error it stands for, its
    message kept as the server wrote it, so a client prints the same line and exits with the same
    code as a local call would. A turn's error event carries the reply's text that arrived before
    a cut-off beside the body (`partial`). Any other failure of the server (a 5xx that is not a
    provider's, an answer that is no error body) is a storage failure to the client, as an
    unreachable server is: its message says the server failed."""
    error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
    message = (
        error.get("message")
        if isinstance(error.get("message"), str) and error.get("message")
        else (f"the memchat server answered HTTP {status}")
    )
    code = error.get("code") if isinstance(error.get("code"), str) else None
    if isinstance(body, dict) and isinstance(body.get("partial"), str):
        return ReplyCutOff(message, body["partial"])
    kind = next((kind for kind, shown in PROVIDER_KINDS.items() if (shown.status, shown.code) == (status, code)), None)
    if kind is not None or status in PROVIDER_STATUSES:
        provider_class = {"cut_off": ReplyCutOff, "too_long": ContextTooLong}.get(kind, ProviderError)
        return provider_class.rebuilt(message, code=code, retry_after=retry_after)
    matched = next((cls for cls in READ_BACK if cls.status == status and cls.code == code), None)
    matched = matched or next((cls for cls in READ_BACK if cls.status == status), None) or ALSO_READ_AS.get(status)
    if matched is not None:
        return matched.rebuilt(message, code=code)
    return StorageError(f"the memchat server failed (HTTP {status}): {message}")


def describe_validation_error(exc) -> str:
    """The first problem of a pydantic ValidationError, as `messages[3].role: Input should be ...`."""
    problem = exc.errors()[0]
    location = ""
    for part in problem["loc"]:
        location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
    reason = problem["msg"].removeprefix("Value error, ")
    return f"{location}: {reason}" if location else reason
