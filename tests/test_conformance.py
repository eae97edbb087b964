"""One set of tests for `memchat.interface.ConversationMemory`, run against both of its
implementations, as LangGraph's checkpointers share one: `Memory` on the database, and
`RemoteMemory` through a real `memchat serve` on the same database, on each backend.

Each test acts through `subject` (the implementation under test) and reads what it did back
through `twin` (the other one, on the same data): the answers must be the same types with the
same values, so a field one side leaves out or fills differently fails here. Errors are compared
by class (the wording is the error table's business).

One server per backend serves the whole module, on a database the module shares; each test works
as a tenant of its own (an API key for the client, `Memory.as_tenant` for the database), so the
lists, searches, exports and statistics it reads hold its own threads only.
"""

from __future__ import annotations

import inspect
import io
import itertools
import json
from datetime import datetime, timedelta, timezone

import pytest
from conftest import postgres_database
from serving import Served

from memchat import BudgetExceeded, InvalidInput, MemchatError, NotFound, ReplyCutOff, Unanswered
from memchat.api import Memory
from memchat.context import Context
from memchat.interface import ConversationMemory, ItemMemory, OperatorMemory
from memchat.records import MessagePublic, SummaryPublic, ThreadPublic
from memchat.remote import RemoteMemory
from memchat.results import Reply, SearchHit
from memchat.transfer import ImportResult

EMBEDDINGS = "openai/text-embedding-3-small"
TENANTS = itertools.count(1)


def _members(protocol: type) -> set[str]:
    return {name for klass in protocol.__mro__ if klass.__module__ == "memchat.interface" for name in vars(klass)
            if not name.startswith("_")}


def _public(klass: type) -> set[str]:
    return {name for name in dir(klass) if not name.startswith("_")}


def _parameters(function) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


# ---- the interface itself --------------------------------------------------------------------


def test_memory_has_every_method_of_the_protocols_and_no_other():
    every = _members(ConversationMemory) | _members(ItemMemory) | _members(OperatorMemory)
    assert _public(Memory) == every


def test_the_client_has_exactly_the_conversation_methods():
    """No catch-all and nothing beside: a method the faces start to use on `Memory` must be
    added to the Protocol, and so to the client, or this fails."""
    assert _public(RemoteMemory) == _members(ConversationMemory)
    assert "__getattr__" not in vars(RemoteMemory)


@pytest.mark.parametrize("name", sorted(_members(ConversationMemory)))
def test_both_sides_take_the_arguments_the_protocol_names(name):
    wanted = getattr(ConversationMemory, name)
    for side in (Memory, RemoteMemory):
        assert _parameters(getattr(side, name)) == _parameters(wanted), f"{side.__name__}.{name}"
        assert inspect.signature(getattr(side, name)).return_annotation == inspect.signature(wanted).return_annotation


@pytest.mark.parametrize("name", sorted((_members(ItemMemory) | _members(OperatorMemory)) - {"tenant"}))
def test_the_database_alone_answers_the_operator_and_item_calls_as_named(name):
    protocol = ItemMemory if name in _members(ItemMemory) else OperatorMemory
    assert _parameters(getattr(Memory, name)) == _parameters(getattr(protocol, name))


# ---- one server and one database per backend -------------------------------------------------


@pytest.fixture(scope="module")
def db_url(request, tmp_path_factory, postgres_skip_reason):
    """The module's database, on each backend conftest parametrizes (it overrides conftest's
    one-per-test database, so that one server serves every test of a backend)."""
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("conformance") / "memchat.db")
        return
    if postgres_skip_reason:
        pytest.skip(postgres_skip_reason)
    with postgres_database("memchat_conformance_") as url:
        yield url


@pytest.fixture(scope="module")
def database(db_url):
    with Memory(db_url) as memory:
        yield memory.prepare()


@pytest.fixture(scope="module")
def module_server(db_url, database, openai_server, tmp_path_factory):
    """`memchat serve` on the module's database, with the environment each test gets from
    conftest's `isolated_env` (which is set per test, after this starts)."""
    settings = tmp_path_factory.mktemp("settings") / "config.json"
    running = Served(
        env={
            "MEMCHAT_DB": db_url, "MEMCHAT_CONFIG": str(settings), "OPENAI_API_KEY": "sk-test",
            "OPENAI_API_BASE": openai_server.url, "OPENAI_BASE_URL": openai_server.url,
        }
    )
    yield running
    running.stop()


