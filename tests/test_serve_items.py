"""Every item kind through a real `memchat serve` and the official `openai` client: responses
with function tools (JSON and streamed with the SDK's `responses.stream` helper), the outputs of
their calls as the next input, images and files kept once per content, the Conversations items
API for every kind, and what is malformed refused naming the field, with nothing stored."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

from memchat import Memory

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
PDF_DATA = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4 receipt").decode()
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Today's weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
MODEL = "openai/gpt-4o-mini"


def test_responses_carry_tools_calls_outputs_and_reasoning_as_json_and_streamed(served, server):
    client = served.client()
    conversation = client.conversations.create(extra_body={"memchat": {"model": MODEL}})
    paris, rome = server.reply_tool_calls(
        [
            {"name": "get_weather", "arguments": {"city": "Paris"}},
            {"name": "get_weather", "arguments": {"city": "Rome"}},
        ],
        reasoning="Two cities: two calls.",
    )
    called = client.responses.create(
        model=MODEL,
        input="Weather in Paris and Rome?",
        conversation=conversation.id,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=True,
    )
    assert called.status == "completed" and called.output_text == ""
    assert [item.type for item in called.output] == ["reasoning", "function_call", "function_call"]
    assert called.output[0].summary[0].text == "Two cities: two calls."
    assert [(c.call_id, c.name, c.arguments) for c in called.output[1:]] == [
        (paris.id, "get_weather", paris.arguments_json),
        (rome.id, "get_weather", rome.arguments_json),
    ]
    assert server.last_tools == [
        {"type": "function", "function": {key: WEATHER[key] for key in ("name", "description", "parameters", "strict")}}
    ]
    assert (server.requests[-1]["tool_choice"], server.requests[-1]["parallel_tool_calls"]) == ("required", True)
    assert (called.tools[0].name, called.tool_choice, called.parallel_tool_calls) == ("get_weather", "required", True)
    assert [item.type for item in client.responses.retrieve(called.id).output] == [item.type for item in called.output]

    server.reply("Paris is sunny, Rome rainy.")
    outputs = [
        {"type": "function_call_output", "call_id": paris.id, "output": "sunny"},
        {"type": "function_call_output", "call_id": rome.id, "output": "rain"},
    ]
    with client.responses.stream(model=MODEL, input=outputs, previous_response_id=called.id, tools=[WEATHER]) as stream:
        kinds = [event.type for event in stream]
        answered = stream.get_final_response()
    assert answered.output_text == "Paris is sunny, Rome rainy." and answered.conversation.id == conversation.id
    assert "response.output_text.delta" in kinds and kinds[-1] == "response.completed"
    *_, asked, sunny, rainy = server.last_messages
    assert [call["id"] for call in asked["tool_calls"]] == [paris.id, rome.id]
    assert (sunny, rainy) == (
        {"role": "tool", "tool_call_id": paris.id, "content": "sunny"},
        {"role": "tool", "tool_call_id": rome.id, "content": "rain"},
    )

    (lisbon,) = server.reply_tool_calls([{"name": "get_weather", "arguments": '{"city":  "Lisbon"}'}])
    with client.responses.stream(
        model=MODEL, input="And Lisbon?", conversation=conversation.id, tools=[WEATHER]
    ) as stream:
        events = list(stream)
        streamed_call = stream.get_final_response()
    assert [event.type for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[2].item.arguments == "" and events[4].arguments == '{"city":  "Lisbon"}'
    (call,) = streamed_call.output
    assert (call.type, call.call_id, call.arguments, streamed_call.status) == (
        "function_call",
        lisbon.id,
        '{"city":  "Lisbon"}',
        "completed",
    )
    kinds = [(m.kind, m.role) for m in Memory().messages(conversation.id)]
    assert kinds == [
        ("message", "user"),
        ("reasoning", "assistant"),
        ("function_call", "assistant"),
        ("function_call", "assistant"),
        ("function_call_output", "tool"),
        ("function_call_output", "tool"),
        ("message", "assistant"),
        ("message", "user"),
        ("function_call", "assistant"),
    ]


def test_a_replayed_history_of_every_kind_is_stored_and_images_once(served, server):
    client = served.client()
    server.reply("A receipt from Paris; it is sunny there.", "Same picture.")
    history = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is on this receipt, and the weather there?"},
                {"type": "input_image", "image_url": PNG_URL, "detail": "low"},
                {"type": "input_file", "filename": "receipt.pdf", "file_data": PDF_DATA},
            ],
        },
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Read it."}]},
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21 C"},
    ]
    made = client.responses.create(model=MODEL, input=history, tools=[WEATHER])
    assert made.output_text == "A receipt from Paris; it is sunny there."
    *_, user, asked, output = server.last_messages
    assert [part["type"] for part in user["content"]] == ["text", "image_url", "file"]
    assert asked["tool_calls"][0]["id"] == "call_1" and output["content"] == "sunny, 21 C"
    again = client.responses.create(
        model=MODEL,
        previous_response_id=made.id,
        input=[{"role": "user", "content": [{"type": "input_image", "image_url": PNG_URL}]}],
    )
    assert again.output_text == "Same picture."
    assert [image.data for image in server.images_received][-2:] == [PNG, PNG]
    thread = made.conversation.id
    stored = Memory().messages(thread)
    blobs = [part["blob"] for m in stored for part in m.parts or () if part["type"] == "image"]
    assert len(blobs) == 2 and len(set(blobs)) == 1, "one blob for both messages"
    listed = client.conversations.items.list(thread, order="asc", include=["message.input_image.image_url"]).data
    assert [item.type for item in listed] == [
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
        "message",
        "message",
        "message",
    ]
    assert listed[0].content[1].image_url == PNG_URL and listed[0].content[2].filename == "receipt.pdf"
    assert (listed[1].id, listed[2].id) == ("rs_1", "fc_1"), "ids as the client gave them"
    hidden = client.conversations.items.retrieve(listed[0].id, conversation_id=thread)
    assert hidden.content[1].image_url is None, "an image's URL only when include asks for it"


def test_the_items_api_holds_every_kind_in_openai_shapes(served, server):
    client = served.client()
    conversation = client.conversations.create(
        items=[{"role": "user", "content": "Weather in Paris?"}],
        extra_body={"memchat": {"model": MODEL}},
    )
    added = client.conversations.items.create(
        conversation.id,
        items=[
            {"type": "function_call", "call_id": "call_9", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "call_9", "output": "sunny"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}],
            },
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "Thought."}],
                "encrypted_content": "opaque",
            },
        ],
        include=["reasoning.encrypted_content"],
    )
    assert [item.type for item in added.data] == ["function_call", "function_call_output", "message", "reasoning"]
    assert added.data[3].encrypted_content == "opaque"
    newest_first = client.conversations.items.list(conversation.id, limit=2)
    assert [item.type for item in newest_first.data] == ["reasoning", "message"] and newest_first.has_more
    rest = client.conversations.items.list(conversation.id, limit=10, after=newest_first.last_id)
    assert [item.type for item in rest.data] == ["function_call_output", "function_call", "message"]
    call = client.conversations.items.retrieve(rest.data[1].id, conversation_id=conversation.id)
    assert (call.call_id, call.name, call.arguments, call.status) == (
        "call_9",
        "get_weather",
        '{"city":"Paris"}',
        "completed",
    )
    reasoning = client.conversations.items.retrieve(newest_first.data[0].id, conversation_id=conversation.id)
    assert reasoning.summary[0].text == "Thought." and reasoning.encrypted_content is None
    answer = httpx.get(
        f"{served.base_url}/conversations/{conversation.id}/items/{reasoning.id}",
        params={"include": "reasoning.encrypted_content"},
    )
    assert answer.json()["encrypted_content"] == "opaque"
    deleted = client.conversations.items.delete(reasoning.id, conversation_id=conversation.id)
    assert deleted.id == conversation.id
    assert [item.type for item in client.conversations.items.list(conversation.id, order="asc")] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    waiting = client.conversations.items.create(
        conversation.id,
        items=[{"type": "function_call", "call_id": "call_10", "name": "get_weather", "arguments": "{}"}],
    )
    assert waiting.data[0].type == "function_call", "a call may wait for its output"
    server.reply("Still sunny.")
    answered = client.responses.create(
        model=MODEL,
        conversation=conversation.id,
        input=[{"type": "function_call_output", "call_id": "call_10", "output": "sunny"}],
    )
    assert answered.output_text == "Still sunny."


@pytest.fixture
def small_items(monkeypatch):
    """Images and files over 64 bytes are over the limit of the server started after this."""
    monkeypatch.setenv("MEMCHAT_MAX_ITEM_BYTES", "64")


@pytest.mark.bad_input
def test_malformed_items_are_refused_naming_the_field_and_nothing_is_stored(small_items, served, server):
    client = served.client()
    conversation = client.conversations.create(extra_body={"memchat": {"model": MODEL}})
    (call,) = server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Paris"}}])
    client.responses.create(model=MODEL, input="Weather?", conversation=conversation.id, tools=[WEATHER])
    before = Memory().messages(conversation.id)
    requests = len(server.requests)
    big = "data:image/png;base64," + base64.b64encode(PNG + bytes(100)).decode()

    def user(*parts):
        return [{"role": "user", "content": [{"type": "input_text", "text": "see"}, *parts]}]

    output = {"type": "function_call_output", "call_id": call.id, "output": "sunny"}
    cases = [
        ([{"type": "function_call_output", "call_id": "call_nope", "output": "x"}], "input", "call_id call_nope."),
        ("And now?", "input", f"No tool output found for function call {call.id}."),
        (
            [output, {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{nope"}, "More?"],
            "input[1].arguments",
            "not valid JSON",
        ),
        (user({"type": "input_image", "image_url": big}), "input[0].content[1].image_url", "over the limit"),
        (
            user({"type": "input_image", "image_url": "data:image/png;base64,AAAA"}),
            "input[0].content[1].image_url",
            "not an image",
        ),
        (
            user({"type": "input_image", "image_url": "data:image/png;base64,%%%"}),
            "input[0].content[1].image_url",
            "base64",
        ),
        (user({"type": "input_file", "file_data": PDF_DATA}), "input[0].content[1].filename", "name"),
    ]
    for given, param, named in cases:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model=MODEL, input=given, conversation=conversation.id, tools=[WEATHER])
        error = refused.value.body
        assert (error["param"], error["type"]) == (param, "invalid_request_error"), (given, error)
        assert named in error["message"], (given, error)
    for tools, param in (([{"type": "web_search"}], "tools[0]"), ([{"type": "custom", "name": "f"}], "tools[0]")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model=MODEL, input=[output], conversation=conversation.id, tools=tools)
        assert refused.value.param == param
    answer = httpx.post(
        f"{served.base_url}/conversations/{conversation.id}/items",
        json={"items": [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}]},
    )
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "items"
    assert "No tool call found for function call output with call_id call_nope." in answer.json()["error"]["message"]
    assert Memory().messages(conversation.id) == before and len(server.requests) == requests
    threads = len(Memory().threads())
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=MODEL, input=json.loads(json.dumps(cases[2][0])), tools=[WEATHER])
    assert len(Memory().threads()) == threads, "a refused request without a conversation makes none"
