"""Turns through the public API, with litellm talking to the local OpenAI-protocol server."""

import socket
import threading
import time

import pytest
from helpers import connection_attempts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving import free_port

from memchat import BudgetExceeded, InvalidInput, Memory, NotFound, ProviderError, Unanswered, llm
from memchat.tokens import tokenizer_for


def test_a_turn_sends_the_system_prompt_history_and_new_message_and_stores_the_reply(memory, server):
    thread = memory.new_thread(title="t", system="You are terse.")
    server.reply("Hi Ada.", "Your name is Ada.")
    memory.say(thread.id, "My name is Ada.")
    reply = memory.say(thread.id, "What is my name?")

    assert server.last_messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hi Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    assert server.requests[-1]["model"] == "gpt-4o"
    assert server.requests[-1]["max_tokens"] == 1024
    assert reply.text == "Your name is Ada."

    stored = memory.messages(thread.id)
    assert [(m.position, m.role, m.content, m.status) for m in stored] == [
        (0, "user", "My name is Ada.", "complete"),
        (1, "assistant", "Hi Ada.", "complete"),
        (2, "user", "What is my name?", "complete"),
        (3, "assistant", "Your name is Ada.", "complete"),
    ]
    answer = stored[-1]
    assert answer.model == "openai/gpt-4o"
    assert (answer.prompt_tokens, answer.completion_tokens) == (server.PROMPT_TOKENS, server.COMPLETION_TOKENS)
    assert answer.cost is not None and answer.cost > 0
    assert answer.latency_ms is not None and answer.latency_ms >= 0
    exported = memory.export(thread.id)["messages"][1:]
    o200k = tokenizer_for("openai/gpt-4o")
    assert [m["tokens"] for m in exported] == [{"o200k_base": o200k.count(m["content"])} for m in exported]


def test_streamed_reply_arrives_in_pieces_and_is_stored_whole(memory, server):
    thread = memory.new_thread()
    server.reply("one two three four")
    pieces = []
    reply = memory.say(thread.id, "count", stream=True, on_text=pieces.append)
    assert server.requests[-1]["stream"] is True
    assert len(pieces) >= 4 and "".join(pieces) == "one two three four"
    assert reply.text == "one two three four"
    stored = memory.messages(thread.id)[-1]
    assert stored.content == "one two three four"
    assert stored.completion_tokens == server.COMPLETION_TOKENS


def test_turns_reuse_the_providers_connection(memory, server):
    """A turn asks litellm for the same client every time, so its kept-alive connection carries
    the next turn too (against a real provider, no new TLS handshake per turn). A streamed reply
    cannot leave it open: the OpenAI SDK's synchronous stream closes its response at the end."""
    thread = memory.new_thread()
    for n in range(4):
        memory.say(thread.id, f"turn {n}")
    assert len(server.requests) == 4 and server.connections <= 1


def test_the_budget_truncates_only_what_is_sent(memory, server):
    thread = memory.new_thread(system="sys")
    for i in range(6):
        memory.say(thread.id, f"message number {i} " + "padding " * 20)
    stored_before = len(memory.messages(thread.id))
    reply = memory.say(thread.id, "latest", budget=120)
    sent = server.last_messages
    assert llm.counter("openai/gpt-4o")(sent) == reply.context.prompt_tokens <= 120
    assert sent[0] == {"role": "system", "content": "sys"}
    assert sent[-1] == {"role": "user", "content": "latest"}
    assert sent[1]["role"] == "user"
    assert len(sent) < stored_before + 2
    assert len(memory.messages(thread.id)) == stored_before + 2


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=6),
    budget=st.integers(min_value=30, max_value=400),
)
def test_the_prompt_received_by_the_provider_never_exceeds_the_budget(tmp_path_factory, server, sizes, budget):
    with Memory(str(tmp_path_factory.mktemp("db") / "m.db")) as memory:
        thread = memory.new_thread(budget=budget)
        count = llm.counter("openai/gpt-4o")
        for size in sizes:
            before = len(server.requests)
            try:
                memory.say(thread.id, "word " * size)
            except BudgetExceeded:
                assert len(server.requests) == before
                continue
            assert count(server.last_messages) <= budget


