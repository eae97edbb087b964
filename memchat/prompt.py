"""What a turn sends: the plan (model, tokenizer, budget), the history read from the store, and
the long-term memory the thread's policy adds (a summary, recalled excerpts).

The history is read newest first and reading stops where the budget is full, so the cost of a
turn does not grow with the thread; token counts missing for the turn's tokenizer are made for
the messages read, and kept. The pure policy is `memchat.context`; this module feeds it from
the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from memchat import items as item_forms
from memchat import llm, recollection, settings, summary
from memchat.config import DEFAULT_MAX_TOKENS, FALLBACK_BUDGET
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
    masked_output,
    masking,
    room_for,
    select_window,
    summary_cap,
    summary_text,
)
from memchat.errors import InvalidInput, ProviderError
from memchat.recollection import Embeddings
from memchat.records import MessageCreate, MessagePublic, SummaryPublic, ThreadPublic
from memchat.schemas import DEFAULT_SUMMARY_SHARE, MASK_KEEP_STEPS, TurnOptions, check_text
from memchat.storage.fulltext import SHORT_MESSAGE_WORDS, recall_words
from memchat.storage.repository import Store
from memchat.times import as_utc
from memchat.tokens import Tokenizer, tokenizer_for

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
RECALL_CONTEXT_MESSAGES = 2
"""The newest messages whose words a short new message is read with (`fulltext.SHORT_MESSAGE_WORDS`)."""


@dataclass(frozen=True)
class MemoryPlan:
    """The long-term memory a turn uses: its policy, its recall and the current summary."""

    policy: str
    recall: int
    share: float
    summary: SummaryPublic | None = None
    embeddings: Embeddings | None = None
    """The embedding model recall re-ranks with, if the thread has one."""

    @classmethod
    def of(cls, store: Store, thread: ThreadPublic, options: TurnOptions) -> MemoryPlan:
        policy = options.policy or thread.policy
        recall = options.recall if options.recall is not None else thread.recall
        current = store.current_summary(thread.id) if policy == "summary" else None
        return cls(
            policy, recall, thread.summary_share or DEFAULT_SUMMARY_SHARE, current, embeddings_for(thread, options)
        )


@dataclass(frozen=True)
class NewInput:
    """What a turn adds besides a plain message: its new items (tool outputs, then the user's
    message when it has parts), and the stored items they answer (`carried`: the model's last
    response, whose calls were waiting for these outputs), all sent whatever the budget."""

    items: tuple[MessageCreate, ...] = ()
    carried: tuple[MessagePublic, ...] = ()


@dataclass(frozen=True)
class FoldDue:
    through: int
    cap: int


@dataclass(frozen=True)
class Plan:
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
    return options.model or thread.model or settings.default_model()


def endpoint_for(thread: ThreadPublic, options: TurnOptions) -> str | None:
    """--api-base, else the thread's, else (unless the provider's own variable names one) the
    user's `memchat config set api-base`."""
    if options.api_base or thread.api_base:
        return options.api_base or thread.api_base
    configured = settings.get("api-base")
    if configured and not llm.endpoint_from_environment(resolve_model(thread, options)):
        return configured
    return None


def embeddings_for(thread: ThreadPublic, options: TurnOptions) -> Embeddings | None:
    """The embedding model the thread's recall uses (none: words alone), its requests sent
    where the turn's go when it is the same provider's."""
    if not thread.recall_embeddings:
        return None
    return Embeddings.beside(
        thread.recall_embeddings, resolve_model(thread, options), endpoint_for(thread, options), options.call_timeout
    )


def resolve_budget(thread: ThreadPublic, options: TurnOptions, model: str) -> int:
    """`--budget`, else the thread's budget, else what the model accepts minus the reply's room."""
    if options.budget is not None:
        return options.budget
    if thread.budget is not None:
        return thread.budget
    configured = settings.get("budget")
    if configured is not None:
        return configured
    context_size = llm.max_input_tokens(model)
    room = context_size - max_tokens(options) if context_size else 0
    return room if room > 0 else FALLBACK_BUDGET


