"""The tests' local provider (tests/fake_openai.py) answers with tool calls and reasoning, and
reports what it received, as OpenAI's Chat Completions API does: checked on the wire, and through
the two clients that talk to it in memchat's tests, litellm and the official openai SDK. A test of
memchat that relies on these answers can then trust that a failure is memchat's."""

import base64
import json
import urllib.request

import litellm
import pytest
from fake_openai import Answer, ReceivedImage, ToolCall
from openai import OpenAI, pydantic_function_tool
from pydantic import BaseModel


class GetWeather(BaseModel):
    """The weather in a city now."""

    city: str


class GetTime(BaseModel):
    """The time in a time zone now."""

    zone: str


WEATHER_TOOL = pydantic_function_tool(GetWeather, name="get_weather")
TIME_TOOL = pydantic_function_tool(GetTime, name="get_time")
TOOLS = [WEATHER_TOOL, TIME_TOOL]
ASKED = [{"role": "user", "content": "Weather in Lisbon, and the time in Tokyo?"}]
PARALLEL = [
    {"name": "get_weather", "arguments": {"city": "Lisbon"}},
    {"name": "get_time", "arguments": {"zone": "Asia/Tokyo"}},
]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def posted(server, **request) -> str:
    """The answer's body to a request written by hand, as it came over the wire (no client in
    between to fill in or drop fields)."""
    body = json.dumps({"model": "gpt-4o", "messages": ASKED, **request}).encode()
    sent = urllib.request.Request(
        server.url + "/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(sent, timeout=10) as response:
        return response.read().decode()


def sse_chunks(server, **request) -> list[dict]:
    """The chunks of a streamed answer, checked to end as OpenAI's do."""
    events = posted(server, stream=True, **request).split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    return [json.loads(event.removeprefix("data: ")) for event in events[:-2]]


def litellm_completion(server, **request):
    return litellm.completion(model="openai/gpt-4o", api_base=server.url, api_key="sk-test", messages=ASKED, **request)


def openai_client(server) -> OpenAI:
    return OpenAI(base_url=server.url, api_key="sk-test", max_retries=0)


def test_a_tool_call_reply_in_json_is_openais_shape(server):
    calls = server.reply_tool_calls(PARALLEL)
    choice = json.loads(posted(server, tools=TOOLS))["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": calls[0].id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
            },
            {
                "id": calls[1].id,
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"zone": "Asia/Tokyo"}'},
            },
        ],
    }
    assert all(call.id.startswith("call_") and len(call.id) == 29 for call in calls)
    assert calls[0].id != calls[1].id


def test_streamed_parallel_calls_are_openais_chunks(server):
    """As OpenAI's recorded streams of parallel calls: the role alone first, then per call a chunk
    opening it (index, id, type, name, empty arguments) and its arguments in fragments carrying
    only the index, then the finish reason, then the usage that was asked for."""
    calls = server.reply_tool_calls(PARALLEL)
    chunks = sse_chunks(server, tools=TOOLS, stream_options={"include_usage": True})
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks[:-2]]
    assert deltas[0] == {"role": "assistant", "content": None}
    openings = [index for index, delta in enumerate(deltas) if "id" in delta.get("tool_calls", [{}])[0]]
    assert [deltas[index]["tool_calls"] for index in openings] == [
        [{"index": 0, "id": calls[0].id, "type": "function", "function": {"name": "get_weather", "arguments": ""}}],
        [{"index": 1, "id": calls[1].id, "type": "function", "function": {"name": "get_time", "arguments": ""}}],
    ]
    for number, (start, end) in enumerate(zip(openings, [*openings[1:], len(deltas)])):
        fragments = [delta["tool_calls"] for delta in deltas[start + 1 : end]]
        assert len(fragments) > 1 and all(fragment[0].keys() == {"index", "function"} for fragment in fragments)
        assert {fragment[0]["index"] for fragment in fragments} == {number}
        assert "".join(fragment[0]["function"]["arguments"] for fragment in fragments) == calls[number].arguments_json
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]
    assert (
        chunks[-1]["choices"] == []
        and chunks[-1]["usage"]["total_tokens"] == server.PROMPT_TOKENS + server.COMPLETION_TOKENS
    )
    assert server.pieces_sent == len(deltas) - 3