def test_model_precedence_turn_then_thread_then_env_then_default(memory, server, monkeypatch):
    plain = memory.new_thread()
    memory.say(plain.id, "a")
    assert server.requests[-1]["model"] == "gpt-4o"
    monkeypatch.setenv("MEMCHAT_MODEL", "openai/gpt-4o-mini")
    memory.say(plain.id, "b")
    assert server.requests[-1]["model"] == "gpt-4o-mini"
    pinned = memory.new_thread(model="openai/gpt-4.1")
    memory.say(pinned.id, "c")
    assert server.requests[-1]["model"] == "gpt-4.1"
    memory.say(pinned.id, "d", model="openai/o3-mini")
    assert server.requests[-1]["model"] == "o3-mini"


def test_budget_defaults_to_the_model_context_minus_reply_tokens(memory):
    thread = memory.new_thread()
    assert memory.context(thread.id, "x").budget == llm.max_input_tokens("openai/gpt-4o") - 1024
    assert memory.context(thread.id, "x", max_tokens=2000).budget == llm.max_input_tokens("openai/gpt-4o") - 2000
    assert memory.context(thread.id, "x", model="openai/unknown-model-xyz").budget == 8192
    budgeted = memory.new_thread(budget=500)
    assert memory.context(budgeted.id, "x").budget == 500
    assert memory.context(budgeted.id, "x", budget=42).budget == 42


def test_over_budget_essentials_send_and_store_nothing(memory, server):
    thread = memory.new_thread(system="rules " * 50)
    with pytest.raises(BudgetExceeded):
        memory.say(thread.id, "hello", budget=20)
    assert server.requests == []
    assert memory.messages(thread.id) == []


def test_a_failed_turn_keeps_the_message_marked_failed_and_out_of_later_contexts(memory, server):
    thread = memory.new_thread()
    memory.say(thread.id, "first")
    server.fail(400, "bad request from the provider")
    with pytest.raises(Unanswered, match="rejected the request") as caught:
        memory.say(thread.id, "lost?")
    assert isinstance(caught.value.cause, ProviderError) and caught.value.thread_id == thread.id
    assert caught.value.message.content == "lost?"
    stored = memory.messages(thread.id)
    assert (stored[-1].content, stored[-1].status) == ("lost?", "failed")
    memory.say(thread.id, "second")
    roles = [m["role"] for m in server.last_messages]
    assert roles == ["user", "assistant", "user"]
    assert server.last_messages[-1]["content"] == "second"


@pytest.mark.parametrize(
    "status, pattern",
    [(401, "authentication failed"), (403, "permission denied"), (404, "not found"), (400, "rejected")],
)
def test_permanent_failures_are_not_retried(memory, server, status, pattern):
    thread = memory.new_thread()
    server.fail(status, "scripted")
    with pytest.raises(Unanswered, match=pattern) as caught:
        memory.say(thread.id, "hi")
    assert isinstance(caught.value.cause, ProviderError)
    assert "\n" not in str(caught.value)
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_transient_failures_are_retried(memory, server, status):
    thread = memory.new_thread()
    server.fail(status, "busy")
    server.fail(status, "still busy")
    server.reply("at last")
    assert memory.say(thread.id, "hi").text == "at last"
    assert len(server.requests) == 3
    assert [m.status for m in memory.messages(thread.id)] == ["complete", "complete"]


def test_retries_stop_within_the_timeout_with_one_line(memory, server):
    import time

    thread = memory.new_thread()
    for _ in range(20):
        server.fail(503, "overloaded")
    with pytest.raises(Unanswered, match="provider error 503") as caught:
        memory.say(thread.id, "hi", timeout=2)
    assert isinstance(caught.value.cause, ProviderError)
    assert time.monotonic() - server.arrivals[0] < 2.5, "retries end within the timeout of the first call"
    assert 1 < len(server.requests) < 20
    assert "\n" not in str(caught.value)
    assert memory.messages(thread.id)[-1].status == "failed"


def test_a_provider_that_does_not_answer_in_time(memory, server):
    import time

    thread = memory.new_thread()
    server.reply_delay = 5
    with pytest.raises(Unanswered, match="did not answer in time|cannot reach") as caught:
        memory.say(thread.id, "hello?", timeout=1.5)
    assert isinstance(caught.value.cause, ProviderError)
    assert time.monotonic() - server.arrivals[0] < 2.5, "the call gives up at its timeout"
    assert "\n" not in str(caught.value)
    assert memory.messages(thread.id)[-1].status == "failed"


