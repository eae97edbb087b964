"""One conversational turn: fit the thread's memory to the budget, call the model, store the reply.

The user's message is stored (as `pending`) before the call, so a crash or a provider failure
never loses it; only messages of completed turns are sent as history later. Under the summary
policy a turn first folds the history that has left the window into a new summary (at most one
model call); if that fails, the turn goes ahead with the window policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from memchat import llm, prompt, summary
from memchat.config import max_item_bytes
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
    items: Sequence[MessageCreate] = (),
) -> Reply:
    """A turn; with `text` None and no `items`, the thread's last unanswered message is sent
    again (`retry`). `earlier` messages are stored just before the user's, under the turn's
    lease, so no other turn lands between them. `items`: the turn's new items besides `text`
    (tool outputs answering the calls of the model's last response, then a message with parts),
    sent before `text`; a call left without its output, or an output no call waits for, is
    refused before anything is stored.

    Everything slow that does not depend on the history (loading litellm and the tokenizer,
    checking the model) happens before the thread's lease is taken, so turns on one thread
    follow each other as closely as the model calls allow. An ordinary turn commits twice: the
    lease with the user's message (its context is built just before, and built again if the
    thread changed meanwhile), then the reply with the lease's release. A turn that first folds
    history into a summary takes the lease on its own and commits the summary too."""
    reply_tokens = prompt.max_tokens(options)
    if earlier and text is None and not items:
        raise InvalidInput("a retry sends the unanswered message again; it adds no earlier messages")
    if text is not None:
        prompt.validate_text(text)
    _check_new_items(items)
    thread = store.thread(thread_ref)
    if text is not None or items:
        check_pairing(store.open_calls(thread.id)[0], [*earlier, *items], closed=True)
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
                turn = _prepare(store, thread.id, text, options, items)
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
            turn, user_message = _folded_then_begun(store, thread.id, text, options, items, lease, on_note)
        return _converse(store, turn, user_message, options, reply_tokens, stream, on_text, on_note, on_start, lease)


@dataclass
class _Turn:
    """What a turn will send, read in one snapshot of the thread."""

    thread: ThreadPublic
    text: str | None
    """The user's message (None: the turn sends tool outputs alone)."""
    new: prompt.NewInput
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
    resent: list[MessagePublic] = field(default_factory=list)
    """What a retry sends again: the unanswered user message, or a failed turn's tool outputs."""
    stored: list[MessagePublic] = field(default_factory=list)
    """The turn's own items as stored (pending until the reply comes)."""


def first_title(said: Sequence[MessageCreate]) -> str | None:
    """The title a thread nobody named takes from the first user message among `said` (None:
    `said` holds no user message). The store gives it only where that message is the thread's
    first user message and the thread has no title, so a title the user gave always wins."""
    first = next((message.content for message in said if message.role == "user"), None)
    return (title_from_message(first) or None) if first is not None else None


def _title_for(thread: ThreadPublic, said: Sequence[MessageCreate]) -> str | None:
    """`first_title`, unless the thread (as the turn read it) has a title already."""
    return None if thread.title else first_title(said)


def _prepare(
    store: Store, thread_id: str, text: str | None, options: TurnOptions, items: Sequence[MessageCreate] = ()
) -> _Turn:
    with store.snapshot():
        thread = prompt.with_turn_system(store.thread(thread_id), options)
        version = store.history_version(thread.id)
        unanswered = left_unanswered = None
        waiting, response = store.open_calls(thread.id)
        resent: list[MessagePublic] = []
        if text is None and not items and waiting:
            resent = store.failed_outputs(thread.id, waiting)
            check_pairing(waiting, resent, closed=True)
        elif text is None and not items:
            unanswered = store.unanswered(thread.id)
            if unanswered is None:
                raise InvalidInput(f"nothing to retry: the last message of thread {thread.id} has its reply")
            text = unanswered.content
            resent = [unanswered]
        elif text is not None:
            left_unanswered = store.unanswered(thread.id)
        if text is not None:
            prompt.validate_text(text)
        if resent and unanswered is None:
            new = prompt.NewInput((), (*response, *resent))
        else:
            check_pairing(waiting, items, closed=True)
            new = prompt.NewInput(tuple(named_outputs(waiting, items)), tuple(response) if items else ())
        plan = prompt.plan_for(thread, options)
        llm.check_model(plan.model, api_base=options.api_base)
        llm.check_sampling(plan.model, top_p=options.top_p, reasoning_effort=options.reasoning_effort)
        memory = prompt.MemoryPlan.of(store, thread, options)
        context, new_tokens, due = prompt.build(
            store, thread, text, plan, memory, include_dropped=False, version=version, new=new, tools=options.tools
        )
    return _Turn(
        thread, text, new, unanswered, left_unanswered, plan, memory, context, new_tokens, due, version, resent=resent
    )


