"""The summary policy: what is sent, when summaries are made, what is stored, and how it fails."""

import json

import pytest
from fake_openai import Fault

from memchat import ProviderError, llm
from memchat.summary import DEFAULT_PROMPT

COUNT = llm.counter("openai/gpt-4o")


def is_summary_call(body: dict) -> bool:
    return body["messages"][-1]["content"].startswith("Summary so far:")


def summaries_of(server) -> list[dict]:
    return [r for r in server.requests if is_summary_call(r)]


def chats_of(server) -> list[dict]:
    return [r for r in server.requests if not is_summary_call(r)]


@pytest.fixture
def summarizer(server):
    """Answers summary calls with SUMMARY-1, SUMMARY-2, ... and counts them."""
    made = []

    def answer(body):
        made.append(body)
        return f"SUMMARY-{len(made)}: the user listed facts."

    server.on(is_summary_call, answer)
    return made


def fact(i: int) -> str:
    return f"fact {i}: the code word is word{i} " + "and more words " * 5


def talk(memory, thread_id, turns, start=0, **options):
    notes = []
    replies = [memory.say(thread_id, fact(i), on_note=notes.append, **options) for i in range(start, start + turns)]
    return replies, notes


def test_short_threads_make_no_summary(memory, server, summarizer):
    thread = memory.new_thread(system="Be brief.", policy="summary", budget=2000)
    talk(memory, thread.id, 4)
    assert summarizer == [] and memory.summary(thread.id) is None
    assert len(server.last_messages) == 1 + 6 + 1


def test_history_that_leaves_the_window_is_folded_into_a_summary_after_the_system_prompt(memory, server, summarizer):
    thread = memory.new_thread(system="Be brief.", policy="summary", budget=400)
    before = None
    for i in range(30):
        memory.say(thread.id, fact(i))
        if summarizer:
            break
        before = [m.content for m in memory.messages(thread.id)]
    made = memory.summary(thread.id)
    assert made is not None and made.first_position == 0
    call = summarizer[0]["messages"]
    assert call[0] == {"role": "system", "content": DEFAULT_PROMPT.replace("{max_words}", call[0]["content"].split("at most ")[1].split(" ")[0])}
    material = call[1]["content"]
    assert material.startswith("Summary so far:\n(none yet)\n\nNew messages #0–")
    folded = [line for line in material.splitlines() if line.startswith("[#")]
    assert folded[0].startswith("[#0 user] fact 0:") and folded[-1].startswith(f"[#{made.last_position} ")
    assert len(folded) == made.last_position + 1

    sent = server.last_messages
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[1]["role"] == "system"
    assert sent[1]["content"] == (
        f"Summary of the earlier conversation (messages #0–#{made.last_position}, condensed by memchat):\n"
        "SUMMARY-1: the user listed facts."
    )
    history = memory.messages(thread.id)
    assert sent[2]["content"] == history[made.last_position + 1].content
    assert [m["content"] for m in sent[2:-1]] == [m.content for m in history[made.last_position + 1 : -2]]
    assert COUNT(sent) <= 400
    assert [m.content for m in history[: len(before)]] == before
    assert made.model == "openai/gpt-4o" or made.model.endswith("gpt-4o")
    assert made.prompt == call[0]["content"] and made.prompt_tokens == server.PROMPT_TOKENS


def test_summaries_are_incremental_and_at_most_one_call_a_turn(memory, server, summarizer):
    thread = memory.new_thread(policy="summary", budget=500)
    turns = 40
    for i in range(turns):
        calls_before = len(summarizer)
        memory.say(thread.id, fact(i))
        assert len(summarizer) - calls_before <= 1
    made = memory.summaries(thread.id)
    assert len(made) == len(summarizer)
    assert 2 <= len(made) <= turns // 4, "a fold leaves half the window free, so calls come every several turns"
    for previous, following, call in zip(made, made[1:], summarizer[1:]):
        material = call["messages"][-1]["content"]
        assert material.startswith(f"Summary so far:\n{previous.content}\n\nNew messages #{previous.last_position + 1}–")
        assert following.first_position == 0 and following.last_position > previous.last_position
    for request in chats_of(server):
        assert COUNT(request["messages"]) <= 500


def test_a_failed_summary_call_falls_back_to_the_window_and_the_next_turn_tries_again(memory, server):
    thread = memory.new_thread(policy="summary", budget=400)
    server.on(is_summary_call, Fault(400, "summaries are down today"))
    for i in range(30):
        replies, notes = talk(memory, thread.id, 1, start=i)
        if summaries_of(server):
            break
    assert any("could not update the summary" in note and "summaries are down today" in note for note in notes)
    assert replies[0].context.policy == "window"
    sent = server.last_messages
    assert all(not m["content"].startswith("Summary of the earlier") for m in sent)
    assert COUNT(sent) <= 400
    assert memory.summary(thread.id) is None
    assert memory.messages(thread.id)[-1].status == "complete"

    server.reset()
    server.on(is_summary_call, "SUMMARY: recovered.")
    _, notes = talk(memory, thread.id, 1, start=100)
    assert len(summaries_of(server)) == 1 and memory.summary(thread.id).content == "SUMMARY: recovered."
    assert server.last_messages[0]["content"].endswith("SUMMARY: recovered.")


