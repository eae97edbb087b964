"""The OpenAI Agents SDK's own runner keeping an agent's items in memchat, in process
(`memchat.integrations.agents.MemchatSession`): the model is the tests' local OpenAI-protocol
server, reached through the SDK's chat-completions model; the session's items come back exactly
as the SDK gave them, and get, pop, clear and limit behave as the SDK's own sessions do."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys

import pytest

from memchat import InvalidInput
from memchat.integrations.agents import MemchatSession

agents = pytest.importorskip("agents")

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()

TOOL_TURN = [
    {"content": "Weather in Paris?", "role": "user"},
    {
        "arguments": '{"city":"Paris"}',
        "call_id": "call_1",
        "name": "get_weather",
        "type": "function_call",
        "id": "fc_1",
        "status": "completed",
    },
    {"call_id": "call_1", "output": "sunny in Paris", "type": "function_call_output"},
    {
        "id": "msg_2",
        "content": [{"annotations": [], "text": "It is sunny.", "type": "output_text", "logprobs": []}],
        "role": "assistant",
        "status": "completed",
        "type": "message",
    },
]
"""A tool-using run's items, as the SDK adds them (docs/agent-items.md §3.4)."""

UNUSUAL = [
    {
        "id": "msg_3",
        "content": [
            {
                "annotations": [
                    {
                        "type": "url_citation",
                        "url": "https://example.org",
                        "start_index": 0,
                        "end_index": 4,
                        "title": "t",
                    }
                ],
                "text": "Rain tomorrow.",
                "type": "output_text",
                "logprobs": [{"token": "Rain", "logprob": -0.25, "bytes": [82, 97, 105, 110], "top_logprobs": []}],
            },
            {"type": "refusal", "refusal": "No more."},
        ],
        "role": "assistant",
        "status": "incomplete",
        "type": "message",
        "phase": "final_answer",
    },
    {
        "type": "reasoning",
        "id": "rs_4",
        "summary": [{"type": "summary_text", "text": "Looking it up."}],
        "content": [{"type": "reasoning_text", "text": "step one"}],
        "encrypted_content": "gAAAAABo-opaque",
        "provider_data": {"model": "some/model"},
    },
    {
        "type": "function_call",
        "id": "fc_5",
        "call_id": "call_5",
        "name": "chart",
        "arguments": "{ }",
        "status": "in_progress",
    },
    {
        "type": "function_call_output",
        "call_id": "call_5",
        "output": [{"type": "input_text", "text": "chart:"}, {"type": "input_image", "image_url": PNG_URL}],
    },
    {
        "role": "user",
        "type": "message",
        "content": [
            {"type": "input_text", "text": "And this?"},
            {"type": "input_image", "image_url": PNG_URL, "detail": "high"},
            {"type": "input_file", "filename": "notes.txt", "file_data": base64.b64encode(b"hello").decode()},
        ],
    },
]
"""Items with what memchat has no column for: annotations and logprobs, a phase, a status that is
not `completed`, a call whose arguments are spaced, reasoning with its opaque content and an SDK
`provider_data`, images (one content, twice) and a file given as bare base64."""


@pytest.fixture
def run():
    """Runs a coroutine to its end on one event loop for the whole test, as an application's
    runs share one (the SDK's HTTP client keeps its connections on it)."""
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.close()


def weather_agent(server):
    from agents import Agent, OpenAIChatCompletionsModel, function_tool, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """Today's weather in a city."""
        return f"sunny in {city}"

    model = OpenAIChatCompletionsModel(
        model="gpt-4o-mini", openai_client=AsyncOpenAI(base_url=server.url, api_key="unused")
    )
    return Agent(name="forecaster", instructions="Be brief.", model=model, tools=[get_weather])


def test_two_runs_of_a_tool_using_agent_on_one_session(memory, server, run):
    from agents import Runner

    agent = weather_agent(server)
    session = MemchatSession("user-42", memory)
    calls = server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Paris"}}])
    server.reply("It is sunny in Paris.", "Sunny again tomorrow.")

    first = run(Runner.run(agent, "Weather in Paris?", session=session))
    assert first.final_output == "It is sunny in Paris."
    assert run(session.get_items()) == first.to_input_list(), "the items come back exactly as the SDK gave them"

    second = run(Runner.run(agent, "And tomorrow?", session=session))
    assert second.final_output == "Sunny again tomorrow."
    call = calls[0]
    assert server.last_messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call.as_sent()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny in Paris"},
        {"role": "assistant", "content": "It is sunny in Paris."},
        {"role": "user", "content": "And tomorrow?"},
    ]

    thread = session.thread()
    assert thread.source == "agents:user-42" and thread.title == "Weather in Paris?"
    assert [(m.role, m.kind, m.content) for m in memory.messages(thread.id)] == [
        ("user", "message", "Weather in Paris?"),
        ("assistant", "function_call", 'get_weather({"city": "Paris"})'),
        ("tool", "function_call_output", "sunny in Paris"),
        ("assistant", "message", "It is sunny in Paris."),
        ("user", "message", "And tomorrow?"),
        ("assistant", "message", "Sunny again tomorrow."),
    ]
    again = MemchatSession("user-42", memory)
    assert run(again.get_items()) == run(session.get_items()), "a session id names one thread"
    assert again.thread().id == thread.id
    assert MemchatSession("user-43", memory).thread().id != thread.id


