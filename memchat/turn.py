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

from memchat import llm, summary
from memchat.config import DEFAULT_MAX_TOKENS, FALLBACK_BUDGET, default_model
from memchat.context import (
    RECALL_SHARE,
    Candidate,
    Context,
    ContextEntry,
    Counter,
    Excerpt,
    Extra,
    MessageCost,
    assemble,
    fit_excerpts,
    history_room,
    room_for,
    select_window,
    summary_cap,
    summary_text,
)
from memchat.errors import ContextTooLong, InvalidInput, ProviderError, ReplyCutOff, ThreadBusy
from memchat.storage.models import (
    DEFAULT_SUMMARY_SHARE,
    MAX_RECALL,
    MessageCreate,
    MessagePublic,
    SummaryPublic,
    ThreadPublic,
    as_utc,
)
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
FOLD_KEEP = 0.5
"""When a summary is made, it folds all but the newest messages filling this share of the
window's room: later turns refill the window before another summary call is due, so summary
calls come once every several turns rather than on every turn."""
RECALL_CANDIDATES = 3
"""Matches read per excerpt wanted, so that one too long to fit is passed over for the next."""
POLICIES = ("window", "summary")


@dataclass(frozen=True)
class TurnOptions:
    model: str | None = None
    budget: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    api_base: str | None = None
    timeout: float = llm.DEFAULT_TIMEOUT
    policy: str | None = None
    recall: int | None = None
    summary_model: str | None = None

    def __post_init__(self):
        if self.policy is not None and self.policy not in POLICIES:
            raise InvalidInput(f"unknown memory policy {self.policy!r}: use window or summary")
        if self.recall is not None and not 0 <= self.recall <= MAX_RECALL:
            raise InvalidInput(f"recall must be between 0 and {MAX_RECALL} messages, not {self.recall}")


@dataclass(frozen=True)
class Reply:
    text: str
    thread_id: str
    message: MessagePublic
    user_message: MessagePublic
    context: Context
    summary: SummaryPublic | None = None
    """The summary this turn made, if it made one."""


@dataclass(frozen=True)
class _Memory:
    """The long-term memory a turn uses: its policy, its recall and the current summary."""

    policy: str
    recall: int
    share: float
    summary: SummaryPublic | None = None

    @classmethod
    def of(cls, store: Store, thread: ThreadPublic, options: TurnOptions) -> _Memory:
        policy = options.policy or thread.policy
        recall = options.recall if options.recall is not None else thread.recall
        current = store.current_summary(thread.id) if policy == "summary" else None
        return cls(policy, recall, thread.summary_share or DEFAULT_SUMMARY_SHARE, current)


@dataclass(frozen=True)
class _FoldDue:
    through: int
    cap: int


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


class _Replay:
    """History read once from the database, walked as many times as the policy needs."""

    def __init__(self, newest_first: Iterator[Candidate]):
        self._source = newest_first
        self._seen: list[Candidate] = []

    def __iter__(self) -> Iterator[Candidate]:
        index = 0
        while True:
            if index < len(self._seen):
                yield self._seen[index]
                index += 1
                continue
            following = next(self._source, None)
            if following is None:
                return
            self._seen.append(following)


def _extra_cost(plan: _Plan, extra: Extra | None) -> int:
    return plan.cost("system", extra.tokens) if extra else 0


def _window_start(window: list[Candidate], thread: ThreadPublic) -> int:
    return window[0].position if window else thread.message_count


def _build(
    store: Store,
    thread: ThreadPublic,
    text: str | None,
    plan: _Plan,
    memory: _Memory,
    *,
    include_dropped: bool,
) -> tuple[Context, int, _FoldDue | None]:
    """The context a turn sends under its memory policy, and the summary fold due, if any."""
    system_tokens = plan.tokens(thread.system) if thread.system else 0
    new_tokens = plan.tokens(text) if text is not None else 0
    room = history_room(system=thread.system, new_message=text, budget=plan.budget, room=plan.room, count=plan.count)
    history = _Replay(history_newest_first(store, thread.id, plan, first=first_page(room)))
    cap = summary_cap(room, memory.share)
    summarized = -1
    condensed = None
    if memory.policy == "summary" and memory.summary is not None:
        current = memory.summary
        candidate = _summary_extra(plan, current.content, current.first_position, current.last_position)
        if _extra_cost(plan, candidate) <= cap:
            condensed, summarized = candidate, current.last_position
    used = _extra_cost(plan, condensed)
    recalled = None
    if memory.recall and text is not None:
        before = _window_start(select_window(history, room - used, plan.cost, after=summarized), thread)
        recalled = _recall(store, thread, text, plan, k=memory.recall, before=before, room=int(room * RECALL_SHARE))
        used += _extra_cost(plan, recalled)
    window = select_window(history, room - used, plan.cost, after=summarized)
    due = None
    if memory.policy == "summary":
        start = _window_start(window, thread)
        left_out = next((c for c in history if c.position < start), None)
        if left_out is not None and left_out.position > summarized:
            keep_room = int((room - cap - _extra_cost(plan, recalled)) * FOLD_KEEP)
            due = _FoldDue(_window_start(select_window(history, keep_room, plan.cost), thread) - 1, cap)
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
        extras=[extra for extra in (condensed, recalled) if extra is not None],
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
        policy=memory.policy,
        summary_due=(summarized + 1, due.through) if due else None,
    )
    return context, new_tokens, due


def _summary_extra(plan: _Plan, content: str, first: int, last: int) -> Extra:
    text = summary_text(content, first, last)
    return Extra("summary", text, plan.tokens(text), span=(first, last))


