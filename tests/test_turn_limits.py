"""What a turn sends besides its messages (model name, system prompt, sampling settings) is
checked before anything is stored or the provider is called, with OpenAI's bounds, on every
face: the Python API, the CLI, Chat Completions, Responses and memchat's own API."""

import json
import math
from typing import get_args

import httpx
import pytest
from helpers import sqlite_only
from test_cli import fails

from memchat import Memory
from memchat.errors import InvalidInput
from memchat.schemas import ReasoningEffort

BAD_TURN_SETTINGS = [
    ({"model": "openai/" + "x" * 200}, "model"),
    ({"model": "openai/gpt\x004o"}, "model"),
    ({"model": "openai/gpt\ud8004o"}, "model"),
    ({"summary_model": "openai/\x00"}, "summary_model"),
    ({"system": "be\x00brief"}, "system"),
    ({"temperature": math.nan}, "temperature"),
    ({"temperature": math.inf}, "temperature"),
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": 2.5}, "temperature"),
    ({"top_p": math.nan}, "top_p"),
    ({"top_p": -0.1}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"reasoning_effort": "default"}, "reasoning_effort"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 10**12}, "max_tokens"),
    ({"max_tokens": 2**64}, "max_tokens"),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(("settings", "field"), BAD_TURN_SETTINGS)
def test_a_turn_refuses_bad_settings_before_calling_the_provider(memory, server, settings, field):
    thread = memory.new_thread(model="openai/gpt-4o-mini")
    with pytest.raises(InvalidInput) as refused:
        memory.say(thread.id, "hi", **settings)
    assert field in str(refused.value) and "\n" not in str(refused.value)
    assert server.requests == [] and memory.messages(thread.id) == []


def test_the_reasoning_efforts_are_litellms():
    from litellm.types.llms.openai import REASONING_EFFORT

    assert get_args(ReasoningEffort) == get_args(REASONING_EFFORT)


@pytest.mark.bad_input
@sqlite_only
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--model", "openai/" + "x" * 200),
        ("--temperature", "nan"),
        ("--temperature", "3"),
        ("--top-p", "1.01"),
        ("--reasoning-effort", "extreme"),
        ("--max-tokens", str(2**64)),
    ],
)
def test_say_refuses_bad_options_before_calling_the_provider(db_url, server, option, value):
    thread = Memory().new_thread(model="openai/gpt-4o-mini")
    assert option in fails(2, "say", thread.id, "hi", option, value).stderr
    assert server.requests == [] and Memory().messages(thread.id) == []


