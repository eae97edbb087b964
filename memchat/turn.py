"""One conversational turn: fit the thread's memory to the budget, call the model, store the reply.

The user's message is stored (as `pending`) before the call, so a crash or a provider failure
never loses it; only messages of completed turns are sent as history later. A turn reads the
history newest first and stops where the budget is full, so its cost does not grow with the
thread; token counts missing for the turn's tokenizer are made for the messages read, and kept.
"""

from __future__ import annotations

import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from memchat import llm
from memchat.config import DEFAULT_MAX_TOKENS, FALLBACK_BUDGET, default_model
from memchat.context import (
    Candidate,
    Context,
    ContextEntry,
    Counter,
    MessageCost,
    assemble,
    history_room,
    room_for,
    select_window,
)
from memchat.errors import ContextTooLong, InvalidInput, ReplyCutOff, ThreadBusy
from memchat.storage.models import MessageCreate, MessagePublic, ThreadPublic
from memchat.storage.repository import Store
from memchat.tokens import Tokenizer, tokenizer_for

LEASE_MARGIN_SECONDS = 60.0
TIGHTER = 0.8
"""After the provider refuses a prompt as too long, the retry's budget, as a share of what was sent."""
SMALLEST_PAGE = 16
LARGEST_PAGE = 4096
TYPICAL_MESSAGE_TOKENS = 100
"""Sizes the first page of history so that one read usually covers the budget: a page of
budget / 100 messages holds the window unless the messages average under 100 tokens (chat
answers are longer than that); pages then grow fourfold."""


@dataclass(frozen=True)
class TurnOptions:
    model: str | None = None
    budget: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    api_base: str | None = None
    timeout: float = llm.DEFAULT_TIMEOUT


@dataclass(frozen=True)
class Reply:
    text: str
    thread_id: str
    message: MessagePublic
    user_message: MessagePublic
    context: Context


@dataclass(frozen=True)
class _Plan:
    model: str
    tokenizer: Tokenizer
    budget: int
    room: int
    count: Counter
    cost: MessageCost
    count_texts: Callable[[list[str]], list[int]]

    def tokens(self, text: str) -> int:
        return self.count_texts([text])[0]


def resolve_model(thread: ThreadPublic, options: TurnOptions) -> str:
    return options.model or thread.model or default_model()


def resolve_budget(thread: ThreadPublic, options: TurnOptions, model: str) -> int:
    """`--budget`, else the thread's budget, else what the model accepts minus the reply's room."""
    if options.budget is not None:
        return options.budget
    if thread.budget is not None:
        return thread.budget
    context_size = llm.max_input_tokens(model)
    room = context_size - max_tokens(options) if context_size else 0
    return room if room > 0 else FALLBACK_BUDGET


def max_tokens(options: TurnOptions) -> int:
    value = options.max_tokens if options.max_tokens is not None else DEFAULT_MAX_TOKENS
    if value <= 0:
        raise InvalidInput(f"--max-tokens must be positive, not {value}")
    return value


def validate_text(text: str) -> str:
    if not text or not text.strip():
        raise InvalidInput("the message is empty")
    return text


def _plan(thread: ThreadPublic, options: TurnOptions) -> _Plan:
    model = resolve_model(thread, options)
    tokenizer = tokenizer_for(model)
    budget = resolve_budget(thread, options, model)
    count = llm.counter(model, tokenizer)
    room = room_for(budget, tokenizer.margin)
    return _Plan(model, tokenizer, budget, room, count, llm.message_cost(count), llm.text_counter(model, tokenizer))