@pytest.fixture
def pair(request, database, module_server, server):
    """(local, remote): one new tenant's view of the database, and a client of the server with
    that tenant's key."""
    tenant = f"conformance-{next(TENANTS)}"
    key = database.create_key(tenant)
    remote = RemoteMemory(module_server.url, key)
    yield database.as_tenant(tenant), remote
    remote.close()


@pytest.fixture(params=["local", "remote"])
def sides(request, pair) -> tuple[ConversationMemory, ConversationMemory]:
    """(subject, twin): the implementation under test, and the other one on the same data."""
    local, remote = pair
    return (local, remote) if request.param == "local" else (remote, local)


def same_failure(pair, call) -> type[BaseException]:
    """`call(memory)` fails on both sides with one class of error: that class."""
    raised = []
    for memory in pair:
        with pytest.raises(MemchatError) as failed:
            call(memory)
        raised.append(type(failed.value))
    assert raised[0] is raised[1], raised
    return raised[0]


def history(count: int) -> list[tuple[str, str]]:
    return [("user" if i % 2 == 0 else "assistant", f"message {i}: the code word is word{i} " + "and more " * 8)
            for i in range(count)]


# ---- threads ---------------------------------------------------------------------------------


def test_threads_are_made_read_changed_and_deleted(sides):
    subject, twin = sides
    made = subject.new_thread(title="trip", system="Be brief.", model="openai/gpt-4o", budget=3000, recall=2,
                              labels={"team": "blue"}, recall_embeddings=EMBEDDINGS)
    assert isinstance(made, ThreadPublic) and (made.title, made.budget, made.labels) == ("trip", 3000, {"team": "blue"})
    assert subject.thread(made.id) == twin.thread(made.id) == made
    assert subject.thread(made.id[:8]) == made
    other = subject.new_thread(title="second")
    assert subject.threads() == twin.threads() == [other, made]
    assert subject.latest_thread() == twin.latest_thread() == other

    changed = subject.configure(made.id, budget=None, policy="summary", summary_share=0.3, system=None)
    assert (changed.budget, changed.policy, changed.summary_share, changed.system) == (None, "summary", 0.3, None)
    assert twin.thread(made.id) == changed
    renamed = subject.rename(made.id, "a new title")
    assert renamed.title == "a new title" and twin.thread(made.id) == renamed

    assert subject.delete(other.id) == other.id
    assert [t.id for t in twin.threads()] == [made.id]


def test_a_thread_nobody_named_takes_its_first_user_message_as_title(sides, server):
    subject, twin = sides
    untitled = subject.new_thread(model="openai/gpt-4o")
    named = subject.new_thread(title="mine", model="openai/gpt-4o")
    server.reply("one", "two", "three")
    subject.say(untitled.id, "  Where shall we\n go in May, with the children?  ")
    subject.say(named.id, "hello")
    subject.say(untitled.id, "and in June?")
    assert twin.thread(untitled.id).title == "Where shall we go in May, with…"
    assert twin.thread(named.id).title == "mine"
    assert subject.threads(last=1) == twin.threads(last=1) == [twin.threads()[0]]
    assert [t.id for t in subject.threads(last=2)] == [untitled.id, named.id]


def test_thread_errors_are_the_same_on_both_sides(pair):
    thread = pair[0].new_thread()
    assert same_failure(pair, lambda m: m.thread("nosuchthread")) is NotFound
    assert same_failure(pair, lambda m: m.delete("nosuchthread")) is NotFound
    assert same_failure(pair, lambda m: m.rename(thread.id, "   ")) is InvalidInput
    assert same_failure(pair, lambda m: m.new_thread(policy="forgetful")) is InvalidInput
    assert same_failure(pair, lambda m: m.new_thread(budget=-5)) is InvalidInput
    assert same_failure(pair, lambda m: m.configure(thread.id, recall=-1)) is InvalidInput
    assert same_failure(pair, lambda m: m.configure(thread.id, colour="blue")) is InvalidInput
    assert same_failure(pair, lambda m: m.new_thread(model="nonsense/xyz")) is InvalidInput
    assert same_failure(pair, lambda m: m.configure(thread.id, summary_model="nonsense/xyz")) is InvalidInput


def test_the_latest_thread_of_a_memory_without_threads_is_not_found(pair):
    assert same_failure(pair, lambda m: m.latest_thread()) is NotFound


# ---- turns -----------------------------------------------------------------------------------


