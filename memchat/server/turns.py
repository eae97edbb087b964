"""A turn taken for an HTTP request: `Memory.say` on a worker thread (the event loop never
waits on the database or the provider), its outcome counted in the metrics, and for a streamed
reply a bridge that hands each piece to the response as it arrives. A client that goes away
mid-stream stops the turn as Ctrl-C stops `memchat say`: what arrived is kept as a partial
reply and the user's message stays, unanswered, for a retry."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from starlette.requests import Request

from memchat.api import Memory
from memchat.config import serve_busy_wait as busy_wait
from memchat.config import serve_turn_timeout as timeout
from memchat.errors import MemchatError, ProviderError, ReplyCutOff, ThreadBusy, Unanswered, cause_of
from memchat.records import MessageCreate, MessagePublic
from memchat.schemas import TurnOptions
from memchat.server import metrics
from memchat.server.access import memory_of
from memchat.turn import Reply

TURN_THREADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="memchat-turn")
"""Turns in flight at once in one worker process (each mostly waits on its provider)."""


class ClientGone(KeyboardInterrupt):
    """The client closed the connection while its reply streamed (raised in the turn's thread,
    where it works as Ctrl-C does)."""


@dataclass
class TurnRequest:
    thread_id: str
    text: str | None
    """None: send the thread's last unanswered message again (a retry)."""
    options: TurnOptions = field(default_factory=TurnOptions)
    """The turn's options as the request gave them (the server's own time-out and busy wait are
    set over them when the turn is taken)."""
    earlier: tuple[tuple[str, str], ...] = ()
    """(role, text) input items stored before `text`, within the turn."""
    items: tuple[MessageCreate, ...] = ()
    """The turn's new items of any kind before `text` (tool outputs, a message with images or
    files), as `Memory.say` takes them."""
    edit_at: int | None = None
    """Set: ask user message #edit_at again with `text`, in a fork just before it (`memchat edit`)."""
    made_for_turn: bool = False
    """The thread was made for this turn (a response without a conversation, or the fork a
    response after an older one starts): a turn refused before it stored the user's message takes
    the thread away again, so a refusal stores nothing."""


def take(
    memory: Memory,
    request: TurnRequest,
    *,
    stream: bool = False,
    on_text: Callable[[str], None] | None = None,
    on_start: Callable[[MessagePublic], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> Reply:
    """The turn, timed and counted."""
    started = time.perf_counter()
    try:
        reply = _spoken(
            memory,
            request,
            request.options.model_copy(update={"timeout": timeout(), "wait": busy_wait()}),
            stream=stream,
            on_text=on_text,
            on_start=on_start,
            on_note=on_note,
            earlier=request.earlier,
            **({"items": request.items} if request.items else {}),
        )
    except BaseException as raised:
        failure = cause_of(raised)
        if isinstance(failure, ReplyCutOff):
            metrics.TURNS.labels("partial").inc()
        elif isinstance(failure, ThreadBusy):
            metrics.TURNS.labels("busy").inc()
        elif isinstance(failure, ProviderError):
            metrics.TURNS.labels("failed").inc()
            metrics.PROVIDER_ERRORS.labels(failure.kind).inc()
        else:
            metrics.TURNS.labels("failed" if isinstance(raised, Unanswered) else "refused").inc()
        raise
    elapsed = time.perf_counter() - started
    metrics.TURNS.labels("completed").inc()
    metrics.TURN_SECONDS.observe(elapsed)
    if reply.message.latency_ms is not None:
        metrics.OVERHEAD_SECONDS.observe(max(elapsed - reply.message.latency_ms / 1000, 0.0))
    return reply


def _spoken(memory: Memory, request: TurnRequest, options: TurnOptions, **delivery: Any) -> Reply:
    """The turn; a thread made for it is taken away again when the turn is refused before the
    user's message is stored (a failure after it keeps the thread: it holds that message)."""
    speak = memory.say if request.edit_at is None else partial(memory.edit, position=request.edit_at)
    try:
        return speak(request.thread_id, text=request.text, options=options, **delivery)
    except BaseException as failure:
        if request.made_for_turn and not isinstance(failure, Unanswered):
            with contextlib.suppress(MemchatError):
                memory.delete(request.thread_id)
        raise


async def answer(request: Request, ask: Callable[[Memory], TurnRequest]) -> Reply:
    """A reply that is not streamed, in one hand-over to a turn thread: the caller's key checked,
    the request read into a turn (`ask`) and the turn taken there, so the event loop waits on one
    thread instead of three (each hand-over costs a wake-up and a fight for the GIL)."""

    def work() -> Reply:
        memory = memory_of(request)
        return take(memory, ask(memory))

    return await asyncio.get_running_loop().run_in_executor(TURN_THREADS, work)


class StreamedTurn:
    """A streamed turn, in one hand-over to a turn thread (the caller's key checked and the
    request read into a turn by `ask` there, as `answer` does): `await next()` gives ("start",
    the stored user message), then ("text", piece) as the reply arrives, then ("reply", Reply) or
    ("error", exception); a failure before the user's message is stored comes as ("error", ...)
    at once. `memory` and `turn` are set before the first event. With `notes`, what memchat did
    on the user's behalf (a summary made, a fork for an edit) comes as ("note", text) events too,
    wherever it happens (memchat's own API passes them on; the OpenAI protocols have no place
    for them)."""

    def __init__(self, request: Request, ask: Callable[[Memory], TurnRequest], *, notes: bool = False):
        self._notes = notes
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._gone = threading.Event()
        self.memory: Memory | None = None
        self.turn: TurnRequest | None = None
        self._future = self._loop.run_in_executor(TURN_THREADS, self._work, request, ask)

    def _put(self, event: tuple[str, Any]) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:
            pass  # the server is shutting down; the turn itself has stored what it could

    def _on_text(self, piece: str) -> None:
        if self._gone.is_set():
            raise ClientGone()
        self._put(("text", piece))

    def _work(self, request: Request, ask: Callable[[Memory], TurnRequest]) -> None:
        try:
            self.memory = memory_of(request)
            self.turn = ask(self.memory)
            reply = take(
                self.memory,
                self.turn,
                stream=True,
                on_text=self._on_text,
                on_start=lambda m: self._put(("start", m)),
                on_note=(lambda text: self._put(("note", text))) if self._notes else None,
            )
            event = ("reply", reply)
        except BaseException as failure:
            event = ("error", failure)
        self._put(event)

    async def next(self) -> tuple[str, Any]:
        return await self._queue.get()

    async def begun(self) -> tuple[MessagePublic | None, tuple[str, Any]]:
        """The stored user message (None if the turn failed before storing it) and the first
        event after it: the reply's first piece, or how the turn ended."""
        started = None
        event = await self.next()
        if event[0] == "start":
            started = event[1]
            event = await self.next()
        return started, event

    def abandon(self) -> None:
        """The client has gone: the turn stops at the next piece that arrives."""
        self._gone.set()