def first_page(room: int) -> int:
    return max(SMALLEST_PAGE, min(LARGEST_PAGE, room // TYPICAL_MESSAGE_TOKENS))


def history_newest_first(store: Store, thread_id: str, plan: _Plan, *, first: int, before: int | None = None) -> Iterator[Candidate]:
    """Completed messages, newest first, with their counts by the plan's tokenizer: pages grow
    from the size the budget suggests, and counts missing on a page are made once and kept."""
    limit = first
    while True:
        page = store.history_page(thread_id, plan.tokenizer.name, before=before, limit=limit)
        missing = [row.id for row in page if row.tokens is None]
        counted: dict[int, int] = {}
        if missing:
            contents = store.contents(missing)
            counted = dict(zip(missing, plan.count_texts([contents[i] for i in missing])))
            store.save_token_counts(plan.tokenizer.name, counted)
        for row in page:
            yield Candidate(row.id, row.position, row.role, counted.get(row.id, row.tokens))
        if len(page) < limit:
            return
        before = page[-1].position
        limit = min(limit * 4, LARGEST_PAGE)


def _build(
    store: Store, thread: ThreadPublic, text: str | None, plan: _Plan, *, include_dropped: bool
) -> tuple[Context, int]:
    system_tokens = plan.tokens(thread.system) if thread.system else 0
    new_tokens = plan.tokens(text) if text is not None else 0
    room = history_room(system=thread.system, new_message=text, budget=plan.budget, room=plan.room, count=plan.count)
    history = history_newest_first(store, thread.id, plan, first=first_page(room))
    window = select_window(history, room, plan.cost)
    entries, prompt_tokens = assemble(
        system=thread.system,
        window=window,
        contents=store.contents([c.id for c in window]),
        new_message=text,
        room=plan.room,
        count=plan.count,
        cost=plan.cost,
        system_tokens=system_tokens,
        new_tokens=new_tokens,
    )
    if include_dropped:
        entries = _with_dropped(store, thread, plan, entries)
    context = Context(
        entries=entries,
        budget=plan.budget,
        room=plan.room,
        prompt_tokens=prompt_tokens,
        framing_tokens=plan.count([]),
        model=plan.model,
        tokenizer=plan.tokenizer.name,
    )
    return context, new_tokens


def _with_dropped(store: Store, thread: ThreadPublic, plan: _Plan, entries: list[ContextEntry]) -> list[ContextEntry]:
    first_kept = next((e.position for e in entries if e.kind == "history"), None)
    older = list(history_newest_first(store, thread.id, plan, first=LARGEST_PAGE, before=first_kept))
    older.reverse()
    contents = store.contents([c.id for c in older])
    dropped = [
        ContextEntry(c.role, contents[c.id], "history", plan.cost(c.role, c.tokens), False, c.position) for c in older
    ]
    split = 1 if entries and entries[0].kind == "system" else 0
    return entries[:split] + dropped + entries[split:]


def build_context(store: Store, thread_ref: str, text: str | None, options: TurnOptions, *, with_dropped: bool) -> Context:
    """What the next turn would send, for a preview."""
    with store.snapshot():
        thread = store.thread(thread_ref)
        context, _ = _build(store, thread, text, _plan(thread, options), include_dropped=with_dropped)
    return context


def take_turn(
    store: Store,
    thread_ref: str,
    text: str | None,
    options: TurnOptions,
    *,
    stream: bool = False,
    on_text: Callable[[str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> Reply:
    """A turn; with `text` None, the thread's last unanswered message is sent again (`retry`)."""
    reply_tokens = max_tokens(options)
    thread_id = store.thread(thread_ref).id
    with _turn_lease(store, thread_id, options.timeout):
        return _take_turn(store, thread_id, text, options, reply_tokens, stream, on_text, on_note)


def _take_turn(
    store: Store,
    thread_ref: str,
    text: str | None,
    options: TurnOptions,
    reply_tokens: int,
    stream: bool,
    on_text: Callable[[str], None] | None,
    on_note: Callable[[str], None] | None,
) -> Reply:
    with store.snapshot():
        thread = store.thread(thread_ref)
        unanswered = None
        if text is None:
            unanswered = store.unanswered(thread.id)
            if unanswered is None:
                raise InvalidInput(f"nothing to retry: the last message of thread {thread.id} has its reply")
            text = unanswered.content
        validate_text(text)
        plan = _plan(thread, options)
        llm.check_model(plan.model, api_base=options.api_base)
        context, new_tokens = _build(store, thread, text, plan, include_dropped=False)
    if unanswered is None:
        user_message = store.append(
            thread.id,
            MessageCreate(role="user", content=text, status="pending"),
            tokens=(plan.tokenizer.name, new_tokens),
        )
    else:
        user_message = store.set_status(unanswered.id, "pending")

    def call(context: Context) -> llm.Completion:
        return llm.complete(
            model=plan.model,
            messages=context.messages,
            max_tokens=reply_tokens,
            temperature=options.temperature,
            api_base=options.api_base,
            stream=stream,
            on_text=on_text,
            timeout=options.timeout,
        )

    try:
        try:
            completion = call(context)
        except ContextTooLong:
            context = _tighter(store, thread, text, plan, context, on_note)
            completion = call(context)
    except ReplyCutOff as cut:
        store.finish_turn(
            user_message.id,
            MessageCreate(role="assistant", content=cut.text, status="partial", model=plan.model),
            tokens=(plan.tokenizer.name, plan.tokens(cut.text)),
            user_status="failed",
        )
        raise
    except BaseException:
        store.set_status(user_message.id, "failed")
        raise
    reply = store.finish_turn(
        user_message.id,
        MessageCreate(
            role="assistant",
            content=completion.text,
            model=completion.model,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cost=completion.cost,
            latency_ms=completion.latency_ms,
        ),
        tokens=(plan.tokenizer.name, plan.tokens(completion.text)),
    )
    return Reply(
        text=completion.text,
        thread_id=thread.id,
        message=reply,
        user_message=user_message.model_copy(update={"status": "complete"}),
        context=context,
    )


@contextmanager
def _turn_lease(store: Store, thread_id: str, timeout: float) -> Iterator[None]:
    """Hold the thread's lease for the turn: turns on one thread run one at a time, so each sees
    every turn completed before it. The lease outlives the longest turn (the model call's
    timeout plus a margin) and is taken over early from a holder on this machine that has died."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    seconds = timeout + LEASE_MARGIN_SECONDS
    give_up = time.monotonic() + seconds
    while not store.acquire_lease(thread_id, holder, seconds, _holder_is_gone):
        if time.monotonic() > give_up:
            raise ThreadBusy(f"thread {thread_id} is busy with another turn; try again when it ends")
        time.sleep(0.02 + random.random() * 0.08)
    try:
        yield
    finally:
        store.release_lease(thread_id, holder)


def _holder_is_gone(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _tighter(
    store: Store, thread: ThreadPublic, text: str, plan: _Plan, sent: Context, on_note: Callable[[str], None] | None
) -> Context:
    """The provider's tokenizer counts more than ours: fit once more, to TIGHTER of what was sent."""
    budget = max(1, int(sent.prompt_tokens * TIGHTER))
    if on_note:
        on_note(
            f"the provider counted the prompt of {sent.prompt_tokens} tokens as too long; "
            f"retrying once with a budget of {budget}"
        )
    tighter = replace(plan, budget=budget, room=room_for(budget, plan.tokenizer.margin))
    with store.snapshot():
        context, _ = _build(store, thread, text, tighter, include_dropped=False)
    return context