def test_a_turn_streams_notes_and_its_stored_message_and_replies_as_stored(sides, server):
    subject, twin = sides
    thread = subject.new_thread(system="Be brief.", model="openai/gpt-4o")
    expected_context = twin.context(thread.id, "where do we go?", max_tokens=50, with_dropped=False)
    server.reply("Lisbon, in May.")
    pieces, started = [], []
    reply = subject.say(thread.id, "where do we go?", stream=True, on_text=pieces.append, on_start=started.append,
                        max_tokens=50, temperature=0.5)
    assert isinstance(reply, Reply) and isinstance(reply.context, Context)
    assert (reply.text, reply.thread_id, reply.summary, reply.finish_reason) == ("Lisbon, in May.", thread.id, None, "stop")
    assert "".join(pieces) == reply.text
    stored = twin.messages(thread.id)
    assert [reply.user_message, reply.message] == stored
    assert started == [stored[0].model_copy(update={"status": "pending"})]
    assert reply.context == expected_context
    assert server.requests[-1]["max_tokens"] == 50 and server.requests[-1]["temperature"] == 0.5


def test_top_p_and_reasoning_effort_reach_the_provider(sides, server):
    subject, _ = sides
    thread = subject.new_thread(model="openai/local-reasoner")
    server.reply("tuned", "plain")
    subject.say(thread.id, "hi", top_p=0.5, reasoning_effort="low")
    assert (server.requests[-1]["top_p"], server.requests[-1]["reasoning_effort"]) == (0.5, "low")
    subject.say(thread.id, "again")
    assert "top_p" not in server.requests[-1] and "reasoning_effort" not in server.requests[-1]


def test_a_turn_without_streaming_hears_its_reply_whole(sides, server):
    subject, twin = sides
    thread = subject.new_thread(model="openai/gpt-4o")
    server.reply("all at once")
    heard = []
    reply = subject.say(thread.id, "hello", on_text=heard.append, policy="window", recall=1, system="Answer in French.")
    assert heard == ["all at once"] and reply.text == "all at once"
    assert server.last_messages[0] == {"role": "system", "content": "Answer in French."}
    assert twin.messages(thread.id, last=1) == [reply.message]


WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2


def test_a_tool_turn_and_its_outputs_are_the_same_on_both_sides(sides, server):
    subject, twin = sides
    thread = subject.new_thread(model="openai/gpt-4o")
    calls = server.reply_tool_calls(
        [
            {"name": "get_weather", "arguments": {"city": "Lisbon"}},
            {"name": "get_weather", "arguments": {"city": "Rome"}},
        ],
        reasoning="Two cities.",
    )
    asked = subject.say(thread.id, "Weather in Lisbon and Rome?", tools=[WEATHER], tool_choice="auto")
    assert server.last_tools == [WEATHER] and server.requests[-1]["tool_choice"] == "auto"
    assert asked.finish_reason == "tool_calls" and asked.text == ""
    assert [(c.call_id, c.name, c.arguments) for c in asked.tool_calls] == [
        (call.id, call.name, call.arguments_json) for call in calls
    ]
    assert list(asked.items) == twin.messages(thread.id)[1:]
    assert [m.kind for m in asked.items] == ["reasoning", "function_call", "function_call"]
    assert list(asked.said) == [asked.user_message]

    server.reply("Sunny and rainy.")
    pieces = []
    answered = subject.send_tool_outputs(
        thread.id, {calls[0].id: "sunny", calls[1].id: "rain"}, tools=[WEATHER], stream=True, on_text=pieces.append
    )
    assert answered.text == "".join(pieces) == "Sunny and rainy."
    assert server.last_messages[-2:] == [
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "rain"},
    ]
    stored = twin.messages(thread.id)
    assert list(answered.said) == stored[4:6] and list(answered.items) == stored[6:] == [answered.message]


def test_a_message_with_an_image_is_the_same_on_both_sides(sides, server):
    from memchat.records import MessageCreate

    subject, twin = sides
    thread = subject.new_thread(model="openai/gpt-4o")
    server.reply("A picture.")
    image = MessageCreate(
        role="user",
        content="What is this?",
        parts=[
            {"type": "text", "text": "What is this?"},
            {"type": "image", "data": PNG, "media_type": "image/png", "detail": "low"},
            {"type": "file", "data": b"plain words", "media_type": "text/plain", "filename": "notes.txt"},
        ],
    )
    reply = subject.say(thread.id, None, items=[image])
    assert [(i.media_type, i.data, i.detail) for i in server.images_received] == [("image/png", PNG, "low")]
    stored = twin.messages(thread.id)
    assert list(reply.said) == [reply.user_message] == stored[:1]
    assert [(p["type"], p.get("size"), p.get("filename")) for p in stored[0].parts] == [
        ("text", None, None),
        ("image", len(PNG), None),
        ("file", len(b"plain words"), "notes.txt"),
    ]


