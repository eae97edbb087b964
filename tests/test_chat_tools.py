"""Agent turns through Chat Completions (`X-Memchat-Thread`) against a real `memchat serve`: tools
sent on, a reply of tool calls in JSON and in streamed deltas as OpenAI sends them, `tool`
messages as the next turn, images and files in user messages, and bad input refused naming the
field with nothing stored. Clients: the official `openai` SDK and LangChain's `ChatOpenAI`."""

import base64
import json

import httpx
import openai
import pytest

from memchat import Memory

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
MODEL = "openai/gpt-4o-mini"


def kinds(thread_id):
    return [(m.role, m.kind) for m in Memory().messages(thread_id)]


def chat(served, thread_id):
    return served.client(default_headers={"X-Memchat-Thread": thread_id}).chat.completions


def test_a_tool_call_reply_and_the_tool_messages_as_the_next_turn(served, server):
    thread = Memory().new_thread(model=MODEL).id
    completions = chat(served, thread)
    calls = server.reply_tool_calls(
        [
            {"name": "get_weather", "arguments": {"city": "Lisbon"}},
            {"name": "get_weather", "arguments": {"city": "Rome"}},
        ]
    )
    asked = [{"role": "user", "content": "Weather in Lisbon and Rome?"}]
    done = completions.create(
        model=MODEL, messages=asked, tools=[WEATHER], tool_choice="auto", parallel_tool_calls=True
    )

    assert server.last_tools == [WEATHER]
    assert server.requests[-1]["tool_choice"] == "auto" and server.requests[-1]["parallel_tool_calls"] is True
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls] == [
        (call.id, call.name, call.arguments_json) for call in calls
    ]
    assert done.usage.prompt_tokens == server.PROMPT_TOKENS

    server.reply("Sunny in Lisbon, rain in Rome.")
    history = [
        *asked,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": [{"type": "text", "text": "rain"}]},
    ]
    answer = completions.create(model=MODEL, messages=history, tools=[WEATHER])
    assert answer.choices[0].message.content == "Sunny in Lisbon, rain in Rome."
    assert answer.choices[0].finish_reason == "stop"
    assert server.last_messages == [
        {"role": "user", "content": "Weather in Lisbon and Rome?"},
        {"role": "assistant", "tool_calls": [call.as_sent() for call in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "rain"},
    ]
    assert kinds(thread) == [
        ("user", "message"),
        ("assistant", "function_call"),
        ("assistant", "function_call"),
        ("tool", "function_call_output"),
        ("tool", "function_call_output"),
        ("assistant", "message"),
    ]


def test_tool_calls_stream_as_openai_deltas(served, server):
    thread = Memory().new_thread(model=MODEL).id
    completions = chat(served, thread)
    long_city = "Llanfairpwllgwyngyll" * 5
    calls = server.reply_tool_calls(
        [
            {"name": "get_weather", "arguments": {"city": long_city}},
            {"name": "get_weather", "arguments": {"city": "Oslo"}},
        ],
        text="Let me look.",
    )
    chunks = list(
        completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Weather?"}],
            tools=[WEATHER],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    assert "".join(d.content or "" for d in deltas) == "Let me look."
    pieces = [call for d in deltas for call in d.tool_calls or ()]
    openings = [p for p in pieces if p.id is not None]
    assert [(p.index, p.id, p.type, p.function.name, p.function.arguments) for p in openings] == [
        (0, calls[0].id, "function", "get_weather", ""),
        (1, calls[1].id, "function", "get_weather", ""),
    ]
    for index, call in enumerate(calls):
        following = [p for p in pieces if p.index == index and p.id is None]
        assert all(p.function.name is None and p.type is None for p in following)
        assert "".join(p.function.arguments for p in following) == call.arguments_json
    assert len([p for p in pieces if p.index == 0 and p.id is None]) > 1
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}
    assert chunks[-1].usage.prompt_tokens == server.PROMPT_TOKENS


def test_the_stream_helper_rebuilds_the_calls(served, server):
    thread = Memory().new_thread(model=MODEL).id
    calls = server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Paris"}}])
    with served.client().chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        extra_headers={"X-Memchat-Thread": thread},
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        (calls[0].id, "get_weather", calls[0].arguments_json)
    ]

    server.reply("Sunny.")
    answer = chat(served, thread).create(
        model=MODEL,
        messages=[{"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"}],
        tools=[WEATHER],
    )
    assert answer.choices[0].message.content == "Sunny."
    assert server.last_messages[-1] == {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"}


def test_images_and_files_in_a_user_message_reach_the_model_and_are_stored(served, server):
    thread = Memory().new_thread(model=MODEL).id
    image = "data:image/png;base64," + base64.b64encode(PNG).decode()
    pdf = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4 tiny").decode()
    server.reply("A picture and a PDF.")
    chat(served, thread).create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What are these?"},
                    {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
                    {"type": "file", "file": {"file_data": pdf, "filename": "a.pdf"}},
                ],
            }
        ],
    )
    assert [(i.media_type, i.data, i.detail) for i in server.images_received] == [("image/png", PNG, "low")]
    sent = server.last_messages[-1]["content"]
    assert sent[2] == {"type": "file", "file": {"file_data": pdf, "filename": "a.pdf"}}
    stored = Memory().messages(thread)[0]
    assert stored.content == "What are these?"
    assert [(p["type"], p.get("size"), p.get("filename")) for p in stored.parts] == [
        ("text", None, None),
        ("image", len(PNG), None),
        ("file", len(b"%PDF-1.4 tiny"), "a.pdf"),
    ]


