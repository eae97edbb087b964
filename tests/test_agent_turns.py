"""Agent turns through the public API: tools sent, tool calls stored as items, their outputs sent
as the next turn, and a thread of calls, outputs and reasoning fitted to the budget in units
(a call never travels without its outputs, nor an output without its call). The model is the
tests' local OpenAI-protocol server, reached through litellm."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memchat import InvalidInput, Unanswered
from memchat.records import MessageCreate

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}},
}
TOOLS = [WEATHER, TIME]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def kinds(memory, thread_id):
    return [(m.role, m.kind, m.status) for m in memory.messages(thread_id)]


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_is_stored_and_its_outputs_are_the_next_turn(memory, server, stream):
    thread = memory.new_thread(system="Use the tools.")
    calls = server.reply_tool_calls(
        [{"name": "get_weather", "arguments": {"city": "Lisbon"}}, {"name": "get_time", "arguments": {"zone": "UTC"}}],
        reasoning="Two tools at once.",
    )
    reply = memory.say(thread.id, "Weather in Lisbon, and the time?", tools=TOOLS, stream=stream)

    assert server.last_tools == TOOLS
    assert reply.finish_reason == "tool_calls" and reply.text == ""
    assert [(c.call_id, c.name, c.arguments) for c in reply.tool_calls] == [
        (call.id, call.name, call.arguments_json) for call in calls
    ]
    assert kinds(memory, thread.id) == [
        ("user", "message", "complete"),
        ("assistant", "reasoning", "complete"),
        ("assistant", "function_call", "complete"),
        ("assistant", "function_call", "complete"),
    ]
    assert memory.messages(thread.id)[1].content == "Two tools at once."

    server.reply("Sunny, and it is noon.")
    pieces = []
    answer = memory.send_tool_outputs(
        thread.id,
        {calls[0].id: "sunny, 21 C", calls[1].id: "12:00"},
        tools=TOOLS,
        stream=stream,
        on_text=pieces.append,
    )
    assert answer.text == "Sunny, and it is noon." and "".join(pieces) == answer.text
    assert server.last_messages[1:] == [
        {"role": "user", "content": "Weather in Lisbon, and the time?"},
        {"role": "assistant", "tool_calls": [call.as_sent() for call in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 21 C"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "12:00"},
    ]
    assert [(m.role, m.kind) for m in answer.said] == [("tool", "function_call_output")] * 2
    assert kinds(memory, thread.id)[4:] == [
        ("tool", "function_call_output", "complete"),
        ("tool", "function_call_output", "complete"),
        ("assistant", "message", "complete"),
    ]

    server.reply("You asked about Lisbon.")
    memory.say(thread.id, "What did I ask?")
    sent = server.last_messages
    assert sent[-1] == {"role": "user", "content": "What did I ask?"}
    assert [m["role"] for m in sent] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "user",
    ]
    assert server.last_tools is None


def test_a_call_left_without_its_output_refuses_the_next_message_and_stores_nothing(memory, server):
    thread = memory.new_thread()
    calls = server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    memory.say(thread.id, "Weather in Oslo?", tools=[WEATHER])
    before = memory.messages(thread.id)
    asked = len(server.requests)

    with pytest.raises(InvalidInput, match=f"No tool output found for function call {calls[0].id}.*memchat undo"):
        memory.say(thread.id, "Never mind.")
    with pytest.raises(InvalidInput, match="No tool call found for function call output with call_id call_nope"):
        memory.send_tool_outputs(thread.id, {"call_nope": "x"})
    assert memory.messages(thread.id) == before
    assert len(server.requests) == asked

    memory.undo(thread.id)
    server.reply("Fine.")
    assert memory.say(thread.id, "Never mind.").text == "Fine."


def test_every_parallel_call_must_be_answered(memory, server):
    thread = memory.new_thread()
    calls = server.reply_tool_calls(
        [{"name": "get_weather", "arguments": {"city": "A"}}, {"name": "get_weather", "arguments": {"city": "B"}}]
    )
    memory.say(thread.id, "Weather in A and B?", tools=[WEATHER])
    before = memory.messages(thread.id)
    with pytest.raises(InvalidInput, match=f"No tool output found for function call {calls[1].id}"):
        memory.send_tool_outputs(thread.id, {calls[0].id: "rain"})
    with pytest.raises(InvalidInput, match="No tool call found"):
        memory.send_tool_outputs(thread.id, {calls[0].id: "rain", calls[1].id: "sun", "call_x": "?"})
    assert memory.messages(thread.id) == before


def test_outputs_and_a_new_message_go_in_one_turn(memory, server):
    thread = memory.new_thread()
    calls = server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Rome"}}])
    memory.say(thread.id, "Weather in Rome?", tools=[WEATHER])
    server.reply("Rain; take an umbrella.")
    memory.send_tool_outputs(thread.id, {calls[0].id: "rain"}, text="Should I take an umbrella?", tools=[WEATHER])
    assert server.last_messages[-2:] == [
        {"role": "tool", "tool_call_id": calls[0].id, "content": "rain"},
        {"role": "user", "content": "Should I take an umbrella?"},
    ]
    assert kinds(memory, thread.id)[-3:] == [
        ("tool", "function_call_output", "complete"),
        ("user", "message", "complete"),
        ("assistant", "message", "complete"),
    ]


def test_a_failed_output_turn_keeps_the_outputs_as_failed_and_retry_sends_them_again(memory, server):
    thread = memory.new_thread()
    calls = server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Rome"}}])
    memory.say(thread.id, "Weather in Rome?", tools=[WEATHER])
    server.fail(400)
    with pytest.raises(Unanswered):
        memory.send_tool_outputs(thread.id, {calls[0].id: "rain"}, tools=[WEATHER])
    assert kinds(memory, thread.id)[-1] == ("tool", "function_call_output", "failed")
    with pytest.raises(InvalidInput, match="No tool output found"):
        memory.say(thread.id, "Hello?")

    server.reply("Rain.")
    assert memory.retry(thread.id, tools=[WEATHER]).text == "Rain."
    assert [m["role"] for m in server.last_messages] == ["user", "assistant", "tool"]
    assert server.last_messages[-1] == {"role": "tool", "tool_call_id": calls[0].id, "content": "rain"}
    assert kinds(memory, thread.id)[-2:] == [
        ("tool", "function_call_output", "complete"),
        ("assistant", "message", "complete"),
    ]

    calls = server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    memory.say(thread.id, "And Oslo?", tools=[WEATHER])
    server.fail(400)
    with pytest.raises(Unanswered):
        memory.send_tool_outputs(thread.id, {calls[0].id: "snow"}, tools=[WEATHER])
    server.reply("Snow.")
    memory.send_tool_outputs(thread.id, {calls[0].id: "snow, really"}, tools=[WEATHER])
    assert server.last_messages[-1]["content"] == "snow, really"


def test_tool_definitions_count_against_the_budget(memory, server):
    thread = memory.new_thread()
    plain = memory.context(thread.id, "Weather?")
    with_tools = memory.context(thread.id, "Weather?", tools=TOOLS)
    assert with_tools.prompt_tokens > plain.prompt_tokens + 20
    from memchat import BudgetExceeded

    with pytest.raises(BudgetExceeded):
        memory.context(thread.id, "Weather?", tools=TOOLS, budget=plain.prompt_tokens + 5)


def test_an_image_is_sent_to_the_model_and_stored_once(memory, server):
    thread = memory.new_thread()
    server.reply("A tiny picture.", "The same picture.")
    image = MessageCreate(
        role="user",
        content="What is this?",
        parts=[
            {"type": "text", "text": "What is this?"},
            {"type": "image", "data": PNG, "media_type": "image/png", "detail": "low"},
        ],
    )
    memory.say(thread.id, None, items=[image])
    memory.say(thread.id, None, items=[image.model_copy()])
    received = server.images_received
    assert [(i.media_type, i.data, i.detail) for i in received] == [("image/png", PNG, "low")] * 3
    stored = [m for m in memory.messages(thread.id) if m.parts]
    assert len(stored) == 2 and stored[0].parts[1]["blob"] == stored[1].parts[1]["blob"]
    assert stored[0].parts[1]["size"] == len(PNG)
    assert memory.store.blobs([stored[0].parts[1]["blob"]]) == {stored[0].parts[1]["blob"]: ("image/png", PNG)}


def test_a_call_and_its_outputs_stay_together_when_the_window_is_tight(memory, server):
    thread = memory.new_thread()
    big = "word " * 300
    memory.store.append_messages(
        thread.id,
        [
            MessageCreate(role="user", content="Read the files."),
            MessageCreate(
                role="assistant",
                kind="function_call",
                content="read(a)",
                call_id="c1",
                name="read",
                arguments='{"f":"a"}',
            ),
            MessageCreate(role="tool", kind="function_call_output", content=big, call_id="c1"),
            MessageCreate(
                role="assistant",
                kind="function_call",
                content="read(b)",
                call_id="c2",
                name="read",
                arguments='{"f":"b"}',
            ),
            MessageCreate(role="tool", kind="function_call_output", content="short", call_id="c2"),
            MessageCreate(role="assistant", content="Done."),
        ],
    )
    context = memory.context(thread.id, "Next?", budget=200, with_dropped=False)
    sent = context.messages
    assert sent[0]["role"] == "assistant" and sent[0]["tool_calls"][0]["id"] == "c2"
    assert [m["role"] for m in sent] == ["assistant", "tool", "assistant", "user"]
    assert context.prompt_tokens <= 200


UNIT_KINDS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3),  # parallel calls in a step (0: a plain reply)
        st.lists(st.integers(min_value=1, max_value=120), min_size=3, max_size=3),  # output sizes in words
    ),
    min_size=1,
    max_size=8,
)


def _agent_thread(memory, steps) -> str:
    thread = memory.new_thread()
    said = []
    n = 0
    for turn, (calls, sizes) in enumerate(steps):
        said.append(MessageCreate(role="user", content=f"Task {turn}: " + "go " * sizes[0]))
        for step in range(1 + calls % 2):
            ids = []
            for index in range(calls):
                n += 1
                ids.append(f"call_{n}")
                said.append(
                    MessageCreate(
                        role="assistant",
                        kind="function_call",
                        content=f"f({index})",
                        call_id=ids[-1],
                        name="f",
                        arguments=f'{{"i": {index}, "s": {step}}}',
                    )
                )
            for index, call_id in enumerate(ids):
                said.append(
                    MessageCreate(
                        role="tool", kind="function_call_output", content="out " * sizes[index % 3], call_id=call_id
                    )
                )
        said.append(MessageCreate(role="assistant", content="Done " * sizes[1]))
    memory.store.append_messages(thread.id, said)
    return thread.id


@pytest.mark.sqlite_only
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=UNIT_KINDS, budget=st.integers(min_value=60, max_value=1500))
def test_every_request_pairs_calls_and_outputs_and_fits_the_budget(memory, steps, budget):
    thread_id = _agent_thread(memory, steps)
    try:
        context = memory.context(thread_id, "Next?", budget=budget, with_dropped=False)
    except Exception as exc:  # the new message alone does not fit: nothing to check
        assert type(exc).__name__ == "BudgetExceeded"
        return
    assert context.prompt_tokens <= budget
    sent = context.messages
    waiting: set[str] = set()
    for message in sent:
        if message["role"] == "tool":
            assert message["tool_call_id"] in waiting, "an output without its call"
            waiting.discard(message["tool_call_id"])
        else:
            assert not waiting, "a call without its output"
            waiting = {call["id"] for call in message.get("tool_calls") or ()}
    assert not waiting


def _steps(memory, count: int, output_words: int = 200) -> str:
    thread = memory.new_thread()
    said = [MessageCreate(role="user", content="Read every file.")]
    for step in range(count):
        said += [
            MessageCreate(
                role="assistant",
                kind="function_call",
                content=f"read({step})",
                call_id=f"call_{step}",
                name="read_file",
                arguments=f'{{"n": {step}}}',
            ),
            MessageCreate(
                role="tool", kind="function_call_output", content=f"line{step} " * output_words, call_id=f"call_{step}"
            ),
        ]
    said.append(MessageCreate(role="assistant", content="All read."))
    memory.store.append_messages(thread.id, said)
    return thread.id


def test_older_tool_outputs_are_masked_by_default_and_kept_whole_on_request(memory, server):
    thread_id = _steps(memory, 5)
    masked = memory.context(thread_id, "Summarise them.", with_dropped=False)
    tools = [m for m in masked.messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tools] == [f"call_{n}" for n in range(5)]
    assert all(m["content"].startswith("[memchat: this output of `read_file` (") for m in tools[:2])
    assert "message #4" in tools[1]["content"] and f"memchat show {thread_id}" in tools[1]["content"]
    assert [m["content"] for m in tools[2:]] == [f"line{n} " * 200 for n in (2, 3, 4)]
    assert [e.masked for e in masked.entries if e.item == "function_call_output"] == [True, True, False, False, False]

    memory.configure(thread_id, tool_outputs="keep")
    kept = memory.context(thread_id, "Summarise them.", with_dropped=False)
    assert [m["content"] for m in kept.messages if m["role"] == "tool"] == [f"line{n} " * 200 for n in range(5)]
    assert kept.prompt_tokens > masked.prompt_tokens + 300
    assert memory.thread(thread_id).tool_outputs == "keep"


def test_the_outputs_a_turn_sends_count_as_its_newest_step(memory, server):
    thread = memory.new_thread()
    calls = server.reply_tool_calls([{"name": "read_file", "arguments": {"n": 0}}])
    memory.say(thread.id, "Read four files.", tools=[WEATHER])
    for step in range(4):
        following = server.reply_tool_calls([{"name": "read_file", "arguments": {"n": step + 1}}]) if step < 3 else None
        if following is None:
            server.reply("Done.")
        memory.send_tool_outputs(thread.id, {calls[0].id: f"text{step} " * 100}, tools=[WEATHER])
        calls = following
    sent = [m for m in server.last_messages if m["role"] == "tool"]
    assert len(sent) == 4
    assert sent[0]["content"].startswith("[memchat: this output of `read_file`")
    assert [m["content"] for m in sent[1:]] == [f"text{n} " * 100 for n in (1, 2, 3)]
    assert memory.messages(thread.id)[-3].name == "read_file"


def test_thinking_blocks_go_back_only_to_the_family_that_signed_them(memory, server):
    blocks = [{"type": "thinking", "thinking": "I should look.", "signature": "SIG=="}]

    def thread_with(family: str) -> str:
        thread = memory.new_thread()
        memory.store.append_messages(
            thread.id,
            [
                MessageCreate(role="user", content="Weather?"),
                MessageCreate(
                    role="assistant",
                    kind="reasoning",
                    content="I should look.",
                    provider_data={
                        "family": family,
                        "summary": [],
                        "content": ["I should look."],
                        "thinking_blocks": blocks,
                    },
                ),
                MessageCreate(role="assistant", content="Let me check."),
                MessageCreate(
                    role="assistant", kind="function_call", content="w()", call_id="toolu_1", name="w", arguments="{}"
                ),
                MessageCreate(role="tool", kind="function_call_output", content="sunny", call_id="toolu_1"),
                MessageCreate(role="assistant", content="Sunny."),
            ],
        )
        return thread.id

    same = memory.context(thread_with("openai"), "Thanks.", with_dropped=False).messages
    assert same[1] == {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
        "thinking_blocks": blocks,
    }
    other = memory.context(thread_with("anthropic"), "Thanks.", with_dropped=False).messages
    assert "thinking_blocks" not in other[1] and other[1]["content"] == "Let me check."


def test_deleting_a_thread_deletes_its_images_unless_another_message_holds_them(memory, server):
    def with_image(data: bytes) -> str:
        thread = memory.new_thread()
        part = {"type": "image", "data": data, "media_type": "image/png", "detail": "auto"}
        memory.add_items(
            thread.id, [MessageCreate(role="user", content="see", parts=[{"type": "text", "text": "see"}, part])]
        )
        return thread.id

    other = PNG + b"other"
    first, second, third = with_image(PNG), with_image(PNG), with_image(other)
    shared = memory.messages(first)[0].parts[1]["blob"]
    own = memory.messages(third)[0].parts[1]["blob"]
    memory.fork(third)
    memory.delete(first)
    assert memory.blobs([shared])[shared][1] == PNG
    memory.delete(second)
    with pytest.raises(Exception, match="no stored blob"):
        memory.blobs([shared])
    memory.delete(third)
    assert memory.blobs([own])[own][1] == other


def test_a_summary_reads_an_agents_items_as_text(memory, server):
    thread_id = _steps(memory, 6, output_words=400)
    memory.configure(thread_id, policy="summary", budget=900)
    server.reply("The agent read six files.")
    memory.rebuild_summary(thread_id)
    material = server.last_messages[-1]["content"]
    assert 'called read_file({"n": 0})' in material
    assert "output of call_0: line0 line0" in material and "characters in all)" in material


def test_an_image_over_the_limit_is_refused_before_anything_is_stored(memory, server, monkeypatch):
    monkeypatch.setenv("MEMCHAT_MAX_ITEM_BYTES", "1000")
    thread = memory.new_thread()
    image = MessageCreate(
        role="user",
        content="big",
        parts=[{"type": "text", "text": "big"}, {"type": "image", "data": PNG, "media_type": "image/png"}],
    )
    with pytest.raises(InvalidInput, match=r"items\[0\].parts\[1\]: 2,056 bytes is over the limit of 1,000"):
        memory.say(thread.id, None, items=[image])
    assert memory.messages(thread.id) == [] and server.requests == []