def test_a_summary_over_its_cap_is_refused_and_the_turn_uses_the_window(memory, server):
    thread = memory.new_thread(policy="summary", budget=400, summary_share=0.2)
    server.on(is_summary_call, "far too long " * 200)
    for i in range(30):
        _, notes = talk(memory, thread.id, 1, start=i)
        if summaries_of(server):
            break
    assert any("longer than its share of the budget" in note for note in notes), notes
    assert memory.summary(thread.id) is None and COUNT(server.last_messages) <= 400


def test_the_summary_stays_within_its_share_of_the_budget(memory, server, summarizer):
    thread = memory.new_thread(policy="summary", budget=600, summary_share=0.2)
    replies, _ = talk(memory, thread.id, 25)
    context = replies[-1].context
    summary = next(e for e in context.entries if e.kind == "summary")
    room = 600 - COUNT([{"role": "user", "content": fact(24)}])
    assert summary.tokens <= int(room * 0.2)
    call = summarizer[-1]
    assert call["max_tokens"] < int(room * 0.2)


def test_summary_model_and_prompt_can_be_chosen(memory, server, summarizer, tmp_path):
    thread = memory.new_thread(
        policy="summary", budget=400, summary_model="openai/gpt-4o-mini", summary_prompt="Squash it into {max_words} words."
    )
    talk(memory, thread.id, 20)
    assert summarizer and {r["model"] for r in summarizer} == {"gpt-4o-mini"}
    assert {r["model"] for r in chats_of(server)} == {"gpt-4o"}
    instructions = summarizer[0]["messages"][0]["content"]
    assert instructions.startswith("Squash it into ") and instructions.endswith(" words.") and "{" not in instructions
    assert memory.summary(thread.id).prompt == instructions


def test_policy_is_changeable_later_and_per_turn(memory, server, summarizer):
    thread = memory.new_thread(budget=400)
    talk(memory, thread.id, 15)
    assert summarizer == []
    talk(memory, thread.id, 1, start=15, policy="summary")
    assert len(summarizer) == 1
    talk(memory, thread.id, 1, start=16)
    assert not server.last_messages[0]["content"].startswith("Summary of"), "the thread's policy is still window"
    memory.configure(thread.id, policy="summary")
    talk(memory, thread.id, 1, start=17)
    assert server.last_messages[0]["content"].startswith("Summary of")
    assert memory.thread(thread.id).policy == "summary"
    memory.configure(thread.id, policy=None, summary_share=0.3)
    assert (memory.thread(thread.id).policy, memory.thread(thread.id).summary_share) == ("window", 0.3)


def test_context_shows_the_summary_its_span_and_a_fold_that_is_due(memory, server, summarizer):
    thread = memory.new_thread(policy="summary", budget=400)
    talk(memory, thread.id, 20)
    made = memory.summary(thread.id)
    context = memory.context(thread.id, "next?")
    summary = next(e for e in context.entries if e.kind == "summary")
    assert summary.span == (0, made.last_position) and summary.kept
    dropped = [e.position for e in context.dropped]
    assert dropped == list(range(len(dropped)))
    history = [e.position for e in context.entries if e.kind == "history" and e.kept]
    assert history[0] > made.last_position

    talk(memory, thread.id, 1, start=50, policy="window")
    while memory.context(thread.id, "next?").summary_due is None:
        memory.say(thread.id, fact(60), policy="window")
    due = memory.context(thread.id, "next?").summary_due
    assert due[0] == made.last_position + 1 and due[1] >= due[0]
    calls = len(summarizer)
    memory.say(thread.id, "next?")
    assert len(summarizer) == calls + 1 and memory.summary(thread.id).last_position == due[1]


def test_rebuild_starts_from_the_first_message_and_keeps_earlier_summaries(memory, server, summarizer):
    thread = memory.new_thread(policy="summary", budget=400)
    talk(memory, thread.id, 20)
    earlier = memory.summaries(thread.id)
    rebuilt = memory.rebuild_summary(thread.id)
    assert summarizer[-1]["messages"][-1]["content"].startswith("Summary so far:\n(none yet)\n\nNew messages #0–")
    assert rebuilt.first_position == 0 and rebuilt.last_position >= earlier[-1].last_position
    assert memory.summaries(thread.id) == [*earlier, rebuilt] and memory.summary(thread.id) == rebuilt