def max_tokens(options: TurnOptions) -> int:
    value = options.max_tokens if options.max_tokens is not None else settings.get("max-tokens") or DEFAULT_MAX_TOKENS
    if value <= 0:
        raise InvalidInput(f"--max-tokens must be positive, not {value}")
    return value


def validate_text(text: str) -> str:
    if not text or not text.strip():
        raise InvalidInput("the message is empty")
    try:
        return check_text(text)
    except ValueError as exc:
        raise InvalidInput(f"the message {exc}") from None


def with_turn_system(thread: ThreadPublic, options: TurnOptions) -> ThreadPublic:
    """The thread as this turn sees it: with the turn's own system prompt, if it has one."""
    if options.system is None:
        return thread
    return thread.model_copy(update={"system": options.system if options.system.strip() else None})


def plan_for(thread: ThreadPublic, options: TurnOptions) -> Plan:
    model = resolve_model(thread, options)
    tokenizer = tokenizer_for(model)
    budget = resolve_budget(thread, options, model)
    count = llm.counter(model, tokenizer)
    room = room_for(budget, tokenizer.margin)
    return Plan(model, tokenizer, budget, room, count, llm.message_cost(count), llm.text_counter(model, tokenizer))


def first_page(room: int, read_before: int | None = None) -> int:
    """The first page's size: what the thread's last context read in this process
    (`read_before`, `StoreCaches.pages_read`), else what the budget suggests for messages of a
    typical size (one read, most turns)."""
    if read_before is not None:
        return max(SMALLEST_PAGE, min(LARGEST_PAGE, read_before + PAGE_SLACK))
    return max(SMALLEST_PAGE, min(LARGEST_PAGE, room // TYPICAL_MESSAGE_TOKENS))


PAGE_SLACK = 8
"""Messages read beyond the last context's, for the turns added since."""


def history_newest_first(
    store: Store, thread_id: str, plan: Plan, *, first: int, before: int | None = None, version: int | None = None
) -> Iterator[Candidate]:
    """Completed messages, newest first, with their counts by the plan's tokenizer: pages grow
    from the size the budget suggests, and counts missing on a page are made once and kept.
    `version`: the thread's history version read in this snapshot (a warm process then reads
    only what changed since its last turn)."""
    for page in history_pages(store, thread_id, plan, first=first, before=before, version=version):
        yield from page


def history_pages(
    store: Store, thread_id: str, plan: Plan, *, first: int, before: int | None = None, version: int | None = None
) -> Iterator[list[Candidate]]:
    """`history_newest_first` a page at a time."""
    limit = first
    while True:
        page = store.history_page(thread_id, plan.tokenizer.name, before=before, limit=limit, version=version)
        missing = [row.id for row in page if row.tokens is None and not _is_rich(row)]
        rich = [row.id for row in page if row.tokens is None and _is_rich(row)]
        counted: dict[int, int] = {}
        if missing:
            contents = store.contents(missing)
            counted = dict(zip(missing, plan.count_texts([contents[i] for i in missing])))
        if rich:
            counted.update(item_tokens(store, store.items_of(rich), plan))
        if counted:
            store.save_token_counts(plan.tokenizer.name, counted, thread_id=thread_id)
        yield [
            Candidate(row.id, row.position, row.role, row.context_limit + CUT_NOTE_TOKENS, row.context_limit, row.kind)
            if row.context_limit is not None and counted.get(row.id, row.tokens) > row.context_limit
            else Candidate(
                row.id, row.position, row.role, counted.get(row.id, row.tokens), None, row.kind, _is_rich(row)
            )
            for row in page
        ]
        if len(page) < limit:
            return
        before = page[-1].position
        limit = min(limit * 4, LARGEST_PAGE)


def _is_rich(row) -> bool:
    return row.kind != "message" or bool(row.rich)


def family_of(model: str) -> str:
    """The provider family a model's reasoning may be sent back to (litellm's provider name)."""
    return llm.provider_of(model)


def chat_forms(store: Store, messages: list, plan: Plan) -> list[dict]:
    """Each item as the turn's model is sent it, one ChatML message each (`{}`: not sent;
    `items.merged` joins a reply's), its images and files read from their blobs (or, for items
    not stored yet, their own bytes)."""
    local: dict[str, bytes] = {}
    prepared = []
    for message in messages:
        if message.parts and any("data" in part for part in message.parts):
            parts, data = item_forms.stored_parts(message.parts)
            local.update(data)
            message = message.model_copy(update={"parts": parts})
        prepared.append(message)
    wanted = {
        part["blob"] for m in prepared for part in m.parts or () if part.get("blob") and part["blob"] not in local
    }
    if wanted:
        local.update({sha: data for sha, (_, data) in store.blobs(wanted).items()})
    family = family_of(plan.model)
    return [item_forms.to_chat_form(message, local.__getitem__, family=family) for message in prepared]


def item_tokens(store: Store, messages: dict[int, MessagePublic], plan: Plan) -> dict[int, int]:
    """What each item adds to a prompt as sent (beyond its role's framing); reasoning counts its
    text whether or not it is sent (litellm does not count thinking blocks)."""
    ids = list(messages)
    forms = chat_forms(store, [messages[i] for i in ids], plan)
    framing = plan.count([])
    counted = {}
    for message_id, form in zip(ids, forms, strict=True):
        message = messages[message_id]
        if message.kind == "reasoning":
            blocks = (message.provider_data or {}).get("thinking_blocks") or ()
            thinking = "\n".join(str(block.get("thinking") or block.get("data") or "") for block in blocks)
            counted[message_id] = sum(plan.count_texts([message.content, thinking]))
        else:
            whole = plan.count([form]) - framing if form else 0
            counted[message_id] = max(whole - plan.cost(message.role, 0), 0)
    return counted


class _Replay:
    """History read once from the database, a page at a time as the walks need it, walked as
    many times as the policy needs."""

    def __init__(self, pages: Iterator[list[Candidate]]):
        self._pages = pages
        self._seen: list[Candidate] = []
        self._used = 0

    @property
    def read(self) -> int:
        """How many messages the walks looked at (a page may hold more: sizing the next turn's
        first page by the page read would make it grow by the turn's messages every turn)."""
        return self._used

    def __iter__(self) -> Iterator[Candidate]:
        index = 0
        while True:
            if index == len(self._seen):
                page = next(self._pages, None)
                if page is None:
                    return
                self._seen.extend(page)
                continue
            candidate = self._seen[index]
            index += 1
            if index > self._used:
                self._used = index
            yield candidate


def extra_cost(plan: Plan, extra: Extra | None) -> int:
    return plan.cost("system", extra.tokens) if extra else 0


def _window_start(window: list[Candidate], thread: ThreadPublic) -> int:
    return window[0].position if window else thread.message_count


def build(
    store: Store,
    thread: ThreadPublic,
    text: str | None,
    plan: Plan,
    memory: MemoryPlan,
    *,
    include_dropped: bool,
    version: int | None = None,
    new: NewInput | None = None,
    tools: list[dict] | None = None,
) -> tuple[Context, int, FoldDue | None]:
    """The context a turn sends under its memory policy, and the summary fold due, if any.
    `version`: the thread's `history_version`, read in the same snapshot before. `new`: the
    turn's items besides its plain message `text` (tool outputs and the calls they answer, a
    message with parts), always sent; the history window ends before them. `tools`: the tool
    definitions the call sends, whose tokens count against the budget."""
    system_tokens = plan.tokens(thread.system) if thread.system else 0
    new_tokens = plan.tokens(text) if text is not None else 0
    new_entries = _new_entries(store, new, plan) if new is not None else []
    new_items = [entry.chatml() for entry in new_entries]
    limit = plan.room - (llm.tool_tokens(plan.model, plan.tokenizer, tools) if tools else 0)
    room = history_room(
        system=thread.system,
        new_message=text,
        budget=plan.budget,
        room=limit,
        count=plan.count,
        new_items=new_items,
    )
    first = first_page(room, store.caches.pages_read.get(thread.id))
    window_end = new.carried[0].position if new is not None and new.carried else None
    pages = history_pages(store, thread.id, plan, first=first, before=window_end, version=version)
    if thread.tool_outputs == "mask":
        answered_now = any(item.kind == "function_call_output" for item in new.items) if new is not None else False
        pages = masking(pages, MASK_KEEP_STEPS, steps=1 if answered_now else 0)
    history = _Replay(pages)
    cap = summary_cap(room, memory.share)
    summarized = -1
    condensed = None
    if memory.policy == "summary" and memory.summary is not None:
        current = memory.summary
        candidate = summary_extra(plan, current.content, current.first_position, current.last_position)
        if extra_cost(plan, candidate) <= cap:
            condensed, summarized = candidate, current.last_position
    used = extra_cost(plan, condensed)
    recalled = None
    if memory.recall and text is not None:
        before = _window_start(select_window(history, room - used, plan.cost, after=summarized), thread)
        recalled = _recall(
            store, thread, text, plan, memory, before=before, room=int(room * RECALL_SHARE), history=history
        )
        used += extra_cost(plan, recalled)
    window = select_window(history, room - used, plan.cost, after=summarized)
    due = None
    if memory.policy == "summary":
        start = _window_start(window, thread)
        left_out = next((c for c in history if c.position < start), None)
        if left_out is not None and left_out.position > summarized:
            keep_room = int((room - cap - extra_cost(plan, recalled)) * FOLD_KEEP)
            due = FoldDue(_window_start(select_window(history, keep_room, plan.cost), thread) - 1, cap)
    rich = [c.id for c in window if c.rich]
    chats = {}
    contents = _sendable(_window_contents(store, thread, window, plan, version), window, plan)
    if rich:
        found = store.items_of(rich)
        chats = dict(zip(rich, chat_forms(store, [found[i] for i in rich], plan)))
        _mask(thread, window, found, chats, contents)
    entries, prompt_tokens = assemble(
        system=thread.system,
        window=window,
        contents=contents,
        new_message=text,
        room=limit,
        count=plan.count,
        cost=plan.cost,
        system_tokens=system_tokens,
        new_tokens=new_tokens,
        extras=[extra for extra in (condensed, recalled) if extra is not None],
        chats=chats,
        new_entries=new_entries,
    )
    prompt_tokens += plan.room - limit
    store.caches.pages_read.remember(thread.id, history.read)
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


def _mask(
    thread: ThreadPublic,
    window: list[Candidate],
    found: dict[int, MessagePublic],
    chats: dict[int, dict],
    contents: dict[int, str],
) -> None:
    """The masked outputs of the window as their stubs, each naming its call's tool."""
    names = {m.call_id: m.name for m in found.values() if m.kind == "function_call"}
    for candidate in window:
        if not candidate.masked:
            continue
        output = found[candidate.id]
        stub = masked_output(
            output.name or names.get(output.call_id), len(output.content), thread.id, candidate.position
        )
        chats[candidate.id] = {"role": "tool", "tool_call_id": output.call_id, "content": stub}
        contents[candidate.id] = stub


def _new_entries(store: Store, new: NewInput, plan: Plan) -> list[ContextEntry]:
    """The turn's carried and new items as context entries, each as it is sent."""
    said = [*new.carried, *new.items]
    forms = chat_forms(store, said, plan)
    framing = plan.count([])
    return [
        ContextEntry(
            message.role,
            message.content,
            "history" if isinstance(message, MessagePublic) else "new",
            plan.count([form]) - framing if form else 0,
            True,
            getattr(message, "position", None),
            chat=form,
            item=message.kind,
        )
        for message, form in zip(said, forms, strict=True)
    ]


CUT_NOTE_TOKENS = 40
"""At least what the note closing a cut message costs (`cut_note`), in any tokenizer memchat uses."""


def cut_note(kept: int) -> str:
    return f"\n[… memchat cut this message here: it is longer than its turn asked for; later turns send its first {kept} tokens]"


def _window_contents(
    store: Store, thread: ThreadPublic, window: list[Candidate], plan: Plan, version: int | None
) -> dict[int, str]:
    """The window's contents, in one range read (the window is the newest completed messages)."""
    if not window:
        return {}
    return store.contents_from(thread.id, window[0].position, tokenizer=plan.tokenizer.name, version=version)


def _sendable(contents: dict[int, str], window: list[Candidate], plan: Plan) -> dict[int, str]:
    """Contents as sent: a message with a context limit cut to it, with a note saying so."""
    for candidate in window:
        if candidate.limit is not None:
            cut = cut_to_tokens(contents[candidate.id], candidate.limit, plan.tokens)
            contents[candidate.id] = cut + cut_note(candidate.limit)
    return contents


def cut_to_tokens(text: str, limit: int, tokens: Callable[[str], int]) -> str:
    """The longest opening of `text` that counts at most `limit` tokens, found by bisection
    over a bounded prefix (a token is never longer than a few dozen characters), so a huge text
    costs a few counts of about `limit` tokens, never a count of the whole."""
    high = min(len(text), max(limit, 1) * 16)
    while high < len(text) and tokens(text[:high]) <= limit:
        high = min(len(text), high * 2)
    low = 0
    while low < high:
        middle = (low + high + 1) // 2
        if tokens(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def summary_extra(plan: Plan, content: str, first: int, last: int) -> Extra:
    text = summary_text(content, first, last)
    return Extra("summary", text, plan.tokens(text), span=(first, last))


def _recall(
    store: Store,
    thread: ThreadPublic,
    text: str,
    plan: Plan,
    memory: MemoryPlan,
    *,
    before: int,
    room: int,
    history: Iterable[Candidate],
) -> Extra | None:
    k = memory.recall
    context = ""
    if len(recall_words(text)) < SHORT_MESSAGE_WORDS:
        newest = list(islice(history, RECALL_CONTEXT_MESSAGES))
        contents = store.contents([c.id for c in newest])
        context = "\n".join(contents[c.id] for c in newest if c.id in contents)
    recalled = recollection.recall(
        store, thread.id, text, memory.embeddings, before=before, limit=k * RECALL_CANDIDATES, context=context
    )
    ranked = [
        Excerpt(m.position, m.role, item_forms.as_text(m), as_utc(m.created_at).strftime("%Y-%m-%d %H:%M UTC"))
        for m in recalled
    ]
    return fit_excerpts(ranked, k, room, plan.tokens, plan.cost)


def _with_dropped(store: Store, thread: ThreadPublic, plan: Plan, entries: list[ContextEntry]) -> list[ContextEntry]:
    first_kept = next((e.position for e in entries if e.kind == "history"), None)
    older = list(history_newest_first(store, thread.id, plan, first=LARGEST_PAGE, before=first_kept))
    older.reverse()
    contents = store.contents([c.id for c in older])
    dropped = [
        ContextEntry(c.role, contents[c.id], "history", plan.cost(c.role, c.tokens), False, c.position, item=c.kind)
        for c in older
    ]
    split = sum(1 for e in entries if e.kind in ("system", "summary", "recall"))
    return entries[:split] + dropped + entries[split:]


def build_context(
    store: Store, thread_ref: str, text: str | None, options: TurnOptions, *, with_dropped: bool
) -> Context:
    """What the next turn would send, for a preview."""
    with store.snapshot():
        thread = with_turn_system(store.thread(thread_ref), options)
        memory = MemoryPlan.of(store, thread, options)
        context, _, _ = build(
            store, thread, text, plan_for(thread, options), memory, include_dropped=with_dropped, tools=options.tools
        )
    return context


MIN_SUMMARY_TOKENS = 16


def fold_request(plan: Plan, through: int, cap: int) -> summary.FoldRequest:
    """A summary covering up to `through` that must cost at most `cap` in the turn's prompt."""
    header = extra_cost(plan, summary_extra(plan, "", 0, through))
    if cap - header < MIN_SUMMARY_TOKENS:
        raise ProviderError(
            f"the budget leaves a summary only {max(cap - header, 0)} tokens; raise the budget or --summary-share"
        )

    def fits(text: str, first: int, last: int) -> bool:
        return extra_cost(plan, summary_extra(plan, text, first, last)) <= cap

    return summary.FoldRequest(through=through, max_tokens=cap - header, fits=fits)