def test_tool_output_errors_are_the_same_on_both_sides(pair, server):
    local, _ = pair
    thread = local.new_thread(model="openai/gpt-4o")
    server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    local.say(thread.id, "Weather in Oslo?", tools=[WEATHER])
    before = local.messages(thread.id)
    assert same_failure(pair, lambda m: m.say(thread.id, "Never mind.")) is InvalidInput
    assert same_failure(pair, lambda m: m.send_tool_outputs(thread.id, {"call_nope": "x"})) is InvalidInput
    assert same_failure(pair, lambda m: m.send_tool_outputs(thread.id, {})) is InvalidInput
    assert same_failure(pair, lambda m: m.say(thread.id, "x", tools=[{"type": "web_search"}])) is InvalidInput
    assert local.messages(thread.id) == before


def test_a_failed_turn_keeps_the_message_and_retry_sends_it_again(pair, server):
    local, remote = pair
    threads = [memory.new_thread(model="openai/gpt-4o") for memory in pair]
    raised = []
    for memory, thread in zip(pair, threads):
        server.fail(401, "the provider refused the key")
        with pytest.raises(MemchatError) as failed:
            memory.say(thread.id, "hello")
        raised.append(type(failed.value))
    assert raised[0] is raised[1]
    server.reply("retried here", "retried there")
    replies = [memory.retry(thread.id) for memory, thread in zip(pair, threads)]
    assert [reply.text for reply in replies] == ["retried here", "retried there"]
    for memory, thread, reply in zip(reversed(pair), threads, replies):
        assert memory.messages(thread.id)[-2:] == [reply.user_message, reply.message]
    assert same_failure(pair, lambda m: m.retry(threads[0].id)) is InvalidInput
    assert same_failure(pair, lambda m: m.say("nosuchthread", "hi")) is NotFound
    assert same_failure(pair, lambda m: m.say(threads[0].id, "hi", temperature=7)) is InvalidInput


def test_edit_asks_again_in_a_fork(sides, server):
    subject, twin = sides
    thread = subject.new_thread(model="openai/gpt-4o")
    server.reply("one", "two", "two, again")
    subject.say(thread.id, "first")
    subject.say(thread.id, "second")
    notes = []
    reply = subject.edit(thread.id, 2, "second, said better", on_note=notes.append)
    fork = twin.thread(reply.thread_id)
    assert (fork.forked_from, fork.forked_at, reply.text) == (thread.id, 1, "two, again")
    assert [m.content for m in twin.messages(fork.id)] == ["first", "one", "second, said better", "two, again"]
    assert any(fork.id in note for note in notes)
    assert len(twin.messages(thread.id)) == 4


def test_edit_errors_are_the_same_on_both_sides(pair, server):
    thread = pair[0].new_thread(model="openai/gpt-4o")
    server.reply("one")
    pair[0].say(thread.id, "first")
    assert same_failure(pair, lambda m: m.edit(thread.id, 1, "the reply is not the user's")) is InvalidInput
    assert same_failure(pair, lambda m: m.edit(thread.id, 9, "no such message")) is NotFound


def test_a_cut_off_reply_is_accepted(sides, server):
    subject, twin = sides
    thread = subject.new_thread(model="openai/gpt-4o")
    server.reply("a reply that breaks off here")
    server.drop_after(1)
    with pytest.raises(Unanswered) as failed:
        subject.say(thread.id, "go on", stream=True)
    assert isinstance(failed.value.cause, ReplyCutOff) and failed.value.thread_id == thread.id
    assert failed.value.partial == "a reply that breaks off here"[: len(failed.value.partial)]
    kept = subject.accept(thread.id)
    assert isinstance(kept, MessagePublic) and kept.status == "complete"
    assert twin.messages(thread.id)[-1] == kept
    assert same_failure(sides, lambda m: m.accept(thread.id)) is InvalidInput


def test_undo_takes_the_last_turn_back(sides, server):
    subject, twin = sides
    thread = subject.new_thread(model="openai/gpt-4o")
    server.reply("one", "two")
    subject.say(thread.id, "first")
    subject.say(thread.id, "second")
    taken = subject.undo(thread.id)
    assert [m.status for m in taken] == ["undone", "undone"]
    assert twin.messages(thread.id)[2:] == taken
    assert not subject.turn_in_progress(thread.id) and not twin.turn_in_progress(thread.id)


