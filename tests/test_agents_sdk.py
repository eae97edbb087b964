"""The OpenAI Agents SDK (`openai-agents`, unmodified) against a real `memchat serve`: an agent
without tools keeps its conversation there across runs and processes, by `conversation_id` or by
`previous_response_id`, streamed or not; what the SDK sends with every request is accepted where
memchat honours it, and a tool is still refused by name (issue 26 brings tools)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import httpx
import openai
import pytest

from memchat import Memory

AGENT_RUNS = '''
import asyncio, json, os, sys, traceback

import openai
from agents import Agent, ModelSettings, MultiProvider, RunConfig, Runner, function_tool
from openai.types.shared import Reasoning


def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return "sunny"


async def run(request):
    tools = [function_tool(get_weather)] if request.get("tool") else []
    reasoning = Reasoning(effort=request["effort"]) if "effort" in request else None
    settings = ModelSettings(top_p=request.get("top_p"), reasoning=reasoning)
    agent = Agent(
        name="planner",
        instructions="Be brief.",
        model=request.get("model", "gpt-4o-mini"),
        tools=tools,
        model_settings=settings,
    )
    chained = {key: request[key] for key in ("conversation_id", "previous_response_id") if key in request}
    # the SDK's setting that sends `openai/...` model ids as they are, for OpenAI-compatible servers
    chained["run_config"] = RunConfig(model_provider=MultiProvider(openai_prefix_mode="model_id"))
    events = []
    if request.get("stream"):
        result = Runner.run_streamed(agent, request["input"], **chained)
        events = [event.data.type async for event in result.stream_events() if event.type == "raw_response_event"]
    else:
        result = await Runner.run(agent, request["input"], **chained)
    return {"final_output": result.final_output, "last_response_id": result.last_response_id, "events": events}


loop = asyncio.new_event_loop()  # one for every run: the SDK keeps one HTTP client per process
for line in sys.stdin:
    order = json.loads(line)
    os.environ.update(order["env"])
    try:
        answer = loop.run_until_complete(run(order["request"]))
    except openai.APIStatusError as refused:
        answer = {"status": refused.status_code, "param": refused.param, "message": refused.message}
    except Exception:
        answer = {"error": traceback.format_exc()}
    print(ANSWER + json.dumps(answer), flush=True)
'''
"""Agent runs in a process of their own, one after another: each order on a line of stdin, as JSON
with the environment to run in and the request (input, conversation_id or previous_response_id,
stream, tool, model, top_p, effort); what the run gave back as JSON on a line of stdout after
ANSWER."""

ANSWER = "agent run: "


def agent_environment(served) -> dict[str, str]:
    """The SDK's own settings, as a user sets them: its OpenAI client at memchat serve, and its
    tracing off (the exporter would send every run to OpenAI)."""
    return {
        "OPENAI_BASE_URL": served.base_url,
        "OPENAI_API_KEY": "unused",
        "OPENAI_AGENTS_DISABLE_TRACING": "1",
    }


class AgentProcess:
    """A process that runs agents (importing the SDK takes it seconds): each test's runs are
    sent to the module's processes, with the test's server in their environment."""

    def __init__(self):
        self.errors = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"ANSWER = {ANSWER!r}\n{AGENT_RUNS}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
            env={**os.environ, "OPENAI_AGENTS_DISABLE_TRACING": "1"},
        )

    def run(self, served, request: dict) -> dict:
        self.process.stdin.write(json.dumps({"env": agent_environment(served), "request": request}) + "\n")
        self.process.stdin.flush()
        while (line := self.process.stdout.readline()) and not line.startswith(ANSWER):
            pass
        assert line, f"the agent process ended: {self.stderr()}"
        answer = json.loads(line.removeprefix(ANSWER))
        assert "error" not in answer, answer["error"]
        return answer

    def stderr(self) -> str:
        self.errors.seek(0)
        return self.errors.read().decode(errors="replace")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.errors.close()


@pytest.fixture(scope="module")
def agent_processes():
    """Two, so that a conversation can go on in another process than the one it began in."""
    processes = [AgentProcess(), AgentProcess()]
    yield processes
    for process in processes:
        process.close()


@pytest.fixture
def run_agent(agent_processes, served):
    """`run_agent(**request, process=0)`: one agent run on the test's server, in the module's first
    agent process or (process=1) its second."""

    def run(process: int = 0, **request) -> dict:
        return agent_processes[process].run(served, request)

    return run


def items_of(client, conversation_id: str) -> list[tuple[str, str]]:
    listed = client.conversations.items.list(conversation_id, order="asc")
    return [(item.role, item.content[0].text) for item in listed]


def test_an_agent_keeps_its_conversation_across_two_processes_streamed_or_not(served, server, run_agent):
    client = served.client()
    conversation = client.conversations.create()
    server.reply("Lisbon.", "Then Porto.")

    first = run_agent(input="Where should I travel?", conversation_id=conversation.id)
    assert first["final_output"] == "Lisbon." and first["last_response_id"].startswith("resp_")
    assert server.requests[-1].get("stream") is not True

    second = run_agent(input="And after that?", conversation_id=conversation.id, stream=True, process=1)
    assert second["final_output"] == "Then Porto."
    assert server.requests[-1]["stream"] is True, "the streamed run streams from the provider"
    assert second["events"][0] == "response.created" and second["events"][-1] == "response.completed"
    assert "response.output_text.delta" in second["events"]
    assert server.last_messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where should I travel?"},
        {"role": "assistant", "content": "Lisbon."},
        {"role": "user", "content": "And after that?"},
    ]
    assert items_of(client, conversation.id) == [
        ("user", "Where should I travel?"),
        ("assistant", "Lisbon."),
        ("user", "And after that?"),
        ("assistant", "Then Porto."),
    ]
    assert client.responses.retrieve(second["last_response_id"]).conversation.id == conversation.id


def test_runs_chained_by_previous_response_id_continue_one_conversation(served, server, run_agent):
    server.reply("Lisbon.", "Then Porto.")
    first = run_agent(input="Where should I travel?")
    second = run_agent(input="And after that?", previous_response_id=first["last_response_id"], process=1)
    assert second["final_output"] == "Then Porto."
    assert server.last_messages[1:] == [
        {"role": "user", "content": "Where should I travel?"},
        {"role": "assistant", "content": "Lisbon."},
        {"role": "user", "content": "And after that?"},
    ]
    client = served.client()
    conversation = client.responses.retrieve(first["last_response_id"]).conversation.id
    assert client.responses.retrieve(second["last_response_id"]).conversation.id == conversation
    assert len(items_of(client, conversation)) == 4


def test_an_agents_top_p_and_reasoning_effort_reach_the_provider(served, server, run_agent):
    server.reply("Lisbon.", "Then Porto.")
    model = "openai/local-reasoner"  # a model litellm does not know: it sends both options
    tuned = run_agent(input="Where should I travel?", model=model, top_p=0.5, effort="low")
    assert tuned["final_output"] == "Lisbon."
    assert (server.requests[-1]["top_p"], server.requests[-1]["reasoning_effort"]) == (0.5, "low")
    run_agent(input="And after that?", model=model, previous_response_id=tuned["last_response_id"], process=1)
    assert "top_p" not in server.requests[-1] and "reasoning_effort" not in server.requests[-1]


def test_a_response_and_a_chat_completion_send_top_p_and_reasoning_effort(served, server):
    client = served.client()
    conversation = client.conversations.create()
    server.reply("Lisbon.", "Then Porto.")
    model = "openai/local-reasoner"
    made = client.responses.create(
        model=model, input="Where to?", conversation=conversation.id, top_p=0.25, reasoning={"effort": "minimal"}
    )
    assert (server.requests[-1]["top_p"], server.requests[-1]["reasoning_effort"]) == (0.25, "minimal")
    assert (made.top_p, made.reasoning.effort) == (0.25, "minimal")
    client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "And then?"}],
        top_p=0.75,
        reasoning_effort="high",
        parallel_tool_calls=True,
        extra_headers={"X-Memchat-Thread": conversation.id},
    )
    assert (server.requests[-1]["top_p"], server.requests[-1]["reasoning_effort"]) == (0.75, "high")


@pytest.mark.bad_input
def test_a_model_that_does_not_take_an_option_is_refused_naming_it_and_nothing_is_stored(served, server):
    client = served.client()
    conversation = client.conversations.create()
    for model, fields, named in [
        ("gpt-4o-mini", {"reasoning": {"effort": "low"}}, "reasoning_effort"),
        ("gpt-5", {"top_p": 0.5}, "top_p"),
    ]:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model=model, input="hi", conversation=conversation.id, **fields)
        assert named in refused.value.message and model in refused.value.message
    assert items_of(client, conversation.id) == [] and server.requests == []


@pytest.mark.bad_input
def test_an_agent_with_a_tool_is_refused_naming_tools_and_nothing_is_stored(served, server, run_agent):
    client = served.client()
    conversation = client.conversations.create()
    refused = run_agent(input="Weather in Paris?", conversation_id=conversation.id, tool=True)
    assert (refused["status"], refused["param"]) == (400, "tools"), refused
    assert "`tools` is not supported" in refused["message"]
    assert items_of(client, conversation.id) == [] and server.requests == []


def test_the_fields_an_agent_may_send_are_accepted_where_memchat_honours_them(served, server):
    client = served.client()
    conversation = client.conversations.create()
    server.reply("Lisbon.")
    made = client.responses.create(
        model="gpt-4o-mini",
        input=[{"role": "user", "content": "Where should I travel?"}],
        conversation=conversation.id,
        include=["reasoning.encrypted_content", "message.input_image.image_url"],
        tools=[],
        tool_choice="auto",
        parallel_tool_calls=True,
        store=True,
        truncation="auto",
        metadata={},
        prompt_cache_key="agents:planner",
        text={"format": {"type": "text"}},
    )
    assert made.output_text == "Lisbon."
    assert "top_p" not in server.requests[-1] and "reasoning_effort" not in server.requests[-1]
    assert (made.tool_choice, made.parallel_tool_calls, made.truncation, made.prompt_cache_key) == (
        "auto",
        True,
        "auto",
        "agents:planner",
    )
    assert [item.type for item in made.output] == ["message"], "nothing was asked that a text reply lacks"
    listed = client.conversations.items.list(conversation.id, include=["reasoning.encrypted_content"], order="asc")
    assert [item.content[0].text for item in listed] == ["Where should I travel?", "Lisbon."]
    one = client.conversations.items.retrieve(
        listed.data[0].id, conversation_id=conversation.id, include=["message.input_image.image_url"]
    )
    assert one.content[0].text == "Where should I travel?"


@pytest.mark.bad_input
def test_what_memchat_cannot_honour_is_refused_by_name_and_nothing_is_stored(served, server):
    client = served.client()
    conversation = client.conversations.create()
    turn = {"model": "gpt-4o-mini", "input": "hi", "conversation": conversation.id}
    cases = [
        ({"include": ["message.output_text.logprobs"]}, "include", "message.output_text.logprobs"),
        ({"include": ["web_search_call.results"]}, "include", "web_search_call.results"),
        ({"include": ["everything"]}, "include", "everything"),
        ({"include": "reasoning.encrypted_content"}, "include", "list"),
        ({"include": [7]}, "include", "list"),
        ({"store": False}, "store", "store"),
        ({"store": "no"}, "store", None),
        ({"truncation": "disabled"}, "truncation", "disabled"),
        ({"truncation": "sometimes"}, "truncation", None),
        ({"metadata": {"run": "1"}}, "metadata", "conversation"),
        ({"tool_choice": "required"}, "tool_choice", "required"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls", None),
        ({"reasoning": {"effort": "low", "summary": "auto"}}, "reasoning.summary", "reasoning items"),
        ({"reasoning": {"generate_summary": "concise"}}, "reasoning.generate_summary", "reasoning items"),
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort", None),
        ({"reasoning": {"effort": "low", "depth": 3}}, "reasoning.depth", None),
        ({"text": {"format": {"type": "json_object"}}}, "text.format.type", "json_object"),
        ({"text": {"format": {"type": "json_schema", "name": "o", "schema": {}}}}, "text.format.type", "json_schema"),
        ({"text": {"verbosity": "low"}}, "text.verbosity", "verbosity"),
        ({"top_logprobs": 2}, "top_logprobs", "top_logprobs"),
        ({"top_p": 1.5}, "top_p", None),
        (
            {"parallel_tool_calls": True, "tool_choice": "required", "tools": [{"type": "function", "name": "f"}]},
            "tools",
            "tools",
        ),
    ]
    for fields, param, named in cases:
        answer = httpx.post(f"{served.base_url}/responses", json={**turn, **fields}, timeout=60)
        assert answer.status_code == 400, (fields, answer.text)
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["param"] == param, (fields, error)
        assert named is None or named in error["message"], (fields, error)
    for include in (["code_interpreter_call.outputs"], ["message.output_text.logprobs"]):
        with pytest.raises(openai.BadRequestError) as refused:
            client.conversations.items.list(conversation.id, include=include)  # sent as include[]=...
        assert refused.value.param == "include" and include[0] in refused.value.message
    answer = httpx.get(
        f"{served.base_url}/conversations/{conversation.id}/items", params={"include": "file_search_call.results"}
    )
    assert answer.status_code == 400 and "file_search_call.results" in answer.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError):
        client.conversations.items.create(
            conversation.id,
            items=[{"role": "user", "content": "a note"}],
            include=["computer_call_output.output.image_url"],
        )
    assert Memory().messages(conversation.id) == [] and server.requests == []
