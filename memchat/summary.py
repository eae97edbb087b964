"""Summaries of the history a window leaves out: made by a model call, kept as their own rows.

A summary is incremental: the next one folds the current one and the messages after its span,
so each call reads a bounded amount however long the thread. Messages are never changed; a
summary records the span it stands for, and the model, instructions and usage that made it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from memchat import llm
from memchat.config import FALLBACK_BUDGET
from memchat.errors import ProviderError
from memchat.items import as_text
from memchat.records import MessagePublic, SummaryCreate, SummaryPublic, ThreadPublic
from memchat.storage.repository import Store
from memchat.tokens import tokenizer_for

DEFAULT_PROMPT = """\
You keep the long-term memory of a conversation between a user and an AI assistant. You are given \
the summary so far (it may be empty) and the messages that follow it. Write an updated summary that \
folds the new messages into the old summary. Keep everything the assistant may need later: names, \
numbers, dates, preferences, decisions, commitments, open questions and the user's goals; drop \
greetings and filler. Write concise notes in the third person, oldest first, in at most {max_words} \
words. Reply with the summary only."""
"""The instructions shipped with memchat; a thread can replace them (`--summary-prompt FILE`).
`{max_words}` is replaced by the length the summary's cap allows."""

READ_PAGE = 500
WORDS_PER_TOKEN = 0.75


@dataclass(frozen=True)
class FoldRequest:
    """What a fold must cover and how big the result may be."""

    through: int
    """Fold every message up to this position (fewer if they do not fit one call)."""
    max_tokens: int
    """Tokens the summary text may have."""
    fits: Callable[[str, int, int], bool]
    """Whether a summary text covering (first, last) fits the turn's cap, by the turn's count."""


def prompt_for(thread: ThreadPublic) -> str:
    return thread.summary_prompt or DEFAULT_PROMPT


def model_for(thread: ThreadPublic, turn_model: str, override: str | None = None) -> str:
    return override or thread.summary_model or turn_model


def fold(
    store: Store,
    thread: ThreadPublic,
    request: FoldRequest,
    *,
    model: str,
    previous: SummaryPublic | None,
    timeout: float,
    api_base: str | None = None,
    lease_holder: str | None = None,
) -> SummaryPublic:
    """One summary call: `previous` (None: start from the first message) plus the messages after
    its span, as many as the summary model takes in one call, up to `request.through`; stored
    only while `lease_holder` (if given) still holds the thread's turn lease."""
    llm.check_model(model, api_base=api_base)
    instructions = prompt_for(thread).replace("{max_words}", str(max(20, int(request.max_tokens * WORDS_PER_TOKEN))))
    after = previous.last_position if previous else -1
    first = previous.first_position if previous else 0
    messages, last = _material(store, thread.id, model, instructions, previous, after, request)
    if not messages:
        if previous is None:
            raise ProviderError("there are no completed messages to summarize yet")
        # The current summary no longer fits this turn's cap (a smaller budget): condense it alone.
        last = previous.last_position
    chat = [
        {"role": "system", "content": instructions},
        {"role": "user", "content": _material_text(previous, messages)},
    ]
    completion = llm.complete(
        model=model, messages=chat, max_tokens=request.max_tokens, timeout=timeout, api_base=api_base
    )
    text = completion.text.strip()
    if not text:
        raise ProviderError(f"the summary model {model} returned an empty summary")
    if not request.fits(text, first, last):
        raise ProviderError(f"the summary from {model} came back longer than its share of the budget")
    return store.add_summary(
        thread.id,
        SummaryCreate(
            first_position=first,
            last_position=last,
            content=text,
            model=completion.model or model,
            prompt=instructions,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cost=completion.cost,
            latency_ms=completion.latency_ms,
        ),
        lease_holder=lease_holder,
    )


def _material(
    store: Store,
    thread_id: str,
    model: str,
    instructions: str,
    previous: SummaryPublic | None,
    after: int,
    request: FoldRequest,
) -> tuple[list[MessagePublic], int]:
    """The messages one call can fold, read oldest first a page at a time, and the last
    position covered: `request.through` when every message up to it fits."""
    tokenizer = tokenizer_for(model)
    count = llm.text_counter(model, tokenizer)
    limit = llm.max_input_tokens(model) or FALLBACK_BUDGET
    room = int((limit - request.max_tokens) * (1 - tokenizer.margin))
    used = sum(count([instructions, _material_text(previous, [])]))
    taken: list[MessagePublic] = []
    cursor = after
    while True:
        page = store.completed_messages(thread_id, after=cursor, through=request.through, limit=READ_PAGE)
        costs = count([_line(message) for message in page]) if page else []
        for message, tokens in zip(page, costs):
            if used + tokens > room and taken:
                return taken, taken[-1].position
            taken.append(message if used + tokens <= room else _shortened(message, room - used, tokens))
            used += tokens
        if len(page) < READ_PAGE:
            return taken, request.through
        cursor = page[-1].position


def _shortened(message: MessagePublic, room: int, tokens: int) -> MessagePublic:
    """A first message too long for the summary call on its own: its opening part, marked."""
    keep = max(1, int(len(message.content) * max(room, 1) / tokens * 0.9))
    return message.model_copy(update={"content": message.content[:keep] + " […cut for the summary call]"})


def _line(message: MessagePublic) -> str:
    """A message as the summary call reads it; an agent's items as text (a call's name and
    arguments, an excerpt of a long output, what an image or file was)."""
    return f"[#{message.position} {message.role}] {as_text(message)}"


def _material_text(previous: SummaryPublic | None, messages: list[MessagePublic]) -> str:
    so_far = previous.content if previous else "(none yet)"
    if not messages:
        return f"Summary so far:\n{so_far}\n\nNew messages: none; condense the summary."
    span = f"#{messages[0].position}–#{messages[-1].position}"
    lines = "\n".join(_line(message) for message in messages)
    return f"Summary so far:\n{so_far}\n\nNew messages {span}:\n{lines}"