def test_context_too_long_is_retried_once_with_a_tighter_budget(memory, server):
    thread = memory.new_thread()
    for i in range(6):
        memory.say(thread.id, f"turn {i} " + "words " * 30)
    notes = []
    server.fail(400, "This model's maximum context length is 100 tokens.", code="context_length_exceeded")
    reply = memory.say(thread.id, "final question", budget=400, on_note=notes.append)
    first, second = server.requests[-2]["messages"], server.requests[-1]["messages"]
    count = llm.counter("openai/gpt-4o")
    assert count(second) <= int(count(first) * 0.8) < count(first)
    assert reply.context.messages == second
    assert len(notes) == 1 and "retrying once with a budget of" in notes[0]


def test_a_stream_cut_off_keeps_the_partial_reply_out_of_later_contexts(memory, server):
    from memchat import ReplyCutOff

    thread = memory.new_thread()
    memory.say(thread.id, "first")
    server.reply("this answer will be cut off here")
    server.drop_after(3)
    pieces = []
    with pytest.raises(Unanswered) as caught:
        memory.say(thread.id, "second", stream=True, on_text=pieces.append)
    assert isinstance(caught.value.cause, ReplyCutOff)
    assert caught.value.partial == caught.value.cause.text == "".join(pieces) and pieces
    stored = memory.messages(thread.id)
    assert [(m.role, m.status) for m in stored[-2:]] == [("user", "failed"), ("assistant", "partial")]
    assert stored[-1].content == caught.value.partial
    server.reply("the whole answer")
    retried = memory.retry(thread.id)
    assert retried.text == "the whole answer"
    assert server.last_messages == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply 1"},
        {"role": "user", "content": "second"},
    ]
    assert [m.status for m in memory.messages(thread.id)] == ["complete"] * 3 + ["partial", "complete"]


def test_retry_resends_the_last_failed_message_and_refuses_when_there_is_none(memory, server):
    thread = memory.new_thread()
    server.fail(401, "bad key")
    with pytest.raises(Unanswered) as caught:
        memory.say(thread.id, "are you there?")
    assert isinstance(caught.value.cause, ProviderError)
    reply = memory.retry(thread.id)
    assert server.last_messages == [{"role": "user", "content": "are you there?"}]
    assert [(m.content, m.status) for m in memory.messages(thread.id)] == [
        ("are you there?", "complete"),
        (reply.text, "complete"),
    ]
    with pytest.raises(InvalidInput, match="nothing to retry"):
        memory.retry(thread.id)