def _begin(store: Store, turn: _Turn, holder: str, seconds: float) -> MessagePublic | None:
    """Take the lease and store the turn's new items in one commit (None: the lease is busy);
    returns the user's message (or, a turn of tool outputs alone, its first output)."""
    said = [] if turn.resent else _said(turn)
    stored = store.begin_turn(
        turn.thread.id,
        holder,
        seconds,
        holder_is_gone,
        seen=turn.version,
        messages=said,
        resend=[message.id for message in turn.resent],
        tokens=(turn.plan.tokenizer.name, _said_tokens(turn, said)),
        first_title=_title_for(turn.thread, said) if said else None,
    )
    if stored is None:
        return None
    turn.stored = stored
    return _user_of(stored)


def _user_of(stored: Sequence[MessagePublic]) -> MessagePublic:
    return next((message for message in stored if message.role == "user"), stored[0])


def _said(turn: _Turn) -> list[MessageCreate]:
    """The turn's new items and the user's message, stored pending until the reply comes."""
    said = [item.model_copy(update={"status": "pending"}) for item in turn.new.items]
    if turn.text is not None:
        said.append(MessageCreate(role="user", content=turn.text, status="pending"))
    return said


def _said_tokens(turn: _Turn, said: Sequence[MessageCreate]) -> list[int | None]:
    """The counts kept with the new items: the plain message's (counted for the context), the
    others counted when first read."""
    return [turn.new_tokens if item.kind == "message" and not item.parts else None for item in said]


def _check_new_items(items: Sequence[MessageCreate]) -> None:
    """A turn's new items are what a caller says: tool outputs and messages (the model's own
    items come only from the model)."""
    limit = max_item_bytes()
    for index, item in enumerate(items):
        for number, part in enumerate(item.parts or ()):
            if len(part.get("data") or b"") > limit:
                raise InvalidInput(
                    f"items[{index}].parts[{number}]: {len(part['data']):,} bytes is over the limit of {limit:,} "
                    "(MEMCHAT_MAX_ITEM_BYTES)"
                )
        if item.kind == "function_call_output":
            if item.role != "tool" or not item.call_id:
                raise InvalidInput(f"items[{index}]: a function_call_output needs role tool and its call_id")
        elif item.kind != "message" or item.role not in ("user", "system", "developer"):
            raise InvalidInput(
                f"items[{index}]: a turn adds tool outputs and user, system or developer messages, not {item.kind} "
                f"items of role {item.role}"
            )


def check_pairing(waiting: Sequence[MessagePublic], said: Sequence[MessageCreate], *, closed: bool) -> None:
    """Every output answers a call that waits for it (in the thread, `waiting`, or earlier in
    `said`), nothing but outputs follows a call still waiting, and (`closed`: the model is called
    next) no call is left without its output, as OpenAI requires; the errors are OpenAI's
    words, with how to go on."""
    open_ids = {call.call_id for call in waiting}
    for item in said:
        if item.kind == "function_call":
            open_ids.add(item.call_id)
        elif item.kind == "function_call_output":
            if item.call_id not in open_ids:
                raise InvalidInput(f"No tool call found for function call output with call_id {item.call_id}.")
            open_ids.discard(item.call_id)
        elif open_ids:
            raise InvalidInput(_no_output(open_ids))
    if open_ids and closed:
        raise InvalidInput(_no_output(open_ids))


def named_outputs(waiting: Sequence[MessagePublic], said: Sequence[MessageCreate]) -> list[MessageCreate]:
    """`said` with each tool output carrying its call's tool name (OpenAI's output items may
    carry it; a masked output's stub names it)."""
    names = {call.call_id: call.name for call in waiting}
    named = []
    for item in said:
        if item.kind == "function_call":
            names[item.call_id] = item.name
        elif item.kind == "function_call_output" and item.name is None and names.get(item.call_id):
            item = item.model_copy(update={"name": names[item.call_id]})
        named.append(item)
    return named


