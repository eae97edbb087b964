"""Context assembly and the budget policy: pure functions, no database and no litellm.

The policy (window): keep the system prompt and the new message always, and as much recent
history as fits, cutting only at the start of a turn, so the history sent is a contiguous suffix
of the stored one that never opens on a reply. Long-term memory adds at most two messages
memchat writes itself, right after the system prompt: the summary of the history before the
window (`summary` policy) and excerpts recalled from it (`recall`); each takes a capped share
of the history's room, and they are the last things dropped if the exact count says so.

An agent's thread holds more than messages: function calls, their outputs, reasoning. A call and
its outputs travel together: a window may also open at a model response that follows tool
outputs (an agent's run is long; its oldest steps leave first), never at an output, so a request
never holds an output without its call; calls still waiting for their outputs are part of the
turn itself (the outputs are the turn's new input), never left behind.

It runs in two steps so that a turn costs what its budget holds, not what its thread holds:
`select_window` walks the history newest first on stored per-message counts and stops at the first
message that does not fit; `assemble` then counts the exact list to be sent, framing included,
and drops further whole turns in the rare case the per-message sums under-counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from memchat.errors import BudgetExceeded, InvalidInput
from memchat.items import merged

Counter = Callable[[list[dict]], int]
"""Tokens a ChatML list costs as a prompt, framing included (litellm.token_counter's meaning)."""

MessageCost = Callable[[str, int], int]
"""Tokens one message adds to a prompt, from its role and its content's token count."""

TURN_CONTINUATIONS = frozenset({"assistant", "tool"})
RECALL_SHARE = 0.25
"""The most of the history's room that recalled excerpts may take."""


@dataclass(slots=True)
class Candidate:
    """A stored message that may be sent, known by its content's token count.

    Not frozen, as ContextEntry: a turn makes one of each per message of its window (hundreds
    with short messages), and a frozen dataclass takes ~7x as long to make (~1.2 ms a turn at
    ~470 messages). Nothing changes them once made."""

    id: int
    position: int
    role: str
    tokens: int
    """What its content costs as sent: whole, or cut to `limit` with a note."""
    limit: int | None = None
    """Send at most this many tokens of it (see `Message.context_limit`); None: whole."""
    kind: str = "message"
    rich: bool = False
    """Sent as more than its text (a call, an output, reasoning, parts): see `ContextEntry.chat`."""
    masked: bool = False
    """A tool output sent as a stub in its place (the thread's `tool_outputs` is `mask`)."""


@dataclass(slots=True)
class ContextEntry:
    role: str
    content: str
    kind: str
    """`system` (the thread's prompt), `summary`, `recall` (excerpts), `history` (a stored
    message) or `new` (this turn's message)."""
    tokens: int
    kept: bool
    position: int | None = None
    span: tuple[int, int] | None = None
    """For a summary: the first and last positions of the messages it stands for."""
    recalled: tuple[int, ...] = ()
    """For recalled excerpts: the positions of the messages quoted."""
    chat: dict | None = None
    """The message as sent when it is more than `role` and `content` (tool calls, a tool
    output, parts, thinking blocks); `{}`: nothing is sent for it (reasoning only another
    provider could read)."""
    item: str = "message"
    """The stored item's kind (`memchat.records.MessageBase.kind`)."""
    masked: bool = False
    """A tool output the request holds as a stub (`masked_output`); the thread keeps it whole."""

    def chatml(self) -> dict:
        return self.chat if self.chat is not None else {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Context:
    entries: list[ContextEntry]
    """What is sent, in order; with the history the budget dropped too where the caller asked
    for it (a preview does, a turn does not read what it does not send)."""
    budget: int
    room: int
    """The budget less the margin held back for a stand-in tokenizer: the most that is sent."""
    prompt_tokens: int
    """Exact count of the list sent."""
    framing_tokens: int
    """Tokens the list costs beyond its messages (reply priming)."""
    model: str = ""
    tokenizer: str = ""
    policy: str = "window"
    summary_due: tuple[int, int] | None = None
    """Under the summary policy, messages that have left the window unsummarized (first and
    last position): the next turn folds them into the summary before its call."""

    @property
    def messages(self) -> list[dict]:
        """The exact ChatML list to send."""
        return merged([entry.chatml() for entry in self.entries if entry.kept])

    @property
    def dropped(self) -> list[ContextEntry]:
        return [entry for entry in self.entries if not entry.kept]


@dataclass(frozen=True)
class Extra:
    """A message memchat writes into the context: the summary or the recalled excerpts."""

    kind: str
    content: str
    tokens: int
    """The content's token count."""
    span: tuple[int, int] | None = None
    recalled: tuple[int, ...] = ()

    def entry(self, cost: MessageCost) -> ContextEntry:
        return ContextEntry(
            "system", self.content, self.kind, cost("system", self.tokens), True, span=self.span, recalled=self.recalled
        )


@dataclass(frozen=True)
class Excerpt:
    position: int
    role: str
    content: str
    when: str


MASK_STUB_TOKENS = 64
"""What a masked output's stub is taken to cost while the window is chosen (the exact count of
the list sent then checks it)."""


def masked_output(name: str | None, characters: int, thread_id: str, position: int) -> str:
    """What a request holds in place of an older tool output under the `mask` setting."""
    tool = f"`{name}`" if name else "a tool"
    return (
        f"[memchat: this output of {tool} ({characters:,} characters) is left out of the request to save room; "
        f"the thread keeps it whole as message #{position} (`memchat show {thread_id}`)]"
    )


def masking(pages: Iterable[list[Candidate]], keep_steps: int, *, steps: int = 0) -> Iterable[list[Candidate]]:
    """History pages (newest first) with the tool outputs of all but the newest `keep_steps`
    steps of an agent's run (a step: a run of outputs; `steps` already taken by the turn itself)
    marked masked and costed as their stub."""
    in_outputs = False
    for page in pages:
        marked = []
        for candidate in page:
            if candidate.kind == "function_call_output":
                if not in_outputs:
                    steps += 1
                    in_outputs = True
                if steps > keep_steps:
                    candidate = Candidate(
                        candidate.id,
                        candidate.position,
                        candidate.role,
                        MASK_STUB_TOKENS,
                        None,
                        candidate.kind,
                        True,
                        True,
                    )
            else:
                in_outputs = False
            marked.append(candidate)
        yield marked


def summary_cap(history_room: int, share: float) -> int:
    """The most a summary message may cost: a share of the room the history has."""
    return int(history_room * share)


def summary_text(summary: str, first: int, last: int) -> str:
    return f"Summary of the earlier conversation (messages #{first}–#{last}, condensed by memchat):\n{summary}"


def recall_text(excerpts: Sequence[Excerpt]) -> str:
    lines = [
        "Excerpts recalled from earlier in this conversation, outside the recent messages, "
        "because they match the new message (oldest first):"
    ]
    lines += [f"[#{e.position} · {e.role} · {e.when}] {e.content}" for e in excerpts]
    return "\n".join(lines)


def fit_excerpts(
    ranked: Sequence[Excerpt], k: int, room: int, count_text: Callable[[str], int], cost: MessageCost
) -> Extra | None:
    """The best-ranked excerpts, at most `k`, whose message fits `room`, in conversation order:
    one that does not fit is passed over for the next best."""
    chosen: list[Excerpt] = []
    best: Extra | None = None
    for excerpt in ranked:
        if len(chosen) == k:
            break
        trial = sorted([*chosen, excerpt], key=lambda e: e.position)
        content = recall_text(trial)
        tokens = count_text(content)
        if cost("system", tokens) <= room:
            chosen = trial
            best = Extra("recall", content, tokens, recalled=tuple(e.position for e in trial))
    return best


def room_for(budget: int, margin: float) -> int:
    if budget <= 0:
        raise InvalidInput(f"the budget must be a positive number of tokens, not {budget}")
    return int(budget * (1 - margin))


def select_window(
    newest_first: Iterable[Candidate], room: int, cost: MessageCost, *, after: int = -1
) -> list[Candidate]:
    """The longest run of newest messages after position `after` whose costs fit `room`,
    trimmed to start a turn.

    Reads `newest_first` only up to the first message that does not fit."""
    taken: list[Candidate] = []
    used = 0
    older = None
    for candidate in newest_first:
        if candidate.position <= after:
            break
        used += cost(candidate.role, candidate.tokens)
        if used > room:
            older = candidate
            break
        taken.append(candidate)
    taken.reverse()
    return _from_turn_start(taken, older.role if older is not None else None)


def drop_oldest_turn(window: Sequence[Candidate]) -> list[Candidate]:
    return _from_turn_start(list(window[1:]), window[0].role if window else None)


def opens_window(role: str, older_role: str | None) -> bool:
    """Whether a window may begin with a message of `role` after one of `older_role`: at a
    user's (or system) message, or at a model response that follows tool outputs; never at a
    tool output (its call would be left out) nor at a reply to a message left out."""
    return role not in TURN_CONTINUATIONS or (role == "assistant" and older_role == "tool")


def _from_turn_start(window: list[Candidate], older_role: str | None) -> list[Candidate]:
    start = 0
    while start < len(window) and not opens_window(window[start].role, older_role):
        older_role = window[start].role
        start += 1
    return window[start:]


def essential_messages(system: str | None, new_message: str | None, new_items: Sequence[dict] = ()) -> list[dict]:
    head = [{"role": "system", "content": system}] if system else []
    return merged(
        head + list(new_items) + ([{"role": "user", "content": new_message}] if new_message is not None else [])
    )


def history_room(
    *,
    system: str | None,
    new_message: str | None,
    budget: int,
    room: int,
    count: Counter,
    new_items: Sequence[dict] = (),
) -> int:
    """Tokens left for history once the parts that are never dropped are in, framing included:
    the system prompt, the turn's new message, and its new items (`new_items`, as sent: tool
    outputs with the calls they answer, a message with parts)."""
    essentials = count(essential_messages(system, new_message, new_items))
    if essentials > room:
        raise BudgetExceeded(essentials, budget, room)
    return room - essentials


def assemble(
    *,
    system: str | None,
    window: Sequence[Candidate],
    contents: dict[int, str],
    new_message: str | None,
    room: int,
    count: Counter,
    cost: MessageCost,
    system_tokens: int = 0,
    new_tokens: int = 0,
    extras: Sequence[Extra] = (),
    chats: dict[int, dict] | None = None,
    new_entries: Sequence[ContextEntry] = (),
) -> tuple[list[ContextEntry], int]:
    """The entries sent and their exact token count, dropping further whole turns while the exact
    count exceeds `room` (per-message sums can under-count when tokenizers differ), and then the
    extras, last first.

    `chats`: the window's messages that are sent as more than their text, by id. `new_entries`:
    the turn's new items, sent before `new_message`.

    `history_room` has checked that the system prompt and the new message alone fit."""
    head = [ContextEntry("system", system, "system", cost("system", system_tokens), True)] if system else []
    tail = list(new_entries)
    if new_message is not None:
        tail.append(ContextEntry("user", new_message, "new", cost("user", new_tokens), True))
    window = list(window)
    extras = list(extras)
    chats = chats or {}
    while True:
        middle = [
            ContextEntry(
                c.role,
                contents[c.id],
                "history",
                cost(c.role, c.tokens),
                True,
                c.position,
                chat=chats.get(c.id),
                item=c.kind,
                masked=c.masked,
            )
            for c in window
        ]
        entries = head + [extra.entry(cost) for extra in extras] + middle + tail
        total = count(merged([entry.chatml() for entry in entries]))
        if total <= room or not (window or extras):
            return entries, total
        if window:
            window = drop_oldest_turn(window)
        else:
            extras.pop()