def test_a_lone_streamed_call_carries_the_role_in_its_first_chunk(server):
    """As OpenAI streams a single call: no chunk of the role alone."""
    (call,) = server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Lisbon"}}])
    chunks = sse_chunks(server, tools=TOOLS)
    assert chunks[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"index": 0, "id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        ],
    }
    assert all("usage" not in chunk for chunk in chunks)


def test_a_text_reply_streams_as_before(server):
    server.reply("one two")
    chunks = sse_chunks(server)
    assert [chunk["choices"][0] for chunk in chunks] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None},
        {"index": 0, "delta": {"content": "one "}, "finish_reason": None},
        {"index": 0, "delta": {"content": "two"}, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": "stop"},
    ]


def test_drop_after_counts_argument_fragments(server):
    """A stream cut inside a call's arguments: the pieces are those of the text and the arguments."""
    (call,) = server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Lisbon"}}], text="Looking.")
    server.drop_after(2)
    events = posted(server, stream=True).split("\n\n")
    sent = [json.loads(event.removeprefix("data: "))["choices"][0]["delta"] for event in events if event]
    assert sent[1:] == [
        {"content": "Looking."},
        {
            "tool_calls": [
                {"index": 0, "id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
    ]
    assert server.pieces_sent == 2


def test_a_cut_off_reply_keeps_the_servers_finish_reason(server):
    server.finish_reason = "length"
    server.reply_tool_calls([{"name": "get_weather", "arguments": '{"ci'}])
    response = litellm_completion(server, tools=TOOLS)
    assert response.choices[0].finish_reason == "length"
    assert response.choices[0].message.tool_calls[0].function.arguments == '{"ci'


def test_litellm_reads_parallel_calls_in_json(server):
    calls = server.reply_tool_calls(PARALLEL)
    response = litellm_completion(server, tools=TOOLS, parallel_tool_calls=True)
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert [(c.id, c.type, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls] == [
        (calls[0].id, "function", "get_weather", {"city": "Lisbon"}),
        (calls[1].id, "function", "get_time", {"zone": "Asia/Tokyo"}),
    ]
    assert server.last_tools == TOOLS and server.requests[-1]["parallel_tool_calls"] is True


def test_litellm_rebuilds_streamed_calls_beside_text(server):
    calls = server.reply_tool_calls(PARALLEL, text="Let me look both up.")
    chunks = list(litellm_completion(server, tools=TOOLS, stream=True, stream_options={"include_usage": True}))
    rebuilt = litellm.stream_chunk_builder(chunks, messages=ASKED)
    choice = rebuilt.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me look both up."
    assert [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls] == [
        (call.id, call.name, call.arguments_json) for call in calls
    ]
    assert rebuilt.usage.total_tokens == server.PROMPT_TOKENS + server.COMPLETION_TOKENS


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_litellm_reads_reasoning_beside_the_reply(server, stream):
    server.reply(Answer(text="It is sunny.", reasoning="The user wants the weather."))
    response = litellm_completion(server, stream=stream)
    if stream:
        chunks = list(response)
        pieces = [getattr(chunk.choices[0].delta, "reasoning_content", None) for chunk in chunks if chunk.choices]
        assert "".join(piece for piece in pieces if piece) == "The user wants the weather."
        response = litellm.stream_chunk_builder(chunks, messages=ASKED)
    message = response.choices[0].message
    assert (message.reasoning_content, message.content) == ("The user wants the weather.", "It is sunny.")


def test_a_rule_can_answer_with_tool_calls(server):
    server.on(lambda body: "tools" in body, lambda body: Answer(tool_calls=[ToolCall("get_time", {"zone": "UTC"})]))
    first = litellm_completion(server, tools=TOOLS).choices[0].message.tool_calls
    second = litellm_completion(server, tools=TOOLS).choices[0].message.tool_calls
    assert first[0].function.name == second[0].function.name == "get_time" and first[0].id != second[0].id
    assert litellm_completion(server).choices[0].message.content == "reply 3"


def test_the_openai_sdk_reads_calls_in_json_and_in_a_stream(server):
    client = openai_client(server)
    calls = server.reply_tool_calls(PARALLEL)
    message = client.chat.completions.create(model="gpt-4o", messages=ASKED, tools=TOOLS).choices[0].message
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        (call.id, call.name, call.arguments_json) for call in calls
    ]
    calls = server.reply_tool_calls(PARALLEL)
    arguments = {}
    finish_reasons = []
    for chunk in client.chat.completions.create(model="gpt-4o", messages=ASKED, tools=TOOLS, stream=True):
        for delta in chunk.choices[0].delta.tool_calls or []:
            if delta.id:
                arguments[delta.index] = (delta.id, delta.function.name, "")
            call_id, name, so_far = arguments[delta.index]
            arguments[delta.index] = (call_id, name, so_far + (delta.function.arguments or ""))
        finish_reasons.append(chunk.choices[0].finish_reason)
    assert list(arguments.values()) == [(call.id, call.name, call.arguments_json) for call in calls]
    assert finish_reasons[-1] == "tool_calls" and set(finish_reasons[:-1]) == {None}


def test_the_openai_sdks_stream_helper_parses_the_calls(server):
    """`chat.completions.stream` gathers the calls and parses their arguments into the tools'
    pydantic models, which it can only do when every fragment arrived in its place."""
    calls = server.reply_tool_calls(PARALLEL)
    with openai_client(server).chat.completions.stream(model="gpt-4o", messages=ASKED, tools=TOOLS) as stream:
        done = [event.name for event in stream if event.type == "tool_calls.function.arguments.done"]
        completion = stream.get_final_completion()
    assert done == ["get_weather", "get_time"]
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [(c.id, c.function.parsed_arguments) for c in choice.message.tool_calls] == [
        (calls[0].id, GetWeather(city="Lisbon")),
        (calls[1].id, GetTime(zone="Asia/Tokyo")),
    ]


def test_the_history_arrives_whole(server):
    """An assistant's calls and the tool messages answering them reach the provider as the client
    sent them, every field kept."""
    history = [
        *ASKED,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": '{"zone": "UTC"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
    ]
    openai_client(server).chat.completions.create(model="gpt-4o", messages=history, tools=TOOLS, tool_choice="auto")
    assert server.last_messages == history
    assert server.last_tools == TOOLS and server.requests[-1]["tool_choice"] == "auto"
    litellm.completion(model="openai/gpt-4o", api_base=server.url, api_key="sk-test", messages=history, tools=TOOLS)
    assert server.last_messages[1]["tool_calls"] == history[1]["tool_calls"]
    assert [(m["role"], m["tool_call_id"]) for m in server.last_messages[2:]] == [
        ("tool", "call_1"),
        ("tool", "call_2"),
    ]


def test_images_received_are_reported_decoded(server):
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    looked_at = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": data_url, "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/photos/cat.jpg?size=2"}},
            ],
        }
    ]
    litellm.completion(model="openai/gpt-4o", api_base=server.url, api_key="sk-test", messages=looked_at)
    openai_client(server).chat.completions.create(model="gpt-4o", messages=[*looked_at, *ASKED])
    first, second = server.images_received[:2]
    assert (first.request, first.url, first.media_type, first.size, first.data, first.detail) == (
        0,
        data_url,
        "image/png",
        len(PNG),
        PNG,
        "low",
    )
    assert (second.url, second.media_type, second.size, second.data) == (
        "https://example.com/photos/cat.jpg?size=2",
        "image/jpeg",
        None,
        None,
    )
    assert [image.request for image in server.images_received] == [0, 0, 1, 1]
    assert server.images_received[2:] == [
        ReceivedImage(1, first.url, first.media_type, first.data, first.detail),
        ReceivedImage(1, second.url, second.media_type, second.data, second.detail),
    ]


def test_a_data_url_that_is_not_base64_is_named(server):
    broken = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}]
    openai_client(server).chat.completions.create(model="gpt-4o", messages=broken)
    with pytest.raises(ValueError, match="not valid base64"):
        server.images_received


def test_a_percent_encoded_data_url_is_decoded(server):
    drawn = [{"role": "user", "content": [{"type": "image_url", "image_url": "data:image/svg+xml,%3Csvg%2F%3E"}]}]
    litellm.completion(model="openai/gpt-4o", api_base=server.url, api_key="sk-test", messages=drawn)
    (image,) = server.images_received
    assert (image.media_type, image.data, image.size, image.detail) == ("image/svg+xml", b"<svg/>", 6, None)
