"""memchat's errors as HTTP answers with OpenAI's error body: `{"error": {"message", "type",
"param", "code"}}`. The status and code of each error are the error class's own (the table in
memchat/errors.py); this module adds the failures of the HTTP layer (`HTTPProblem`) and OpenAI's
error type of each status."""

from __future__ import annotations

import math
from typing import Any

from fastapi.responses import JSONResponse

from memchat.errors import MemchatError, cause_of
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
    return {
        "error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": param, "code": code}
    }


def status_of(exc: BaseException) -> tuple[int, str | None, dict[str, str]]:
    """(HTTP status, OpenAI-style code, headers) for a failure: an Unanswered turn's are its
    cause's; a status that asks the client to wait says for how long (Retry-After)."""
    if isinstance(exc, HTTPProblem):
        return exc.status, exc.code, exc.headers
    exc = cause_of(exc)
    if not isinstance(exc, MemchatError):
        return MemchatError.status, MemchatError.code, {}
    headers = {}
    if exc.status == 429:
        wait = getattr(exc, "retry_after", None) or 1
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return exc.status, exc.code, headers


def message_of(exc: BaseException) -> str:
    exc = cause_of(exc)
    if isinstance(exc, (MemchatError, HTTPProblem)):
        text = str(exc)
    else:
        text = f"internal error ({type(exc).__name__}); the server's log has the details"
    return redact(text)


def error_response(exc: BaseException) -> JSONResponse:
    status, code, headers = status_of(exc)
    param = exc.param if isinstance(exc, HTTPProblem) else None
    return JSONResponse(body(status, message_of(exc), param=param, code=code), status_code=status, headers=headers)
