"""The ASGI application of `memchat serve`: the OpenAI face (/v1), health and metrics, every
failure as an OpenAI-shaped error body. One `Memory` per worker process, opened (and migrated)
at start-up, and litellm loaded then too; requests that touch the database or the provider run
on worker threads."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from memchat import llm
from memchat.api import Memory
from memchat.config import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_PENDING,
    database_from_environment,
    debug_enabled,
    serve_keys_required,
    serve_max_body,
    serve_max_pending,
    serve_without_keys,
)
from memchat.errors import MemchatError, cause_of
from memchat.redact import redact
from memchat.server import chat, conversations, metrics, own, responses
from memchat.server.backlog import Backlog
from memchat.server.deadlines import BodyDeadline, read_timeout
from memchat.server.errors import HTTPProblem, body, error_response
from memchat.storage import database

log = logging.getLogger("memchat.server")

HEALTH_TIMEOUT = 5.0
"""Seconds /healthz waits for the database before it answers 503 (at most --db-timeout)."""
HEALTH_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="memchat-health")
"""/healthz's own threads: a health check never waits behind turns and requests for a thread."""


class InternalErrors:
    """A failure no handler answers becomes an ordinary 500 with an OpenAI-shaped body, logged in
    one line (with its traceback under MEMCHAT_DEBUG=1). Starlette's own catch-all raises the
    failure again after answering, so uvicorn closes the connection and a client's next request
    on it meets a reset; answered here, the connection stays usable. A failure after the response
    started cannot be answered any more: that one still ends the connection."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            log.error(
                "internal error on %s %s: %s",
                scope["method"],
                scope["path"],
                redact(repr(exc)),
                exc_info=debug_enabled(),
            )
            if started:
                raise
            await error_response(exc)(scope, receive, send)


class BodyLimit:
    """413 for a body over the limit, whether it declares its length or streams it."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(self.message)
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send)

    @property
    def message(self) -> str:
        return f"the request body is over the server's limit of {self.limit} bytes (memchat serve --max-body)"

    async def _refuse(self, send):
        response = JSONResponse(body(413, self.message), status_code=413)
        await response({"type": "http"}, None, send)


class _TooLarge(StarletteHTTPException):
    """Raised from within the body's reading: as an HTTP exception, the framework's body parsing
    lets it through (any other failure there is its own 400) and the handlers answer 413."""

    def __init__(self, message: str):
        super().__init__(413, message)


def create_app(
    db: str | None = None,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    keys_required: bool = False,
    without_keys: bool = False,
    max_pending: int = DEFAULT_MAX_PENDING,
    health_timeout: float = HEALTH_TIMEOUT,
) -> FastAPI:
    """`keys_required`: refuse requests without a valid key even when no key exists (a server
    listening beyond loopback must never fall open because its last key was revoked).
    `without_keys`: the operator's choice to answer without a key while no key is live, on a
    database that has had keys (otherwise refused once any key was made).
    `max_pending`: requests in progress at once past which the next gets 503 (`Backlog`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.keys_required = keys_required
        app.state.without_keys = without_keys
        app.state.memory = Memory(db).prepare()
        # Seconds of imports: paid here, before the worker accepts a connection (and /healthz
        # answers), rather than by the first turn it is sent.
        llm.load()
        try:
            yield
        finally:
            app.state.memory.close()

    app = FastAPI(
        title="memchat",
        version=version("memchat"),
        summary="Persistent conversation memory behind OpenAI's Conversations, Responses and Chat Completions APIs.",
        lifespan=lifespan,
    )

    @app.exception_handler(MemchatError)
    async def memchat_error(request: Request, exc: MemchatError):
        if not isinstance(cause_of(exc), MemchatError):
            raise cause_of(exc)  # memchat's own failure, after the turn stored its message: logged as a 500
        return error_response(exc)

    @app.exception_handler(HTTPProblem)
    async def refused(request: Request, exc: HTTPProblem):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problem = exc.errors()[0]
        where = [str(part) for part in problem.get("loc", ()) if part not in ("body", "query", "path", "header")]
        param = ".".join(where) or None
        reason = problem.get("msg", "invalid value").removeprefix("Value error, ")
        message = f"{param}: {reason}" if param else reason
        if problem.get("type") == "json_invalid":
            message = "the body is not valid JSON"
        return JSONResponse(body(400, message, param=param, code="invalid_value"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(body(exc.status_code, message), status_code=exc.status_code, headers=exc.headers)

    @app.get("/healthz", tags=["Service"])
    async def health():
        """200 when the database answers at this memchat's schema; 503 naming the cause when not,
        or when it does not answer within `health_timeout` (on its own threads, never queued
        behind requests)."""
        check = asyncio.get_running_loop().run_in_executor(HEALTH_THREADS, app.state.memory.schema_revision)
        try:
            revision, head = await asyncio.wait_for(check, health_timeout)
        except TimeoutError:
            return JSONResponse(
                {"status": "unavailable", "cause": f"the database did not answer within {health_timeout:g} s"},
                status_code=503,
            )
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "cause": redact(f"the database does not answer: {exc}")}, status_code=503
            )
        if revision != head:
            return JSONResponse(
                {"status": "unavailable", "cause": f"the database is at schema {revision}, this memchat needs {head}"},
                status_code=503,
            )
        return {"status": "ok", "schema": revision, "version": version("memchat")}

    @app.get("/metrics", tags=["Service"])
    async def prometheus():
        """Prometheus metrics, answered on the event loop (the figures are in memory or files):
        never queued behind requests that hold the worker threads."""
        text, content_type = metrics.exposition()
        return Response(text, media_type=content_type)

    app.include_router(conversations.router)
    app.include_router(responses.router)
    app.include_router(chat.router)
    app.include_router(own.router)
    app.add_middleware(BodyLimit, limit=max_body)
    app.add_middleware(BodyDeadline, seconds=read_timeout())
    app.add_middleware(Backlog, limit=max_pending)
    app.add_middleware(InternalErrors)
    return app


def app_from_environment() -> FastAPI:
    """The app as `memchat serve` configures it for each worker process (uvicorn's factory)."""
    return create_app(
        database_from_environment(),
        max_body=serve_max_body(),
        keys_required=serve_keys_required(),
        without_keys=serve_without_keys(),
        max_pending=serve_max_pending(),
        health_timeout=min(HEALTH_TIMEOUT, database.db_timeout()),
    )