def test_missing_key_names_the_variable_and_the_offline_model(memory, server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    thread = memory.new_thread()
    with pytest.raises(ProviderError, match="OPENAI_API_KEY") as caught:
        memory.say(thread.id, "hi")
    assert "memchat/echo" in str(caught.value)
    assert server.requests == [] and memory.messages(thread.id) == []


def test_unknown_model_is_explained(memory):
    thread = memory.new_thread(model="no-such-model-anywhere")
    with pytest.raises(ProviderError, match="unknown model 'no-such-model-anywhere'"):
        memory.say(thread.id, "hi")


def test_a_model_under_a_provider_litellm_does_not_know_is_refused_before_it_is_kept(memory):
    with pytest.raises(InvalidInput, match="model 'nonsense/xyz': litellm knows no provider 'nonsense'") as refused:
        memory.new_thread(model="nonsense/xyz")
    assert "openai/gpt-4o" in str(refused.value) and "memchat/echo" in str(refused.value)
    assert memory.threads() == []
    thread = memory.new_thread(model="openai/a-model-litellm-has-not-heard-of-yet")
    for setting, what in (("model", "model"), ("summary_model", "summary model"), ("recall_embeddings", "embedding model")):
        with pytest.raises(InvalidInput, match=f"^{what} 'bogus/m': litellm knows no provider 'bogus'"):
            memory.configure(thread.id, **{setting: "bogus/m"})
        with pytest.raises(InvalidInput, match=f"^{what} 'bogus/m'"):
            memory.new_thread(**{setting: "bogus/m"})
    assert memory.thread(thread.id) == thread and [t.id for t in memory.threads()] == [thread.id]
    memory.configure(thread.id, model="anthropic/claude-sonnet-4-5", recall_embeddings="ollama/nomic-embed-text")
    assert memory.new_thread(model="memchat/echo").model == "memchat/echo"


def test_the_provider_names_read_without_litellm_are_litellms_own():
    from litellm.llms.openai_like.json_loader import JSONProviderRegistry

    litellm = llm._litellm()
    JSONProviderRegistry.load()
    own = {getattr(provider, "value", provider) for provider in litellm.provider_list} | set(JSONProviderRegistry.list_providers())
    assert llm._provider_names() == own


def test_api_base_overrides_for_one_call(memory, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_BASE", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    thread = memory.new_thread()
    memory.say(thread.id, "via override", api_base=server.url)
    assert server.last_messages[-1]["content"] == "via override"
    with pytest.raises(Unanswered, match="cannot reach") as caught:
        memory.say(thread.id, "via env", timeout=2)
    assert isinstance(caught.value.cause, ProviderError)


def test_a_refused_connection_fails_at_once_and_leaves_the_message_unanswered(memory, server):
    thread = memory.new_thread()
    port = free_port()
    with connection_attempts(port) as attempts, pytest.raises(Unanswered, match="cannot reach") as caught:
        memory.say(thread.id, "anyone there?", api_base=f"http://127.0.0.1:{port}/v1", timeout=60)
    assert attempts.count == 1
    assert isinstance(caught.value.cause, ProviderError) and caught.value.cause.kind == "unreachable"
    assert f"http://127.0.0.1:{port}/v1" in str(caught.value) and "connection refused" in str(caught.value)
    assert [(m.content, m.status) for m in memory.messages(thread.id)] == [("anyone there?", "failed")]
    assert server.requests == []


def test_a_connection_dropped_without_an_answer_is_still_retried(memory):
    thread = memory.new_thread()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        threading.Thread(target=_hang_up_on_everyone, args=(listener,), daemon=True).start()
        with connection_attempts(port) as attempts, pytest.raises(Unanswered, match="cannot reach"):
            memory.say(thread.id, "hello?", api_base=f"http://127.0.0.1:{port}/v1", timeout=30)
    assert attempts.count == llm.MAX_ATTEMPTS


def _hang_up_on_everyone(listener: socket.socket) -> None:
    """Accepts each connection and closes it before any answer, until the listener is closed."""
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        connection.close()


def test_temperature_and_max_tokens_are_passed(memory, server):
    thread = memory.new_thread()
    memory.say(thread.id, "hi", temperature=0.25, max_tokens=77)
    assert server.requests[-1]["temperature"] == 0.25
    assert server.requests[-1]["max_tokens"] == 77


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_messages_are_refused(memory, server, text):
    thread = memory.new_thread()
    with pytest.raises(InvalidInput, match="empty"):
        memory.say(thread.id, text)
    assert memory.messages(thread.id) == [] and server.requests == []


def test_unknown_thread(memory):
    with pytest.raises(NotFound):
        memory.say("nope", "hi")


def test_thread_prefixes_resolve_when_unambiguous(memory, server):
    thread = memory.new_thread()
    memory.say(thread.id[:5], "short id")
    assert memory.messages(thread.id)[0].content == "short id"


def test_echo_model_reports_its_context_through_litellm(memory, server):
    thread = memory.new_thread(model="memchat/echo")
    memory.say(thread.id, "My name is Ada.")
    reply = memory.say(thread.id, "What is my name?")
    assert reply.text.startswith("You said: What is my name?")
    assert "received 3 messages" in reply.text
    assert f"{reply.context.prompt_tokens} tokens of context" in reply.text
    assert "'My name is Ada.'" in reply.text
    assert server.requests == []
    pieces = []
    streamed = memory.say(thread.id, "stream it", stream=True, on_text=pieces.append)
    assert len(pieces) > 3 and "".join(pieces) == streamed.text
    assert memory.messages(thread.id)[-1].completion_tokens > 0


def test_a_thread_is_titled_from_its_first_user_message_and_a_users_title_always_wins(memory, server):
    spoken = memory.new_thread()
    server.fail(401, "no")
    with pytest.raises(Unanswered):
        memory.say(spoken.id, "Plan a week in Lisbon\n\twith two children, in May")
    assert memory.thread(spoken.id).title == "Plan a week in Lisbon with two…", "the message is kept, so is its title"
    server.reset()
    memory.retry(spoken.id)
    memory.say(spoken.id, "something else")
    assert memory.thread(spoken.id).title == "Plan a week in Lisbon with two…"
    memory.rename(spoken.id, "Lisbon")
    memory.say(spoken.id, "and in June?")
    assert memory.thread(spoken.id).title == "Lisbon", "a title the user gives later wins"
    memory.configure(spoken.id, title="")
    memory.say(spoken.id, "and in July?")
    assert memory.thread(spoken.id).title == "", "a title the user took away does not come back"

    named = memory.new_thread(title="trip")
    memory.say(named.id, "hello")
    assert memory.thread(named.id).title == "trip"
    started = memory.new_thread(messages=[("assistant", "How can I help?"), ("user", "Short one")])
    assert started.title == memory.thread(started.id).title == "Short one"
    added = memory.new_thread(messages=[("assistant", "Hi.")])
    assert added.title == ""
    memory.add_messages(added.id, [("user", "an item added as said"), ("user", "a second")])
    assert memory.thread(added.id).title == "an item added as said"
    before = memory.new_thread()
    memory.say(before.id, "the turn's own", earlier=[("user", "said earlier"), ("assistant", "ok")])
    assert memory.thread(before.id).title == "said earlier"
    fork = memory.fork(spoken.id, at=-1)
    memory.say(fork.id, "a fork that starts afresh")
    assert memory.thread(fork.id).title == "a fork that starts afresh"


def test_context_preview_matches_what_the_turn_sends(memory, server):
    thread = memory.new_thread(system="sys")
    for i in range(5):
        memory.say(thread.id, f"turn {i} " + "filler " * 15)
    preview = memory.context(thread.id, "next one", budget=150)
    memory.say(thread.id, "next one", budget=150)
    assert preview.messages == server.last_messages
    assert preview.prompt_tokens == llm.counter("openai/gpt-4o")(server.last_messages)


def test_costs_are_stored_without_float_noise(memory, server):
    thread = memory.new_thread(model="openai/gpt-4o-mini")
    memory.say(thread.id, "hi")
    cost = memory.messages(thread.id)[-1].cost
    assert cost is not None and cost > 0
    assert repr(cost) == repr(float(f"{cost:.10g}")) and len(repr(cost)) <= 16


def test_earlier_messages_are_stored_within_the_turn_never_beside_another(memory, server):
    import threading

    from sqlalchemy import event

    thread = memory.new_thread(model="openai/gpt-4o")
    server.reply("first reply", "second reply")
    server.gate = threading.Barrier(2, timeout=60)
    first = threading.Thread(target=memory.say, args=(thread.id, "first"))
    first.start()
    while not server.arrivals:
        time.sleep(0.01)
    second = threading.Thread(
        target=memory.say, args=(thread.id, "and now?"), kwargs={"earlier": [("user", "a note"), ("assistant", "noted")]}
    )
    lease_reads = []

    def count_lease_reads(_connection, _cursor, statement, *_):
        if threading.current_thread() is second and "thread_leases" in statement:
            lease_reads.append(statement)

    event.listen(memory.store.engine, "before_cursor_execute", count_lease_reads)
    second.start()
    # The second turn asks for the lease again and again while the first holds it: it is waiting,
    # and nothing of it is stored meanwhile.
    deadline = time.monotonic() + 60
    while len(lease_reads) < 5:
        assert time.monotonic() < deadline and second.is_alive(), "the second turn never waited for the lease"
        time.sleep(0.01)
    event.remove(memory.store.engine, "before_cursor_execute", count_lease_reads)
    assert [m.content for m in memory.messages(thread.id)] == ["first"]
    server.gate.wait()
    server.gate = None
    first.join(60)
    second.join(60)
    assert [(m.role, m.content) for m in memory.messages(thread.id)] == [
        ("user", "first"), ("assistant", "first reply"),
        ("user", "a note"), ("assistant", "noted"), ("user", "and now?"), ("assistant", "second reply"),
    ]
    assert server.last_messages[-3:] == [
        {"role": "user", "content": "a note"}, {"role": "assistant", "content": "noted"}, {"role": "user", "content": "and now?"},
    ]
    with pytest.raises(InvalidInput):
        memory.say(thread.id, "x", earlier=[("system", "no")])
    with pytest.raises(InvalidInput):
        memory.say(thread.id, None, earlier=[("user", "no")])
    assert len(memory.messages(thread.id)) == 6
