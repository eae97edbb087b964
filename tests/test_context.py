"""The window policy, on random histories, budgets and message sizes, with litellm's real counter."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memchat import llm
from memchat.context import HistoryItem, cut_points, fit
from memchat.errors import BudgetExceeded, InvalidInput

COUNT = llm.counter("openai/gpt-4o")

words = st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta", "🙂", "x" * 7, "naïve", "\n"]), max_size=40)
texts = words.map(" ".join)
roles = st.sampled_from(["user", "assistant", "user", "assistant", "system", "tool"])


@st.composite
def histories(draw):
    items = draw(st.lists(st.tuples(roles, texts), max_size=30))
    return [HistoryItem(position, role, content) for position, (role, content) in enumerate(items)]


def _fit(**kwargs):
    return fit(count=COUNT, model="openai/gpt-4o", **kwargs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    system=st.one_of(st.none(), texts.filter(str.strip)),
    new_message=texts.filter(str.strip),
    budget=st.integers(min_value=1, max_value=900),
)
def test_window_invariants(history, system, new_message, budget):
    try:
        context = _fit(system=system, history=history, new_message=new_message, budget=budget)
    except BudgetExceeded as exc:
        # Only when the parts that may never be dropped do not fit on their own.
        essentials = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": new_message}
        ]
        assert exc.needed == COUNT(essentials) > budget
        return
    sent = context.messages
    assert COUNT(sent) == context.prompt_tokens <= budget
    if system:
        assert sent[0] == {"role": "system", "content": system}
    assert sent[-1] == {"role": "user", "content": new_message}

    kept = [entry for entry in context.entries if entry.kind == "history" and entry.kept]
    kept_positions = [entry.position for entry in kept]
    assert kept_positions == [item.position for item in history[len(history) - len(kept):]]
    if kept:
        assert kept[0].role not in ("assistant", "tool")
        start = len(history) - len(kept)
    else:
        start = len(history)
    # Whole turns only, and as many as fit: the previous turn boundary would not have fitted.
    earlier = [p for p in cut_points(history) if p < start]
    if earlier:
        head = sent[:1] if system else []
        longer = head + [{"role": i.role, "content": i.content} for i in history[earlier[-1]:]] + sent[-1:]
        assert COUNT(longer) > budget


@settings(max_examples=100, deadline=None)
@given(history=histories(), budget=st.integers(min_value=1, max_value=2000))
def test_per_message_tokens_add_up_to_the_total(history, budget):
    context = _fit(system="be brief", history=history, new_message="next?", budget=max(budget, 40))
    kept_tokens = sum(entry.tokens for entry in context.entries if entry.kept)
    assert kept_tokens + context.framing_tokens == context.prompt_tokens


def test_everything_fits_when_the_budget_is_large():
    history = [HistoryItem(0, "user", "hi"), HistoryItem(1, "assistant", "hello")]
    context = _fit(system="sys", history=history, new_message="again", budget=10_000)
    assert context.messages == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ]
    assert context.dropped == []


def test_drops_oldest_whole_turn_and_never_starts_on_a_reply():
    history = [
        HistoryItem(0, "user", "one " * 50),
        HistoryItem(1, "assistant", "two"),
        HistoryItem(2, "user", "three"),
        HistoryItem(3, "assistant", "four " * 20),
    ]
    full = COUNT([{"role": i.role, "content": i.content} for i in history] + [{"role": "user", "content": "q"}])
    context = _fit(system=None, history=history, new_message="q", budget=full - 1)
    assert [entry.position for entry in context.dropped] == [0, 1]
    assert context.messages[0] == {"role": "user", "content": "three"}


def test_the_essentials_alone_over_budget_is_an_error_with_both_numbers():
    with pytest.raises(BudgetExceeded) as caught:
        _fit(system="s " * 100, history=[], new_message="hello", budget=50)
    assert caught.value.budget == 50
    assert caught.value.needed > 50
    assert "50" in str(caught.value) and str(caught.value.needed) in str(caught.value)


def test_preview_without_a_new_message():
    history = [HistoryItem(0, "user", "hi"), HistoryItem(1, "assistant", "hello")]
    context = _fit(system=None, history=history, new_message=None, budget=100)
    assert context.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def test_budget_must_be_positive():
    with pytest.raises(InvalidInput):
        _fit(system=None, history=[], new_message="x", budget=0)
