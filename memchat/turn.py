"""One conversational turn: fit the thread's memory to the budget, call the model, store the reply.

The user's message is stored (as `pending`) before the call, so a crash or a provider failure
never loses it; only messages of completed turns are sent as history later. Under the summary
policy a turn first folds the history that has left the window into a new summary (at most one
model call); if that fails, the turn goes ahead with the window policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from memchat import llm, prompt, summary
from memchat.context import Context, history_room, room_for, summary_cap
from memchat.errors import (
    ContextTooLong,
    HistoryMoved,
    InvalidInput,
    ProviderError,
    ReplyCutOff,
    Unanswered,
)
from memchat.lease import Lease, holder_is_gone, turn_in_progress, turn_lease
from memchat.prompt import TurnOptions, build_context, validate_text
from memchat.records import MessageCreate, MessagePublic, SummaryPublic, ThreadPublic
from memchat.results import Reply
from memchat.schemas import DEFAULT_SUMMARY_SHARE, title_from_message
from memchat.storage.repository import Store

__all__ = ["Reply", "TurnOptions", "build_context", "first_title", "rebuild_summary", "take_turn", "validate_text"]

TIGHTER = 0.8
"""After the provider refuses a prompt as too long, the retry's budget, as a share of what was sent."""
RUNAWAY_FACTOR = 2
RUNAWAY_SLACK = 64
"""A reply counting over RUNAWAY_FACTOR x the reply tokens asked for, plus RUNAWAY_SLACK, came
from a provider that ignored max_tokens (tokenizers differ, but never by that much): it is
stored whole, and later contexts send only the reply tokens its turn asked for."""


