"""The window policy, on random histories, budgets and message sizes, with litellm's real counter."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memchat import llm
from memchat.context import (
    Candidate,
    assemble,
    drop_oldest_turn,
    history_room,
    opens_window,
    room_for,
    select_window,
)
from memchat.errors import BudgetExceeded, InvalidInput
from memchat.tokens import tokenizer_for

MODEL = "openai/gpt-4o"
TOKENIZER = tokenizer_for(MODEL)
COUNT = llm.counter(MODEL, TOKENIZER)
COST = llm.message_cost(COUNT)

words = st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta", "🙂", "x" * 7, "naïve", "\n"]), max_size=40)
texts = words.map(" ".join)
roles = st.sampled_from(["user", "assistant", "user", "assistant", "system", "tool"])


@st.composite
def histories(draw):
    return draw(st.lists(st.tuples(roles, texts), max_size=30))


def fit(system, history, new_message, budget, *, count=COUNT, cost=COST, tokens=TOKENIZER.count):
    """The turn's pipeline on an in-memory history: the same calls memchat.prompt makes."""
    candidates = [Candidate(i, i, role, tokens(content)) for i, (role, content) in enumerate(history)]
    contents = {i: content for i, (_, content) in enumerate(history)}
    room = history_room(system=system, new_message=new_message, budget=budget, room=budget, count=count)
    window = select_window(reversed(candidates), room, cost)
    entries, total = assemble(
        system=system,
        window=window,
        contents=contents,
        new_message=new_message,
        room=budget,
        count=count,
        cost=cost,
        system_tokens=tokens(system) if system else 0,
        new_tokens=tokens(new_message) if new_message is not None else 0,
    )
    return entries, total


def chat(pairs):
    return [{"role": role, "content": content} for role, content in pairs]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    system=st.one_of(st.none(), texts.filter(str.strip)),
    new_message=texts.filter(str.strip),
    budget=st.integers(min_value=1, max_value=900),
)
def test_window_invariants(history, system, new_message, budget):
    essentials = chat(([("system", system)] if system else []) + [("user", new_message)])
    try:
        entries, total = fit(system, history, new_message, budget)
    except BudgetExceeded as exc:
        # Only when the parts that may never be dropped do not fit on their own.
        assert exc.needed == COUNT(essentials) > budget
        return
    sent = [entry.chatml() for entry in entries]
    assert COUNT(sent) == total <= budget
    if system:
        assert sent[0] == {"role": "system", "content": system}
    assert sent[-1] == {"role": "user", "content": new_message}

    kept = [entry for entry in entries if entry.kind == "history"]
    start = len(history) - len(kept)
    assert [entry.position for entry in kept] == list(range(start, len(history)))
    if kept:
        assert opens_window(kept[0].role, history[start - 1][0] if start else None)
    # Whole turns only (or, in an agent's run, whole steps: a response after tool outputs), and
    # as many as fit: the previous boundary would not have fitted.
    earlier = [
        i for i, (role, _) in enumerate(history[:start]) if opens_window(role, history[i - 1][0] if i else None)
    ]
    if earlier:
        longer = sent[: 1 if system else 0] + chat(history[earlier[-1]:]) + sent[-1:]
        assert COUNT(longer) > budget


@settings(max_examples=100, deadline=None)
@given(history=histories(), budget=st.integers(min_value=40, max_value=2000))
def test_per_message_costs_add_up_to_the_exact_total(history, budget):
    entries, total = fit("be brief", history, "next?", budget)
    assert sum(entry.tokens for entry in entries) + COUNT([]) == total


@settings(max_examples=100, deadline=None)
@given(history=histories(), budget=st.integers(min_value=20, max_value=600), system=st.one_of(st.none(), texts))
def test_exact_check_trims_when_stored_counts_under_count(history, budget, system):
    """Counts made by a different tokenizer (here: none at all) never let the list exceed the budget."""
    try:
        entries, total = fit(system or None, history, "q", budget, tokens=lambda text: 0)
    except BudgetExceeded:
        return
    sent = [entry.chatml() for entry in entries]
    assert COUNT(sent) == total <= budget
    kept = [entry for entry in entries if entry.kind == "history"]
    start = len(history) - len(kept)
    assert not kept or opens_window(kept[0].role, history[start - 1][0] if start else None)


def test_window_reads_only_what_it_needs():
    consumed = []

    def newest_first():
        for position in range(100_000, 0, -1):
            consumed.append(position)
            yield Candidate(position, position, "user" if position % 2 else "assistant", 10)

    window = select_window(newest_first(), 200, COST)
    assert len(consumed) <= 20
    assert window and window[0].role == "user"


def test_everything_fits_when_the_budget_is_large():
    entries, _ = fit("sys", [("user", "hi"), ("assistant", "hello")], "again", 10_000)
    assert [entry.chatml() for entry in entries] == chat(
        [("system", "sys"), ("user", "hi"), ("assistant", "hello"), ("user", "again")]
    )


def test_drops_oldest_whole_turn_and_never_starts_on_a_reply():
    history = [("user", "one " * 50), ("assistant", "two"), ("user", "three"), ("assistant", "four " * 20)]
    full = COUNT(chat(history + [("user", "q")]))
    entries, _ = fit(None, history, "q", full - 1)
    assert entries[0].chatml() == {"role": "user", "content": "three"}
    assert [entry.position for entry in entries if entry.kind == "history"] == [2, 3]


def test_drop_oldest_turn_takes_the_replies_with_it():
    window = [Candidate(i, i, role, 1) for i, role in enumerate(["user", "assistant", "tool", "user", "assistant"])]
    assert [c.position for c in drop_oldest_turn(window)] == [3, 4]


def test_the_essentials_alone_over_budget_is_an_error_with_both_numbers():
    with pytest.raises(BudgetExceeded) as caught:
        fit("s " * 100, [], "hello", 50)
    assert caught.value.budget == 50
    assert caught.value.needed > 50
    assert "50" in str(caught.value) and str(caught.value.needed) in str(caught.value)


def test_the_margin_is_held_back_and_named():
    assert room_for(1000, 0.2) == 800
    error = BudgetExceeded(900, 1000, 800)
    assert "800 after the margin" in str(error)


def test_preview_without_a_new_message():
    entries, _ = fit(None, [("user", "hi"), ("assistant", "hello")], None, 100)
    assert [entry.chatml() for entry in entries] == chat([("user", "hi"), ("assistant", "hello")])


def test_budget_must_be_positive():
    with pytest.raises(InvalidInput):
        room_for(0, 0.0)