def _refused(served, thread, **body):
    with pytest.raises(openai.BadRequestError) as refused:
        chat(served, thread).create(model=MODEL, **body)
    return refused.value.body


@pytest.mark.bad_input
def test_bad_agent_input_is_refused_naming_the_field_and_nothing_is_stored(served, server):
    thread = Memory().new_thread(model=MODEL).id
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    cases = [
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c"},
                    {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                ]
            },
            "messages[3].role",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": "call_2", "content": "x"},
                ]
            },
            "messages[2].tool_call_id",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "tool_calls": [{**call, "function": {"name": "f", "arguments": "{oops"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        ({"messages": [{"role": "user", "content": "a"}], "tools": [{"type": "web_search"}]}, "tools[0]"),
        (
            {"messages": [{"role": "user", "content": "a"}], "tools": [WEATHER], "tool_choice": "sometimes"},
            "tool_choice",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "file", "file": {"file_data": "data:text/plain;base64,aGk="}}],
                    }
                ]
            },
            "messages[0].content[0].filename",
        ),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "messages"),
    ]
    for body, param in cases:
        error = _refused(served, thread, **body)
        assert error["param"] == param, (param, error)
        assert error["type"] == "invalid_request_error"
    assert Memory().messages(thread) == []
    assert server.requests == []


@pytest.mark.bad_input
def test_an_output_for_no_waiting_call_is_refused_with_openais_words(served, server):
    thread = Memory().new_thread(model=MODEL).id
    error = _refused(served, thread, messages=[{"role": "tool", "tool_call_id": "call_nope", "content": "x"}])
    assert "No tool call found for function call output with call_id call_nope" in error["message"]
    assert Memory().messages(thread) == []


def test_langchain_bind_tools_runs_a_tool_loop(served, server):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    thread = Memory().new_thread(model=MODEL).id

    def get_weather(city: str) -> str:
        """The weather in a city now."""
        return {"Paris": "sunny", "Rome": "rain"}[city]

    model = ChatOpenAI(
        model=MODEL,
        base_url=served.base_url,
        api_key="unused",
        max_retries=0,
        default_headers={"X-Memchat-Thread": thread},
    ).bind_tools([get_weather])
    calls = server.reply_tool_calls(
        [
            {"name": "get_weather", "arguments": {"city": "Paris"}},
            {"name": "get_weather", "arguments": {"city": "Rome"}},
        ]
    )
    server.reply("Paris is sunny; Rome has rain.")

    messages = [HumanMessage("Weather in Paris and Rome?")]
    while True:
        answer = model.invoke(messages)
        messages.append(answer)
        if not answer.tool_calls:
            break
        for call in answer.tool_calls:
            messages.append(ToolMessage(get_weather(**call["args"]), tool_call_id=call["id"]))

    assert answer.content == "Paris is sunny; Rome has rain."
    assert server.requests[0]["tools"][0]["function"]["name"] == "get_weather"
    assert server.last_messages[-2:] == [
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "rain"},
    ]
    assert kinds(thread)[-3:] == [("tool", "function_call_output")] * 2 + [("assistant", "message")]

    streamed = server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Rome"}}])
    gathered = None
    for chunk in model.stream([*messages, HumanMessage("And Rome again?")]):
        gathered = chunk if gathered is None else gathered + chunk
    assert [(c["id"], c["name"], c["args"]) for c in gathered.tool_calls] == [
        (streamed[0].id, "get_weather", {"city": "Rome"})
    ]
    assert kinds(thread)[-2:] == [("user", "message"), ("assistant", "function_call")]


def test_plain_http_tool_turn_streams_raw_deltas(served, server):
    """The raw SSE lines, as a client without the SDK reads them (docs/agent-items.md §5.2)."""
    thread = Memory().new_thread(model=MODEL).id
    calls = server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    with httpx.stream(
        "POST",
        f"{served.base_url}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Oslo?"}], "tools": [WEATHER], "stream": True},
        headers={"X-Memchat-Thread": thread},
        timeout=60,
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    deltas = [json.loads(line[len("data: ") :])["choices"][0] for line in lines[:-1]]
    opening = next(d["delta"]["tool_calls"][0] for d in deltas if d["delta"].get("tool_calls"))
    assert opening == {
        "index": 0,
        "id": calls[0].id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert deltas[-1] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
