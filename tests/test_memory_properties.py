"""The budget invariants under both memory policies, with summaries and recall, on random threads."""

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from memchat import BudgetExceeded, llm
from memchat.context import RECALL_SHARE
from memchat.schemas import DEFAULT_SUMMARY_SHARE

COUNT = llm.counter("openai/gpt-4o")
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


pytestmark = pytest.mark.sqlite_only
"""One backend is enough here: the invariants are the assembly's, and both backends are covered
by the other memory tests."""


vocabulary = ["tram", "passport", "lisbon", "alpha", "beta", "🙂", "naïve", "x" * 9, "42", "\n"]
texts = st.lists(st.sampled_from(vocabulary), min_size=1, max_size=60).map(" ".join)
messages = texts.filter(str.strip)
roles = st.sampled_from(["user", "assistant"])


@st.composite
def threads(draw):
    history = draw(st.lists(st.tuples(roles, texts), max_size=40))
    summaries = []
    if history and draw(st.booleans()):
        last = draw(st.integers(0, len(history) - 1))
        summaries.append({"first_position": 0, "last_position": last, "content": draw(texts), "model": "m"})
    return {
        "model": "openai/gpt-4o",
        "system": draw(st.one_of(st.none(), texts)),
        "budget": draw(st.integers(30, 700)),
        "policy": draw(st.sampled_from(["window", "summary"])),
        "recall": draw(st.integers(0, 4)),
        "summary_share": draw(st.one_of(st.none(), st.floats(0.05, 0.9))),
        "messages": [{"role": role, "content": content} for role, content in history],
        "summaries": summaries,
    }


def check(context, data, new_message):
    data = {**data, "system": data["system"] if data["system"] and data["system"].strip() else None}
    sent = context.messages
    assert COUNT(sent) == context.prompt_tokens <= data["budget"]
    assert sent[-1] == {"role": "user", "content": new_message}
    kinds = [entry.kind for entry in context.entries]
    for kind in ("summary", "recall"):
        event(f"{kind} {'sent' if kind in kinds else 'not sent'}")
    expected_head = (["system"] if data["system"] else []) + [k for k in ("summary", "recall") if k in kinds]
    assert kinds[: len(expected_head)] == expected_head
    assert set(kinds[len(expected_head) :]) <= {"history", "new"}
    if data["system"]:
        assert sent[0] == {"role": "system", "content": data["system"]}
    history = [entry for entry in context.entries if entry.kind == "history"]
    window = [entry.position for entry in history]
    assert window == list(range(window[0], window[0] + len(window))) if window else True
    if history:
        assert history[0].role not in ("assistant", "tool")
    summary = next((entry for entry in context.entries if entry.kind == "summary"), None)
    if summary is not None:
        assert data["policy"] == "summary"
        assert summary.span == (0, data["summaries"][-1]["last_position"])
        assert all(position > summary.span[1] for position in window)
        room = data["budget"] - COUNT(sent[:1] + sent[-1:] if data["system"] else sent[-1:])
        assert summary.tokens <= int(room * (data["summary_share"] or DEFAULT_SUMMARY_SHARE))
    essentials = COUNT(sent[:1] + sent[-1:] if data["system"] else sent[-1:])
    recall = next((entry for entry in context.entries if entry.kind == "recall"), None)
    if recall is not None:
        assert 0 < len(recall.recalled) <= data["recall"]
        assert all(data["messages"][p]["role"] in ("user", "assistant") for p in recall.recalled)
        assert all(position < window[0] for position in recall.recalled) if window else True
        assert recall.tokens <= int((data["budget"] - essentials) * RECALL_SHARE)
    summarized = summary.span[1] if summary is not None else -1
    stored = data["messages"]
    if window:
        assert window[-1] == len(stored) - 1, "the window ends at the newest message"
    # Maximal: the turn before the window (after the summary's span) would not have fitted.
    start = window[0] if window else len(stored)
    earlier_turns = [p for p in range(summarized + 1, start) if stored[p]["role"] == "user"]
    event("an older turn was left out" if earlier_turns else "no older turn left out")
    if earlier_turns:
        before = earlier_turns[-1]
        head = len(expected_head)
        grown = sent[:head] + [{"role": m["role"], "content": m["content"]} for m in stored[before:start]] + sent[head:]
        assert COUNT(grown) > data["budget"], "an older whole turn would have fitted"


@SETTINGS
@given(data=threads(), new_message=messages)
def test_context_stays_within_budget_under_both_policies(memory, data, new_message):
    [thread_id] = memory.import_(data).threads
    try:
        context = memory.context(thread_id, new_message, with_dropped=False)
    except BudgetExceeded:
        assume(False)
    check(context, data, new_message)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=threads(), new_message=messages, summary_length=st.integers(1, 300))
def test_turns_send_within_budget_whatever_the_summary_model_returns(memory, server, data, new_message, summary_length):
    server.reset()
    server.on(lambda body: body["messages"][-1]["content"].startswith("Summary so far:"), "note " * summary_length)
    [thread_id] = memory.import_(data).threads
    try:
        reply = memory.say(thread_id, new_message)
    except BudgetExceeded:
        assume(False)
    chats = [r for r in server.requests if not r["messages"][-1]["content"].startswith("Summary so far:")]
    assert len(chats) == 1 and len(server.requests) <= 2
    assert chats[0]["messages"] == reply.context.messages
    check(reply.context, {**data, "summaries": [s.model_dump() for s in memory.summaries(thread_id)]}, new_message)