def _post(served, path: str, payload: dict, thread: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json", **({"X-Memchat-Thread": thread} if thread else {})}
    content = json.dumps(payload, allow_nan=True).encode()
    return httpx.post(served.url + path, content=content, headers=headers, timeout=60)


@pytest.mark.bad_input
def test_the_http_faces_refuse_bad_values_as_openai_does(served, server):
    thread = Memory().new_thread(model="openai/gpt-4o-mini")
    long_model = "openai/" + "x" * 200
    responses = {"model": "openai/gpt-4o-mini", "input": "hi", "conversation": thread.id}
    chat = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    cases = [
        ("/v1/responses", {**responses, "model": long_model}, "model"),
        ("/v1/responses", {**responses, "model": "openai/gpt\u00004o"}, "model"),
        ("/v1/responses", {**responses, "temperature": math.nan}, "temperature"),
        ("/v1/responses", {**responses, "temperature": math.inf}, "temperature"),
        ("/v1/responses", {**responses, "temperature": -1}, "temperature"),
        ("/v1/responses", {**responses, "top_p": -1}, "top_p"),
        ("/v1/responses", {**responses, "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ("/v1/responses", {**responses, "reasoning": "low"}, "reasoning"),
        ("/v1/responses", {**responses, "max_output_tokens": 10**12}, "max_output_tokens"),
        ("/v1/responses", {**responses, "stream": "yes"}, "stream"),
        ("/v1/responses", {**responses, "instructions": "be\u0000brief"}, "instructions"),
        ("/v1/chat/completions", {**chat, "model": long_model}, "model"),
        ("/v1/chat/completions", {**chat, "temperature": 2.5}, "temperature"),
        ("/v1/chat/completions", {**chat, "temperature": math.nan}, "temperature"),
        ("/v1/chat/completions", {**chat, "top_p": 2}, "top_p"),
        ("/v1/chat/completions", {**chat, "reasoning_effort": "extreme"}, "reasoning_effort"),
        ("/v1/chat/completions", {**chat, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ("/v1/chat/completions", {**chat, "max_tokens": 2**64}, "max_tokens"),
        ("/v1/chat/completions", {**chat, "max_completion_tokens": 0}, "max_completion_tokens"),
        ("/v1/chat/completions", {**chat, "stream": "yes"}, "stream"),
        (f"/memchat/v1/threads/{thread.id}/say", {"message": "hi", "model": long_model}, "model"),
        (f"/memchat/v1/threads/{thread.id}/say", {"message": "hi", "temperature": 9}, "temperature"),
        (f"/memchat/v1/threads/{thread.id}/say", {"message": "hi", "top_p": 1.5}, "top_p"),
        (f"/memchat/v1/threads/{thread.id}/say", {"message": "hi", "reasoning_effort": "max!"}, "reasoning_effort"),
        (f"/memchat/v1/threads/{thread.id}/say", {"message": "hi", "max_tokens": 10**12}, "max_tokens"),
        (f"/memchat/v1/threads/{thread.id}/say", {"message": "hi", "stream": "yes"}, "stream"),
    ]
    for path, payload, param in cases:
        answer = _post(served, path, payload, thread.id)
        assert answer.status_code == 400, (path, payload, answer.text)
        error = answer.json()["error"]
        assert error["param"] == param and error["type"] == "invalid_request_error", (path, payload, answer.text)
    assert server.requests == [] and Memory().messages(thread.id) == []
    assert [t.id for t in Memory().threads()] == [thread.id]


@pytest.mark.bad_input
def test_a_refused_response_without_a_conversation_leaves_none_behind(served, server):
    refused = [
        {"model": "nosuchprovider/model", "input": "hi"},
        {"model": "openai/gpt-4o-mini", "input": "w " * 200_000},
        {"model": "openai/gpt-4o-mini", "input": "hi", "instructions": "be\u0000brief"},
        {"model": "openai/gpt-4o-mini", "input": [{"role": "user", "content": "earlier"}, {"role": "user", "content": "w " * 200_000}]},
    ]
    for payload in refused:
        answer = _post(served, "/v1/responses", payload)
        assert answer.status_code == 400, (payload if len(str(payload)) < 300 else "(long)", answer.text)
        streamed = _post(served, "/v1/responses", {**payload, "stream": True})
        assert streamed.status_code == 400, streamed.text
    assert Memory().threads() == [] and server.requests == []


@pytest.mark.bad_input
def test_a_refused_response_after_an_older_one_leaves_no_fork_behind(served, server):
    """A response after an older reply starts a fork there; refused before its message is
    stored, the fork goes again."""
    server.reply("first", "second")
    first = _post(served, "/v1/responses", {"model": "openai/gpt-4o-mini", "input": "one"}).json()
    conversation = first["conversation"]["id"]
    _post(served, "/v1/responses", {"model": "openai/gpt-4o-mini", "conversation": conversation, "input": "two"})
    for payload in (
        {"model": "nosuchprovider/model", "input": "hi"},
        {"model": "openai/gpt-4o-mini", "input": "w " * 200_000},
        {"model": "openai/gpt-4o-mini", "input": "hi", "instructions": "be\u0000brief"},
    ):
        for stream in (False, True):
            answer = _post(served, "/v1/responses", {**payload, "previous_response_id": first["id"], "stream": stream})
            assert answer.status_code == 400, answer.text
    assert [thread.id for thread in Memory().threads()] == [conversation] and len(server.requests) == 2


@pytest.mark.bad_input
@pytest.mark.parametrize("unstorable", ["\ud800", "\u0000"])
def test_characters_memchat_never_stores_are_refused_naming_the_field(served, server, unstorable):
    thread = Memory().new_thread(model="openai/gpt-4o-mini")
    bad = f"a{unstorable}b"
    responses = {"model": "openai/gpt-4o-mini", "conversation": thread.id}
    cases = [
        ("/v1/responses", {**responses, "input": bad}, "input"),
        ("/v1/responses", {**responses, "input": [{"role": "user", "content": bad}]}, "input[0].content"),
        ("/v1/responses", {**responses, "input": [{"role": "user", "content": [{"type": "input_text", "text": bad}]}]}, "input[0].content[0].text"),
        ("/v1/responses", {**responses, "input": "hi", "instructions": bad}, "instructions"),
        ("/v1/chat/completions", {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": bad}]}, "messages[0].content"),
        (f"/v1/conversations/{thread.id}/items", {"items": [{"role": "user", "content": bad}]}, "items[0].content"),
    ]
    for path, payload, param in cases:
        answer = _post(served, path, payload, thread.id)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, (path, answer.text)
        assert "\n" not in answer.json()["error"]["message"]
    assert server.requests == [] and Memory().messages(thread.id) == []
