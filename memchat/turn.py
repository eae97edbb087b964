"""One conversational turn: fit the thread's memory to the budget, call the model, store the reply.

The user's message is stored (as `pending`) before the call, so a crash or a provider failure
never loses it; only messages of completed turns are sent as history later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from memchat import llm
from memchat.config import DEFAULT_MAX_TOKENS, FALLBACK_BUDGET, default_model
from memchat.context import Context, Counter, HistoryItem, fit
from memchat.errors import InvalidInput
from memchat.storage.models import MessageCreate, MessagePublic, ThreadPublic
from memchat.storage.repository import Store


@dataclass(frozen=True)
class TurnOptions:
    model: str | None = None
    budget: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    api_base: str | None = None


@dataclass(frozen=True)
class Reply:
    text: str
    thread_id: str
    message: MessagePublic
    user_message: MessagePublic
    context: Context


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


def build_context(store: Store, thread: ThreadPublic, text: str | None, options: TurnOptions) -> Context:
    model = resolve_model(thread, options)
    history = [
        HistoryItem(message.position, message.role, message.content)
        for message in store.messages(thread.id, statuses=["complete"])
    ]
    return fit(
        system=thread.system,
        history=history,
        new_message=text,
        budget=resolve_budget(thread, options, model),
        count=llm.counter(model),
        model=model,
    )


def message_tokens(count: Counter, role: str, content: str) -> int:
    return count([{"role": role, "content": content}]) - count([])


def take_turn(
    store: Store,
    thread_ref: str,
    text: str,
    options: TurnOptions,
    *,
    stream: bool = False,
    on_text: Callable[[str], None] | None = None,
) -> Reply:
    validate_text(text)
    thread = store.thread(thread_ref)
    model = resolve_model(thread, options)
    reply_tokens = max_tokens(options)
    llm.check_model(model, api_base=options.api_base)
    context = build_context(store, thread, text, options)
    new_entry = context.entries[-1]
    user_message = store.append(
        thread.id, MessageCreate(role="user", content=text, status="pending", token_count=new_entry.tokens)
    )
    try:
        completion = llm.complete(
            model=model,
            messages=context.messages,
            max_tokens=reply_tokens,
            temperature=options.temperature,
            api_base=options.api_base,
            stream=stream,
            on_text=on_text,
        )
    except BaseException:
        store.fail_turn(user_message.id)
        raise
    reply = store.complete_turn(
        user_message.id,
        MessageCreate(
            role="assistant",
            content=completion.text,
            token_count=message_tokens(llm.counter(model), "assistant", completion.text),
            model=completion.model,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cost=completion.cost,
            latency_ms=completion.latency_ms,
        ),
    )
    return Reply(
        text=completion.text,
        thread_id=thread.id,
        message=reply,
        user_message=user_message.model_copy(update={"status": "complete"}),
        context=context,
    )