def take_turn(
    store: Store,
    thread_ref: str,
    text: str | None,
    options: TurnOptions,
    *,
    stream: bool = False,
    on_text: Callable[[str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    on_start: Callable[[MessagePublic], None] | None = None,
    earlier: Sequence[MessageCreate] = (),
) -> Reply:
    """A turn; with `text` None, the thread's last unanswered message is sent again (`retry`).
    `earlier` messages are stored just before the user's, under the turn's lease, so no other
    turn lands between them.

    Everything slow that does not depend on the history (loading litellm and the tokenizer,
    checking the model) happens before the thread's lease is taken, so turns on one thread
    follow each other as closely as the model calls allow. An ordinary turn commits twice: the
    lease with the user's message (its context is built just before, and built again if the
    thread changed meanwhile), then the reply with the lease's release. A turn that first folds
    history into a summary takes the lease on its own and commits the summary too."""
    reply_tokens = prompt.max_tokens(options)
    if earlier and text is None:
        raise InvalidInput("a retry sends the unanswered message again; it adds no earlier messages")
    if text is not None:
        prompt.validate_text(text)
    thread = store.thread(thread_ref)
    options = options.model_copy(update={"api_base": prompt.endpoint_for(thread, options)})
    model = prompt.plan_for(thread, options).model
    llm.check_model(model, api_base=options.api_base)
    llm.check_sampling(model, top_p=options.top_p, reasoning_effort=options.reasoning_effort)
    calls = 2 if (options.policy or thread.policy) == "summary" else 1
    wait = options.call_timeout * calls if options.wait is None else options.wait
    begun: dict = {}

    def take(holder: str, seconds: float) -> bool:
        """The lease and the user's message in one commit, on a context built just before."""
        if earlier:
            return not turn_in_progress(store, thread.id) and store.acquire_lease(
                thread.id, holder, seconds, holder_is_gone
            )
        while True:
            with store.snapshot():  # the check and the context in one read transaction
                if turn_in_progress(store, thread.id):
                    return False  # no context is built while another turn holds the thread
                turn = _prepare(store, thread.id, text, options)
            if turn.due is not None:
                begun.clear()
                return store.acquire_lease(thread.id, holder, seconds, holder_is_gone)
            try:
                user_message = _begin(store, turn, holder, seconds)
            except HistoryMoved:
                continue
            if user_message is None:
                return False
            begun.update(turn=turn, user_message=user_message)
            return True

    with turn_lease(store, thread.id, wait, take) as lease:
        if begun:
            turn, user_message = begun["turn"], begun["user_message"]
        else:
            if earlier:
                store.append_messages(
                    thread.id, earlier, lease_holder=lease.holder, first_title=_title_for(thread, earlier)
                )
            turn, user_message = _folded_then_begun(store, thread.id, text, options, lease, on_note)
        return _converse(store, turn, user_message, options, reply_tokens, stream, on_text, on_note, on_start, lease)


@dataclass
class _Turn:
    """What a turn will send, read in one snapshot of the thread."""

    thread: ThreadPublic
    text: str
    unanswered: MessagePublic | None
    """The message a retry sends again (None: `text` is new)."""
    left_unanswered: MessagePublic | None
    plan: prompt.Plan
    memory: prompt.MemoryPlan
    context: Context
    new_tokens: int
    due: prompt.FoldDue | None
    version: int
    """The thread's history version the context was built at (its commit checks it)."""
    made: SummaryPublic | None = None
    """The summary this turn made before its call, if it made one."""


def first_title(said: Sequence[MessageCreate]) -> str | None:
    """The title a thread nobody named takes from the first user message among `said` (None:
    `said` holds no user message). The store gives it only where that message is the thread's
    first user message and the thread has no title, so a title the user gave always wins."""
    first = next((message.content for message in said if message.role == "user"), None)
    return (title_from_message(first) or None) if first is not None else None


def _title_for(thread: ThreadPublic, said: Sequence[MessageCreate]) -> str | None:
    """`first_title`, unless the thread (as the turn read it) has a title already."""
    return None if thread.title else first_title(said)


def _prepare(store: Store, thread_id: str, text: str | None, options: TurnOptions) -> _Turn:
    with store.snapshot():
        thread = prompt.with_turn_system(store.thread(thread_id), options)
        version = store.history_version(thread.id)
        unanswered = left_unanswered = None
        if text is None:
            unanswered = store.unanswered(thread.id)
            if unanswered is None:
                raise InvalidInput(f"nothing to retry: the last message of thread {thread.id} has its reply")
            text = unanswered.content
        else:
            left_unanswered = store.unanswered(thread.id)
        prompt.validate_text(text)
        plan = prompt.plan_for(thread, options)
        llm.check_model(plan.model, api_base=options.api_base)
        llm.check_sampling(plan.model, top_p=options.top_p, reasoning_effort=options.reasoning_effort)
        memory = prompt.MemoryPlan.of(store, thread, options)
        context, new_tokens, due = prompt.build(
            store, thread, text, plan, memory, include_dropped=False, version=version
        )
    return _Turn(thread, text, unanswered, left_unanswered, plan, memory, context, new_tokens, due, version)


def _begin(store: Store, turn: _Turn, holder: str, seconds: float) -> MessagePublic | None:
    """Take the lease and store the user's message in one commit (None: the lease is busy)."""
    said = None if turn.unanswered else _said(turn)
    return store.begin_turn(
        turn.thread.id,
        holder,
        seconds,
        holder_is_gone,
        seen=turn.version,
        message=said,
        resend=turn.unanswered.id if turn.unanswered else None,
        tokens=(turn.plan.tokenizer.name, turn.new_tokens),
        first_title=_title_for(turn.thread, [said]) if said else None,
    )


def _said(turn: _Turn) -> MessageCreate:
    """The user's new message, stored pending until its reply comes."""
    return MessageCreate(role="user", content=turn.text, status="pending")


def _folded_then_begun(
    store: Store,
    thread_id: str,
    text: str | None,
    options: TurnOptions,
    lease: Lease,
    on_note: Callable[[str], None] | None,
) -> tuple[_Turn, MessagePublic]:
    """Under the lease: fold the history that left the window into a new summary, build the
    context again with it, and store the user's message."""
    turn = _prepare(store, thread_id, text, options)
    if turn.due is not None:
        memory = turn.memory
        try:
            made = _fold(
                store,
                turn.thread,
                turn.plan,
                options,
                previous=memory.summary,
                through=turn.due.through,
                cap=turn.due.cap,
                lease=lease,
            )
            memory = replace(memory, summary=made)
            turn = replace(turn, made=made)
            if on_note:
                on_note(f"summarized messages #{made.first_position}–#{made.last_position} with {made.model}")
        except ProviderError as exc:
            memory = replace(memory, policy="window")
            if on_note:
                on_note(
                    f"could not update the summary ({exc}); this turn uses the window policy, the next one tries again"
                )
        with store.snapshot():
            context, new_tokens, _ = prompt.build(
                store, turn.thread, turn.text, turn.plan, memory, include_dropped=False
            )
        turn = replace(turn, memory=memory, context=context, new_tokens=new_tokens)
    if turn.unanswered is None:
        said = [_said(turn)]
        user_message = store.append_messages(
            turn.thread.id,
            said,
            tokens=(turn.plan.tokenizer.name, [turn.new_tokens]),
            first_title=_title_for(turn.thread, said),
        )[0]
    else:
        user_message = store.set_status(turn.thread.id, turn.unanswered.id, "pending")
    return turn, user_message


def _converse(
    store: Store,
    turn: _Turn,
    user_message: MessagePublic,
    options: TurnOptions,
    reply_tokens: int,
    stream: bool,
    on_text: Callable[[str], None] | None,
    on_note: Callable[[str], None] | None,
    on_start: Callable[[MessagePublic], None] | None,
    lease: Lease,
) -> Reply:
    """Call the model with the turn's context and store the reply (with the lease's release)."""
    thread, plan, context = turn.thread, turn.plan, turn.context

    def call(context: Context) -> llm.Completion:
        return llm.complete(
            model=plan.model,
            messages=context.messages,
            max_tokens=reply_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
            reasoning_effort=options.reasoning_effort,
            api_base=options.api_base,
            stream=stream,
            on_text=on_text,
            timeout=options.call_timeout,
        )

    try:
        if on_start:
            on_start(user_message)
        lease.check()
        try:
            completion = call(context)
        except ContextTooLong:
            context = _tighter(store, thread, turn.text, plan, turn.memory, context, on_note)
            completion = call(context)
    except ReplyCutOff as cut:
        store.finish_turn(
            thread.id,
            user_message.id,
            MessageCreate(role="assistant", content=cut.text, status="partial", model=plan.model),
            tokens=(plan.tokenizer.name, plan.tokens(cut.text)),
            user_status="failed",
            lease_holder=lease.holder,
        )
        raise Unanswered(thread.id, user_message, cut) from cut
    except BaseException as failure:
        store.set_status(thread.id, user_message.id, "failed")
        raise Unanswered(thread.id, user_message, failure) from failure
    reply_count = plan.tokens(completion.text)
    context_limit = None
    if reply_count > RUNAWAY_FACTOR * reply_tokens + RUNAWAY_SLACK:
        context_limit = reply_tokens
        if on_note:
            on_note(
                f"the reply has {reply_count} tokens, far over the {reply_tokens} asked for: it is stored whole, "
                f"but later turns send only its first {reply_tokens} tokens"
            )
    try:
        reply = store.finish_turn(
            thread.id,
            user_message.id,
            MessageCreate(
                role="assistant",
                content=completion.text,
                model=completion.model,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                cost=completion.cost,
                latency_ms=completion.latency_ms,
                context_limit=context_limit,
                finish_reason="length" if completion.finish_reason == "length" else None,
            ),
            tokens=(plan.tokenizer.name, reply_count),
            lease_holder=lease.holder,
            release=True,
        )
        lease.released = True
    except BaseException as failure:
        store.set_status(thread.id, user_message.id, "failed")
        raise Unanswered(thread.id, user_message, failure) from failure
    if completion.finish_reason == "length" and on_note:
        on_note(f"the reply stopped at the limit of {reply_tokens} reply tokens (--max-tokens)")
    if completion.replaced and on_note:
        on_note(
            f"the reply held {completion.replaced} character(s) no database stores (NUL, invalid Unicode); "
            "they are stored as U+FFFD (�)"
        )
    if turn.left_unanswered is not None and on_note:
        on_note(
            f"your earlier message #{turn.left_unanswered.position} got no reply and stays out of the history; "
            "say it again to send it (`memchat retry` resends only the latest message)"
        )
    return Reply(
        text=completion.text,
        thread_id=thread.id,
        message=reply,
        user_message=user_message.model_copy(update={"status": "complete"}),
        context=context,
        summary=turn.made,
        finish_reason=completion.finish_reason,
    )


def _fold(
    store: Store,
    thread: ThreadPublic,
    plan: prompt.Plan,
    options: TurnOptions,
    *,
    previous: SummaryPublic | None,
    through: int,
    cap: int,
    lease: Lease,
) -> SummaryPublic:
    """Fold `previous` (None: nothing yet) and the messages after it, up to `through`, into a
    new summary costing at most `cap` in the turn's prompt."""
    return summary.fold(
        store,
        thread,
        prompt.fold_request(plan, through, cap),
        model=summary.model_for(thread, plan.model, options.summary_model),
        previous=previous,
        timeout=options.call_timeout,
        api_base=options.api_base,
        lease_holder=lease.holder,
    )


def _tighter(
    store: Store,
    thread: ThreadPublic,
    text: str,
    plan: prompt.Plan,
    memory: prompt.MemoryPlan,
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
        context, _, _ = prompt.build(store, thread, text, tighter, memory, include_dropped=False)
    return context


def rebuild_summary(
    store: Store, thread_ref: str, options: TurnOptions, *, on_note: Callable[[str], None] | None = None
) -> SummaryPublic:
    """Make the thread's summary again from its first message, in as many calls as its span
    needs: over the span of the current summary, or what the next turn would leave out."""
    thread = store.thread(thread_ref)
    options = options.model_copy(update={"api_base": prompt.endpoint_for(thread, options)})
    with store.snapshot():
        plan = prompt.plan_for(thread, options)
        current = store.current_summary(thread.id)
        fresh = prompt.MemoryPlan("summary", 0, thread.summary_share or DEFAULT_SUMMARY_SHARE)
        _, _, due = prompt.build(store, thread, None, plan, fresh, include_dropped=False)
    through = max(current.last_position if current else -1, due.through if due else -1)
    if through < 0:
        raise InvalidInput(f"nothing to summarize: all of thread {thread.id} fits its budget")
    cap = (
        due.cap
        if due
        else summary_cap(
            history_room(system=thread.system, new_message=None, budget=plan.budget, room=plan.room, count=plan.count),
            fresh.share,
        )
    )
    made = None
    with turn_lease(store, thread.id, options.call_timeout) as lease:
        while made is None or made.last_position < through:
            made = _fold(store, thread, plan, options, previous=made, through=through, cap=cap, lease=lease)
            if on_note and made.last_position < through:
                on_note(f"summarized messages #{made.first_position}–#{made.last_position}; continuing to #{through}")
    return made