def _no_output(open_ids: set[str]) -> str:
    first = sorted(open_ids)[0]
    return (
        f"No tool output found for function call {first}. Send the output of every call the model made "
        "(a function_call_output for each call_id), or take the calls back with `memchat undo`."
    )


def _folded_then_begun(
    store: Store,
    thread_id: str,
    text: str | None,
    options: TurnOptions,
    items: Sequence[MessageCreate],
    lease: Lease,
    on_note: Callable[[str], None] | None,
) -> tuple[_Turn, MessagePublic]:
    """Under the lease: fold the history that left the window into a new summary, build the
    context again with it, and store the user's message."""
    turn = _prepare(store, thread_id, text, options, items)
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
                store,
                turn.thread,
                turn.text,
                turn.plan,
                memory,
                include_dropped=False,
                new=turn.new,
                tools=options.tools,
            )
        turn = replace(turn, memory=memory, context=context, new_tokens=new_tokens)
    if not turn.resent:
        said = _said(turn)
        turn.stored = store.append_messages(
            turn.thread.id,
            said,
            tokens=(turn.plan.tokenizer.name, _said_tokens(turn, said)),
            first_title=_title_for(turn.thread, said),
        )
    else:
        turn.stored = [store.set_status(turn.thread.id, message.id, "pending") for message in turn.resent]
    return turn, _user_of(turn.stored)


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
            tools=options.tools,
            tool_choice=options.tool_choice,
            parallel_tool_calls=options.parallel_tool_calls,
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
            [m.id for m in turn.stored],
            [MessageCreate(role="assistant", content=cut.text, status="partial", model=plan.model)],
            tokens=(plan.tokenizer.name, [plan.tokens(cut.text)]),
            user_status="failed",
            lease_holder=lease.holder,
        )
        raise Unanswered(thread.id, user_message, cut) from cut
    except BaseException as failure:
        _failed(store, thread.id, turn.stored)
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
    replies, counts = _reply_items(completion, context_limit, reply_count)
    try:
        stored = store.finish_turn(
            thread.id,
            [m.id for m in turn.stored],
            replies,
            tokens=(plan.tokenizer.name, counts),
            lease_holder=lease.holder,
            release=True,
        )
        lease.released = True
    except BaseException as failure:
        _failed(store, thread.id, turn.stored)
        raise Unanswered(thread.id, user_message, failure) from failure
    reply = next((m for m in stored if m.kind == "message"), stored[-1])
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
        items=tuple(stored),
        said=tuple(m.model_copy(update={"status": "complete"}) for m in turn.stored),
    )


def _failed(store: Store, thread_id: str, stored: Sequence[MessagePublic]) -> None:
    for message in stored:
        store.set_status(thread_id, message.id, "failed")


def _reply_items(
    completion: llm.Completion, context_limit: int | None, reply_count: int
) -> tuple[list[MessageCreate], list[int | None]]:
    """The reply as items, in the order the model gave them: its reasoning, its text, its
    calls. The cost and usage of the call are kept on the text (else on the first call)."""
    usage = {
        "model": completion.model,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "cost": completion.cost,
        "latency_ms": completion.latency_ms,
    }
    items: list[MessageCreate] = []
    counts: list[int | None] = []
    if completion.reasoning is not None:
        reasoning = completion.reasoning
        items.append(
            MessageCreate(
                role="assistant",
                kind="reasoning",
                content=reasoning.text,
                model=completion.model,
                provider_data={
                    "family": reasoning.family,
                    "encrypted_content": None,
                    "summary": [reasoning.text] if reasoning.text else [],
                    "content": [
                        block["thinking"]
                        for block in reasoning.thinking_blocks
                        if isinstance(block.get("thinking"), str)
                    ],
                    "thinking_blocks": list(reasoning.thinking_blocks),
                },
            )
        )
        counts.append(None)
    finish = "length" if completion.finish_reason == "length" else None
    if completion.text or not completion.tool_calls:
        items.append(
            MessageCreate(
                role="assistant",
                content=completion.text,
                context_limit=context_limit,
                finish_reason=finish,
                **usage,
            )
        )
        counts.append(reply_count)
        usage = {"model": completion.model}
    for call in completion.tool_calls:
        items.append(
            MessageCreate(
                role="assistant",
                kind="function_call",
                content=f"{call.name}({call.arguments})",
                call_id=call.call_id,
                name=call.name,
                arguments=call.arguments,
                finish_reason=finish,
                **usage,
            )
        )
        counts.append(None)
        usage = {"model": completion.model}
    return items, counts


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