def test_fork_copies_the_history_up_to_a_message(sides, server):
    subject, twin = sides
    thread = subject.new_thread(model="openai/gpt-4o", title="origin")
    server.reply("one")
    subject.say(thread.id, "first")
    made = subject.fork(thread.id, at=0)
    assert isinstance(made, ThreadPublic) and (made.forked_from, made.forked_at, made.title) == (thread.id, 0, "origin")
    assert twin.thread(made.id) == made
    assert [m.content for m in twin.messages(made.id)] == ["first"]
    whole = subject.fork(thread.id)
    assert twin.thread(whole.id).message_count == 2
    assert same_failure(sides, lambda m: m.fork(thread.id, at=-2)) is InvalidInput
    assert same_failure(sides, lambda m: m.fork("nosuchthread")) is NotFound


def test_the_context_preview_is_the_same(sides):
    subject, twin = sides
    local = sides[0] if isinstance(sides[0], Memory) else sides[1]
    thread = local.new_thread(system="Be brief.", model="openai/gpt-4o", messages=history(12))
    for options in ({}, {"budget": 200}, {"budget": 200, "with_dropped": False}, {"max_tokens": 40, "recall": 2}):
        preview = subject.context(thread.id, "the code word was?", **options)
        assert isinstance(preview, Context) and preview == twin.context(thread.id, "the code word was?", **options)
    assert subject.context(thread.id, policy="summary", budget=150) == twin.context(thread.id, policy="summary", budget=150)
    assert same_failure(sides, lambda m: m.context("nosuchthread")) is NotFound
    assert same_failure(sides, lambda m: m.context(thread.id, budget=-1)) is InvalidInput


def test_a_budget_too_small_for_the_message_is_the_same_error(pair):
    thread = pair[0].new_thread(model="openai/gpt-4o")
    assert same_failure(pair, lambda m: m.context(thread.id, "a long message " * 20, budget=3)) is BudgetExceeded


# ---- long-term memory ------------------------------------------------------------------------


def test_summaries_are_rebuilt_and_read(sides, server):
    subject, twin = sides
    local = sides[0] if isinstance(sides[0], Memory) else sides[1]
    thread = local.new_thread(model="openai/gpt-4o", policy="summary", budget=400, messages=history(30))
    assert subject.summary(thread.id) is None and subject.summaries(thread.id) == []
    server.reply(*[f"SUMMARY-{i}" for i in range(1, 10)])
    made = subject.rebuild_summary(thread.id)
    assert isinstance(made, SummaryPublic) and made.content.startswith("SUMMARY-")
    assert subject.summary(thread.id) == twin.summary(thread.id) == made
    assert subject.summaries(thread.id) == twin.summaries(thread.id)
    assert subject.summaries(thread.id)[-1] == made
    small = local.new_thread(model="openai/gpt-4o", policy="summary", messages=history(2))
    assert same_failure(sides, lambda m: m.rebuild_summary(small.id)) is InvalidInput


def test_the_vectors_of_recall_by_meaning_are_made_once(sides, server):
    subject, twin = sides
    local = sides[0] if isinstance(sides[0], Memory) else sides[1]
    thread = local.new_thread(model="openai/gpt-4o", recall=2, recall_embeddings=EMBEDDINGS, messages=history(4))
    assert subject.embed(thread.id) == 4
    assert twin.embed(thread.id) == 0
    plain = local.new_thread()
    assert same_failure(sides, lambda m: m.embed(plain.id)) is InvalidInput


def test_search_finds_the_same_hits(sides):
    subject, twin = sides
    local = sides[0] if isinstance(sides[0], Memory) else sides[1]
    first = local.new_thread(title="bees", messages=[("user", "we keep bees on the roof"), ("assistant", "bees like it")])
    local.new_thread(title="other", messages=[("user", "the roof leaks"), ("assistant", "fix the roof")])
    hits = subject.search("roof")
    assert hits and all(isinstance(hit, SearchHit) and isinstance(hit.message, MessagePublic) for hit in hits)
    assert hits == twin.search("roof")
    assert subject.search("bees", thread_id=first.id, limit=1) == twin.search("bees", thread_id=first.id, limit=1)
    assert subject.search("nowhere-to-be-found") == []
    assert same_failure(sides, lambda m: m.search("roof", limit=0)) is InvalidInput
    assert same_failure(sides, lambda m: m.search("")) is InvalidInput
    assert same_failure(sides, lambda m: m.search("roof", thread_id="nosuchthread")) is NotFound