def test_items_come_back_exactly_as_given_with_what_memchat_has_no_column_for(memory, run):
    session = MemchatSession("exact", memory)
    run(session.add_items(TOOL_TURN))
    run(session.add_items(UNUSUAL))

    got = run(session.get_items())
    assert [json.dumps(item) for item in got] == [json.dumps(item) for item in TOOL_TURN + UNUSUAL], "keys in order too"

    stored = memory.messages(session.thread().id)
    assert [m.kind for m in stored] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert stored[5].provider_data["encrypted_content"] == "gAAAAABo-opaque"
    assert "gAAAAABo" not in json.dumps(stored[5].provider_data["given"]), "the payload is kept once"
    assert {part.get("blob") for m in stored for part in m.parts or () if part["type"] == "image"} == {
        hashlib.sha256(PNG).hexdigest()
    }
    assert PNG_URL not in json.dumps([m.provider_data for m in stored]), "an image is kept as its blob alone"


def test_get_items_gives_the_newest_oldest_first(memory, run):
    session = MemchatSession("limits", memory)
    run(session.add_items(TOOL_TURN))
    assert run(session.get_items(2)) == TOOL_TURN[2:]
    assert run(session.get_items(10)) == TOOL_TURN
    assert run(session.get_items(0)) == []

    from agents import SessionSettings

    limited = MemchatSession("limits", memory, session_settings=SessionSettings(limit=3))
    assert run(limited.get_items()) == TOOL_TURN[1:]
    assert run(limited.get_items(1)) == TOOL_TURN[3:], "an explicit limit wins over the settings"


def test_pop_item_takes_the_newest_out_and_gives_it_back(memory, run):
    session = MemchatSession("pops", memory)
    assert run(session.pop_item()) is None
    run(session.add_items(TOOL_TURN))

    assert run(session.pop_item()) == TOOL_TURN[3]
    assert run(session.pop_item()) == TOOL_TURN[2]
    assert run(session.get_items()) == TOOL_TURN[:2]
    assert [m.status for m in memory.messages(session.thread().id)] == ["complete", "complete", "undone", "undone"]

    run(session.add_items([TOOL_TURN[2]]))
    assert run(session.get_items()) == TOOL_TURN[:3], "the call popped to is answered again"


def test_clear_session_leaves_no_items_and_the_session_goes_on(memory, server, run):
    from agents import Runner

    session = MemchatSession("clears", memory)
    run(session.add_items(TOOL_TURN))
    old = session.thread().id
    other = MemchatSession("clears", memory)
    assert len(run(other.get_items())) == 4

    run(session.clear_session())
    assert run(session.get_items()) == []
    assert run(other.get_items()) == [], "another session object on the id sees it cleared"
    assert old not in {thread.id for thread in memory.threads()}

    server.reply("Hello again.")
    run(Runner.run(weather_agent(server), "Hi", session=session))
    assert server.last_messages[1:] == [{"role": "user", "content": "Hi"}]
    assert [item["role"] for item in run(other.get_items())] == ["user", "assistant"]


def test_what_memchat_cannot_keep_is_refused_and_nothing_is_stored(memory, run):
    session = MemchatSession("refusals", memory)
    with pytest.raises(InvalidInput, match="No tool call found for function call output with call_id call_9"):
        run(
            session.add_items(
                [
                    {"content": "Hi", "role": "user"},
                    {"type": "function_call_output", "call_id": "call_9", "output": "x"},
                ]
            )
        )
    with pytest.raises(InvalidInput, match=r"items\[0\]\.type"):
        run(session.add_items([{"type": "web_search_call", "id": "ws_1", "status": "completed"}]))
    with pytest.raises(InvalidInput, match=r"items\[1\]\.arguments"):
        run(session.add_items([TOOL_TURN[0], {**TOOL_TURN[1], "arguments": "{not json"}]))
    assert run(session.get_items()) == []

    run(session.add_items(TOOL_TURN[:2]))
    with pytest.raises(InvalidInput, match="No tool output found for function call call_1"):
        run(session.add_items([{"content": "Next?", "role": "user"}]))
    assert run(session.get_items()) == TOOL_TURN[:2]


def test_a_turn_memchat_made_reads_back_as_responses_items(memory, server, run):
    """A thread shared with memchat's own turns: their items come back in OpenAI's shape,
    without ids memchat would have to make up."""
    session = MemchatSession("shared", memory, model="openai/gpt-4o-mini")
    run(session.add_items(TOOL_TURN[:1]))
    server.reply("Sunny.")
    memory.say(session.thread().id, "Really?")
    assert run(session.get_items())[1:] == [
        {
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_text", "text": "Really?"}],
        },
        {
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Sunny.", "annotations": [], "logprobs": []}],
        },
    ]


def test_memchat_does_not_load_the_agents_sdk():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, memchat.integrations.agents; print('agents' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False"