def long_imported_thread(memory, *, budget: int):
    """40 messages of ~400 tokens, summarized by a model litellm does not know (8,192 tokens of context)."""
    long = "lorem ipsum dolor sit amet " * 80
    [thread_id] = memory.import_(
        {
            "policy": "summary",
            "budget": budget,
            "summary_model": "openai/memchat-unknown-model",
            "messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{i} {long}"} for i in range(40)],
        }
    ).threads
    return memory.thread(thread_id)


def test_rebuild_of_a_long_history_takes_as_many_calls_as_it_needs(memory, server, summarizer):
    thread = long_imported_thread(memory, budget=3000)
    notes = []
    rebuilt = memory.rebuild_summary(thread.id, on_note=notes.append)
    assert len(summarizer) >= 2 and notes
    spans = [s.last_position for s in memory.summaries(thread.id)]
    assert spans == sorted(spans) and rebuilt.last_position == spans[-1]
    for call in summarizer:
        assert COUNT(call["messages"]) <= 8192, "an unknown summary model gets the fallback context size"


def test_a_turn_folds_at_most_one_call_worth_when_far_behind(memory, server, summarizer):
    thread = long_imported_thread(memory, budget=2000)
    reply = memory.say(thread.id, "what did we say?")
    assert len(summarizer) == 1
    made = memory.summary(thread.id)
    assert made.last_position < 35
    assert COUNT(reply.context.messages) <= 2000
    assert reply.context.summary_due is None or reply.context.summary_due[0] == made.last_position + 1


def test_export_keeps_summaries_apart_from_the_conversation_and_import_restores_them(memory, server, summarizer):
    thread = memory.new_thread(policy="summary", budget=400, recall=2)
    talk(memory, thread.id, 20)
    data = memory.export(thread.id)
    assert len(data["messages"]) == 40
    assert all(not m["content"].startswith("SUMMARY") for m in data["messages"])
    assert [s["content"] for s in data["summaries"]] == [s.content for s in memory.summaries(thread.id)]
    assert (data["policy"], data["recall"]) == ("summary", 2)
    [copy] = memory.import_(json.dumps(data)).threads
    assert [(s.first_position, s.last_position, s.content, s.prompt) for s in memory.summaries(copy)] == [
        (s.first_position, s.last_position, s.content, s.prompt) for s in memory.summaries(thread.id)
    ]
    assert memory.thread(copy).policy == "summary"


def test_import_refuses_a_summary_outside_the_thread(memory):
    data = {
        "messages": [{"role": "user", "content": "hi"}],
        "summaries": [{"first_position": 0, "last_position": 5, "content": "x", "model": "m"}],
    }
    with pytest.raises(Exception, match="covers messages #0–#5"):
        memory.import_(data)
    assert memory.threads() == []


def test_window_threads_never_call_for_summaries(memory, server, summarizer):
    thread = memory.new_thread(budget=300)
    talk(memory, thread.id, 15)
    assert summarizer == []


def test_missing_key_for_the_summary_model_falls_back_with_a_note(memory, server, summarizer, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    thread = memory.new_thread(policy="summary", budget=400, summary_model="anthropic/claude-3-5-haiku-20241022")
    _, notes = talk(memory, thread.id, 15)
    assert any("ANTHROPIC_API_KEY" in note for note in notes)
    assert summarizer == [] and memory.summary(thread.id) is None
    with pytest.raises(ProviderError, match="ANTHROPIC_API_KEY"):
        memory.rebuild_summary(thread.id)


def test_a_summary_too_big_for_a_smaller_budget_is_condensed_to_fit(memory, server):
    answers = iter(["long summary " * 40, "short summary."])
    server.on(is_summary_call, lambda body: next(answers))
    thread = memory.new_thread(policy="summary", budget=800)
    for i in range(60):
        memory.say(thread.id, fact(i))
        if memory.summary(thread.id):
            break
    first = memory.summary(thread.id)
    reply = memory.say(thread.id, "and now?", budget=300)
    second = memory.summary(thread.id)
    assert second.id != first.id and second.content == "short summary."
    assert second.last_position >= first.last_position
    summary = next(e for e in reply.context.entries if e.kind == "summary")
    assert summary.content.endswith("short summary.") and COUNT(reply.context.messages) <= 300


def test_folding_with_no_new_messages_condenses_the_summary_alone(memory, server, summarizer):
    from memchat import summary as summarizing

    thread = memory.new_thread(policy="summary", budget=400)
    talk(memory, thread.id, 20)
    current = memory.summary(thread.id)
    request = summarizing.FoldRequest(through=current.last_position, max_tokens=50, fits=lambda *span: True)
    made = summarizing.fold(
        memory.store, memory.thread(thread.id), request, model="openai/gpt-4o", previous=current, timeout=10
    )
    assert summarizer[-1]["messages"][-1]["content"] == (
        f"Summary so far:\n{current.content}\n\nNew messages: none; condense the summary."
    )
    assert (made.first_position, made.last_position) == (0, current.last_position)