# ---- usage -----------------------------------------------------------------------------------


def test_usage_and_statistics_are_the_same(sides, server):
    subject, twin = sides
    thread = subject.new_thread(model="openai/gpt-4o")
    quiet = subject.new_thread()
    server.reply("one", "two")
    subject.say(thread.id, "first")
    subject.say(thread.id, "second")
    totals = subject.usage_totals()
    assert set(totals) == {thread.id} and totals == twin.usage_totals()
    assert subject.usage_totals(thread.id) == twin.usage_totals(thread.id) == {thread.id: totals[thread.id]}
    assert subject.usage_totals(quiet.id) == {}
    for by in (None, "model", "day", "thread"):
        assert subject.stats(by=by) == twin.stats(by=by), by
    assert subject.stats(thread.id)["turns"][0]["calls"] == 2
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    assert subject.stats(since=yesterday) == twin.stats(since=yesterday)
    assert same_failure(sides, lambda m: m.stats(by="week")) is InvalidInput
    assert same_failure(sides, lambda m: m.stats("nosuchthread")) is NotFound


# ---- transfer --------------------------------------------------------------------------------


def test_exports_are_the_same(sides, server):
    subject, twin = sides
    thread = subject.new_thread(title="exported", model="openai/gpt-4o")
    server.reply("one")
    subject.say(thread.id, "first")
    subject.new_thread(title="another")
    exported = subject.export(thread.id)
    assert exported == twin.export(thread.id) and exported["id"] == thread.id
    assert subject.export_all() == twin.export_all()
    for thread_id, form in ((thread.id, "json"), (None, "json"), (thread.id, "markdown"), (None, "markdown")):
        written = [io.StringIO(), io.StringIO()]
        subject.write_export(written[0], thread_id, format=form)
        twin.write_export(written[1], thread_id, format=form)
        assert written[0].getvalue() == written[1].getvalue(), (thread_id, form)
    assert same_failure(sides, lambda m: m.export("nosuchthread")) is NotFound


def test_imports_make_the_same_threads(sides):
    subject, twin = sides
    local = sides[0] if isinstance(sides[0], Memory) else sides[1]
    origin = local.new_thread(title="to copy", messages=history(3))
    exported = local.export(origin.id)
    exported["source"] = f"elsewhere:{origin.id}"
    made = subject.import_(json.dumps(exported))
    assert isinstance(made, ImportResult) and len(made.threads) == 1 and made.existing == []
    copy = twin.thread(made.threads[0])
    assert (copy.title, copy.message_count, copy.source) == ("to copy", 3, f"elsewhere:{origin.id}")
    again = subject.import_(exported)
    assert again == ImportResult([], [(f"elsewhere:{origin.id}", copy.id)], [])
    assert same_failure(sides, lambda m: m.import_(b"not json")) is InvalidInput


# ---- what the client cannot honour -----------------------------------------------------------


def test_the_client_refuses_what_only_the_database_can_honour(pair):
    local, remote = pair
    thread = local.new_thread()
    refused = [
        lambda m: m.new_thread(api_base="http://127.0.0.1:9/v1"),
        lambda m: m.new_thread(messages=[("user", "hi")]),
        lambda m: m.configure(thread.id, api_base="http://127.0.0.1:9/v1"),
        lambda m: m.configure(thread.id, api_base=None),
        lambda m: m.say(thread.id, "hi", api_base="http://127.0.0.1:9/v1"),
        lambda m: m.say(thread.id, "hi", timeout=5),
        lambda m: m.say(thread.id, "hi", wait=1),
        lambda m: m.say(thread.id, "hi", earlier=[("user", "before")]),
        lambda m: m.fork(thread.id, wait=1),
        lambda m: m.rebuild_summary(thread.id, model="openai/gpt-4o"),
    ]
    for call in refused:
        with pytest.raises(InvalidInput, match="not taken through a server|on the database itself"):
            call(remote)
    assert local.new_thread(messages=[("user", "hi")]).message_count == 1
    assert [t.message_count for t in remote.threads()] == [1, 0]
    for memory in (local, remote):
        with pytest.raises(InvalidInput, match="colour"):
            memory.edit(thread.id, 0, "hi", colour="blue")
    remote.close()
