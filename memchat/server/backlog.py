"""A bounded queue in front of the worker threads: when a stalled database or provider holds
them, requests pile up in the worker process until clients time out and the process cannot
answer anything. Past `limit` requests in progress at once (answered or waiting for a thread),
the next is refused at once with 503 and `Retry-After`, so a client or load balancer can go
elsewhere or come back. /healthz and /metrics are never refused: they do not use the threads."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from memchat.server.errors import body

SERVICE_PATHS = ("/healthz", "/metrics")
RETRY_AFTER_SECONDS = 1


class Backlog:
    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit
        self.in_progress = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in SERVICE_PATHS:
            return await self.app(scope, receive, send)
        if self.in_progress >= self.limit:
            response = JSONResponse(
                body(
                    503,
                    f"the server is busy: {self.limit} requests are in progress in this worker "
                    "(memchat serve --max-pending); try again shortly",
                    code="server_busy",
                ),
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
            return await response(scope, receive, send)
        self.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1