def _recall(
    store: Store, thread: ThreadPublic, text: str, plan: _Plan, *, k: int, before: int, room: int
) -> Extra | None:
    matches = store.recall(thread.id, text, before=before, limit=k * RECALL_CANDIDATES)
    excerpts = [
        Excerpt(m.position, m.role, m.content, as_utc(m.created_at).strftime("%Y-%m-%d %H:%M UTC")) for m in matches
    ]
    return fit_excerpts(excerpts, k, room, plan.tokens, plan.cost)


def _with_dropped(store: Store, thread: ThreadPublic, plan: _Plan, entries: list[ContextEntry]) -> list[ContextEntry]:
    first_kept = next((e.position for e in entries if e.kind == "history"), None)
    older = list(history_newest_first(store, thread.id, plan, first=LARGEST_PAGE, before=first_kept))
    older.reverse()
    contents = store.contents([c.id for c in older])
    dropped = [
        ContextEntry(c.role, contents[c.id], "history", plan.cost(c.role, c.tokens), False, c.position) for c in older
    ]
    split = sum(1 for e in entries if e.kind in ("system", "summary", "recall"))
    return entries[:split] + dropped + entries[split:]


def build_context(store: Store, thread_ref: str, text: str | None, options: TurnOptions, *, with_dropped: bool) -> Context:
    """What the next turn would send, for a preview."""
    with store.snapshot():
        thread = store.thread(thread_ref)
        memory = _Memory.of(store, thread, options)
        context, _, _ = _build(store, thread, text, _plan(thread, options), memory, include_dropped=with_dropped)
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
    thread = store.thread(thread_ref)
    calls = 2 if (options.policy or thread.policy) == "summary" else 1
    with _turn_lease(store, thread.id, options.timeout * calls):
        return _take_turn(store, thread.id, text, options, reply_tokens, stream, on_text, on_note)


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
        memory = _Memory.of(store, thread, options)
        context, new_tokens, due = _build(store, thread, text, plan, memory, include_dropped=False)
    made = None
    if due is not None:
        try:
            made = _fold(store, thread, plan, memory, due, options)
            memory = replace(memory, summary=made)
            if on_note:
                on_note(f"summarized messages #{made.first_position}–#{made.last_position} with {made.model}")
        except ProviderError as exc:
            memory = replace(memory, policy="window")
            if on_note:
                on_note(f"could not update the summary ({exc}); this turn uses the window policy, the next one tries again")
        with store.snapshot():
            context, new_tokens, _ = _build(store, thread, text, plan, memory, include_dropped=False)
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
            context = _tighter(store, thread, text, plan, memory, context, on_note)
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
        summary=made,
    )


def _fold(
    store: Store, thread: ThreadPublic, plan: _Plan, memory: _Memory, due: _FoldDue, options: TurnOptions
) -> SummaryPublic:
    """Fold the current summary and the messages that left the window into a new summary."""
    request = fold_request(plan, due.through, due.cap)
    return summary.fold(
        store,
        thread,
        request,
        model=summary.model_for(thread, plan.model, options.summary_model),
        previous=memory.summary,
        timeout=options.timeout,
        api_base=options.api_base,
    )


MIN_SUMMARY_TOKENS = 16


def fold_request(plan: _Plan, through: int, cap: int) -> summary.FoldRequest:
    """A summary covering up to `through` that must cost at most `cap` in the turn's prompt."""
    header = _extra_cost(plan, _summary_extra(plan, "", 0, through))
    if cap - header < MIN_SUMMARY_TOKENS:
        raise ProviderError(
            f"the budget leaves a summary only {max(cap - header, 0)} tokens; raise the budget or --summary-share"
        )

    def fits(text: str, first: int, last: int) -> bool:
        return _extra_cost(plan, _summary_extra(plan, text, first, last)) <= cap

    return summary.FoldRequest(through=through, max_tokens=cap - header, fits=fits)


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
    store: Store,
    thread: ThreadPublic,
    text: str,
    plan: _Plan,
    memory: _Memory,
    sent: Context,
    on_note: Callable[[str], None] | None,
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
        context, _, _ = _build(store, thread, text, tighter, memory, include_dropped=False)
    return context


def rebuild_summary(
    store: Store, thread_ref: str, options: TurnOptions, *, on_note: Callable[[str], None] | None = None
) -> SummaryPublic:
    """Make the thread's summary again from its first message, in as many calls as its span
    needs: over the span of the current summary, or what the next turn would leave out."""
    thread = store.thread(thread_ref)
    with store.snapshot():
        plan = _plan(thread, options)
        current = store.current_summary(thread.id)
        fresh = _Memory("summary", 0, thread.summary_share or DEFAULT_SUMMARY_SHARE)
        _, _, due = _build(store, thread, None, plan, fresh, include_dropped=False)
    through = max(current.last_position if current else -1, due.through if due else -1)
    if through < 0:
        raise InvalidInput(f"nothing to summarize: all of thread {thread.id} fits its budget")
    cap = due.cap if due else summary_cap(
        history_room(system=thread.system, new_message=None, budget=plan.budget, room=plan.room, count=plan.count),
        fresh.share,
    )
    model = summary.model_for(thread, plan.model, options.summary_model)
    made = None
    with _turn_lease(store, thread.id, options.timeout):
        while made is None or made.last_position < through:
            made = summary.fold(
                store,
                thread,
                fold_request(plan, through, cap),
                model=model,
                previous=made,
                timeout=options.timeout,
                api_base=options.api_base,
            )
            if on_note and made.last_position < through:
                on_note(f"summarized messages #{made.first_position}–#{made.last_position}; continuing to #{through}")
    return made
