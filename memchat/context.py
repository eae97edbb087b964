"""Context assembly and the budget policy: pure functions, no database and no litellm.

The token counter is passed in, so the same policy serves every model and the tests can check
it against any counter. The policy (window): keep the system prompt and the new message
always, and as much recent history as fits, cutting only at the start of a turn, so the
history sent is a contiguous suffix of the stored one that never opens on a reply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from memchat.errors import BudgetExceeded, InvalidInput

Counter = Callable[[list[dict]], int]
"""Tokens a ChatML list costs as a prompt, framing included (litellm.token_counter's meaning)."""

TURN_CONTINUATIONS = frozenset({"assistant", "tool"})


@dataclass(frozen=True)
class HistoryItem:
    position: int
    role: str
    content: str


@dataclass(frozen=True)
class ContextEntry:
    role: str
    content: str
    kind: str
    """`system` (the thread's prompt), `history` (a stored message) or `new` (this turn's message)."""
    tokens: int
    kept: bool
    position: int | None = None

    def chatml(self) -> dict:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Context:
    entries: list[ContextEntry]
    budget: int
    prompt_tokens: int
    """Exact count of the list sent, by the counter the context was fitted with."""
    framing_tokens: int
    """Tokens the list costs beyond its messages (reply priming)."""
    model: str = ""

    @property
    def messages(self) -> list[dict]:
        """The exact ChatML list to send."""
        return [entry.chatml() for entry in self.entries if entry.kept]

    @property
    def dropped(self) -> list[ContextEntry]:
        return [entry for entry in self.entries if not entry.kept]


def cut_points(history: Sequence[HistoryItem]) -> list[int]:
    """Indices where a kept suffix may start (a turn's first message), plus the empty suffix."""
    points = [i for i, item in enumerate(history) if item.role not in TURN_CONTINUATIONS]
    points.append(len(history))
    return points


def fit(
    *,
    system: str | None,
    history: Sequence[HistoryItem],
    new_message: str | None,
    budget: int,
    count: Counter,
    model: str = "",
) -> Context:
    """Drop the oldest whole turns until the list fits `budget` tokens."""
    if budget <= 0:
        raise InvalidInput(f"the budget must be a positive number of tokens, not {budget}")
    head = [{"role": "system", "content": system}] if system else []
    tail = [{"role": "user", "content": new_message}] if new_message is not None else []
    chat_history = [{"role": item.role, "content": item.content} for item in history]

    def cost(start: int) -> int:
        return count(head + chat_history[start:] + tail)

    points = cut_points(history)
    minimum = cost(points[-1])
    if minimum > budget:
        raise BudgetExceeded(minimum, budget)
    low, high = 0, len(points) - 1
    while low < high:
        middle = (low + high) // 2
        if cost(points[middle]) <= budget:
            high = middle
        else:
            low = middle + 1
    start = points[low]
    sent_tokens = cost(start)

    framing = count([])

    def tokens(message: dict) -> int:
        return count([message]) - framing

    entries = [ContextEntry("system", system, "system", tokens(head[0]), True)] if head else []
    entries += [
        ContextEntry(item.role, item.content, "history", tokens(chat_history[i]), i >= start, item.position)
        for i, item in enumerate(history)
    ]
    if tail:
        entries.append(ContextEntry("user", new_message, "new", tokens(tail[0]), True))
    return Context(entries=entries, budget=budget, prompt_tokens=sent_tokens, framing_tokens=framing, model=model)
