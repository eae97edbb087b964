"""How long a client may take to send its request (`memchat serve --read-timeout`). Without a
deadline, a client that opens connections and sends a request a byte at a time, or never
finishes it, holds each connection for as long as it likes; enough of them and nobody else gets
one. uvicorn closes a connection idle after a response (`--timeout-keep-alive`) but puts no limit
on the time a request's head takes, so both limits are here: the head within the protocol, and
the body, which the application reads, as a 408."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from memchat.config import serve_read_timeout as read_timeout


class HeadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol (httptools) that closes a connection whose request head (request
    line and headers) has not arrived whole within the deadline: counted from the connection's
    opening for its first request, from a request's first byte for the next ones (a connection
    idle between requests is uvicorn's keep-alive time-out's to close)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_timeout = read_timeout()
        self.head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._start_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.head_deadline is None:
            self._start_head_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _start_head_deadline(self) -> None:
        self.head_deadline = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _cancel_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_too_slow(self) -> None:
        self.head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class BodyTooSlow(HTTPException):
    """Raised from within the body's reading, as the body limit's 413 is: the handlers answer 408
    and the connection is closed (what is left of the body would otherwise be read as a request)."""

    def __init__(self, seconds: float):
        super().__init__(
            408,
            f"the request body stopped arriving for {seconds:g} seconds (memchat serve --read-timeout)",
            headers={"Connection": "close"},
        )


class BodyDeadline:
    """408 for a request whose body pauses longer than `seconds` between two pieces. Only the
    body's reading is timed: once it is whole, waiting for the client to go away (as a streamed
    reply does) is not."""

    def __init__(self, app, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body_whole = False

        async def timed():
            nonlocal body_whole
            if body_whole:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.seconds)
            except asyncio.TimeoutError:
                raise BodyTooSlow(self.seconds) from None
            body_whole = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed, send)
