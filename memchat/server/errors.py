"""memchat's errors as HTTP statuses with OpenAI's error body, in one place (the server's
counterpart of the CLI's exit codes): `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import math
from typing import Any

from fastapi.responses import JSONResponse

from memchat.errors import (
    BudgetExceeded,
    InvalidInput,
    MemchatError,
    NotFound,
    ProviderError,
    StorageError,
    ThreadBusy,
)
from memchat.redact import redact


class HTTPProblem(Exception):
    """A request the server refuses before any memchat call: a bad body, no key, too large."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.headers = headers or {}


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "provider_error",
    503: "server_error",
    504: "timeout_error",
}


def body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": param, "code": code}}


def status_of(exc: BaseException) -> tuple[int, str | None, dict[str, str]]:
    """(HTTP status, OpenAI-style code, headers) for a failure."""
    if isinstance(exc, HTTPProblem):
        return exc.status, exc.code, exc.headers
    if isinstance(exc, BudgetExceeded):
        return 400, "context_length_exceeded", {}
    if isinstance(exc, InvalidInput):
        return 400, None, {}
    if isinstance(exc, NotFound):
        return 404, "not_found", {}
    if isinstance(exc, ThreadBusy):
        return 409, "conversation_busy", {}
    if isinstance(exc, ProviderError):
        if exc.kind == "rate_limited":
            wait = exc.retry_after or 1
            return 429, "rate_limited", {"Retry-After": str(max(1, math.ceil(wait)))}
        if exc.kind == "timeout":
            return 504, "provider_timeout", {}
        if exc.kind == "setup":
            return 400, "model_not_available", {}
        return 502, f"provider_{exc.kind}", {}
    if isinstance(exc, StorageError):
        return 503, "storage_unavailable", {}
    return 500, "internal_error", {}


def message_of(exc: BaseException) -> str:
    if isinstance(exc, (MemchatError, HTTPProblem)):
        text = str(exc)
    else:
        text = f"internal error ({type(exc).__name__}); the server's log has the details"
    return redact(text)


def error_response(exc: BaseException) -> JSONResponse:
    status, code, headers = status_of(exc)
    param = exc.param if isinstance(exc, HTTPProblem) else None
    return JSONResponse(body(status, message_of(exc), param=param, code=code), status_code=status, headers=headers)
