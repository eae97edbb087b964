"""`memchat serve` as its users meet it: a real server process, the official openai SDK (or raw
HTTP for bodies the SDK would never send), the tests' local provider behind it, both backends."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from helpers import sqlite_only
from serving import Served

from memchat import Memory


def _items(client, conversation_id, **query):
    return [(item.role, item.content[0].text) for item in client.conversations.items.list(conversation_id, order="asc", **query)]


def test_a_turn_titles_a_conversation_and_leaves_its_metadata_as_given(served, server):
    client = served.client()
    made = client.conversations.create(metadata={"project": "demo"})
    assert made.model_extra["memchat"]["title"] == ""
    server.reply("Lisbon.", "In May.")
    client.responses.create(model="openai/gpt-4o-mini", input="Where should I travel\nthis spring?", conversation=made.id)
    client.responses.create(model="openai/gpt-4o-mini", input="When?", conversation=made.id)
    again = client.conversations.retrieve(made.id)
    assert again.metadata == {"project": "demo"}
    assert again.model_extra["memchat"]["title"] == "Where should I travel this spring?"[:31] + "…"


def test_conversations_items_and_pagination(served):
    client = served.client()
    made = client.conversations.create(
        items=[
            {"type": "message", "role": "system", "content": "You are terse."},
            {"type": "message", "role": "user", "content": "My name is Ada."},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello Ada."}]},
        ],
        metadata={"project": "demo", "user": "42"},
        extra_body={"memchat": {"model": "openai/gpt-4o-mini", "budget": 2000}},
    )
    assert made.metadata == {"project": "demo", "user": "42"}
    settings = made.model_extra["memchat"]
    assert (settings["system"], settings["model"], settings["budget"], settings["message_count"]) == (
        "You are terse.", "openai/gpt-4o-mini", 2000, 2,
    )
    assert settings["title"] == "My name is Ada.", "titled from its first user item"
    assert client.conversations.retrieve(made.id).metadata == made.metadata

    added = client.conversations.items.create(
        made.id, items=[{"type": "message", "role": "user", "content": f"note {n}"} for n in range(5)]
    )
    assert [item.content[0].text for item in added.data] == [f"note {n}" for n in range(5)]
    everything = _items(client, made.id)
    assert everything[:2] == [("user", "My name is Ada."), ("assistant", "Hello Ada.")] and len(everything) == 7

    first = client.conversations.items.list(made.id, limit=3)  # newest first, as OpenAI's default
    assert [item.content[0].text for item in first.data] == ["note 4", "note 3", "note 2"]
    assert first.has_more and first.first_id == first.data[0].id and first.last_id == first.data[-1].id
    second = client.conversations.items.list(made.id, limit=3, after=first.last_id)
    assert [item.content[0].text for item in second.data] == ["note 1", "note 0", "Hello Ada."]
    assert [i.content[0].text for i in client.conversations.items.list(made.id, limit=2, order="asc")] == [
        text for _, text in everything
    ]  # the SDK's auto-pagination walks every page
    one = client.conversations.items.retrieve(first.data[0].id, conversation_id=made.id)
    assert one.content[0].text == "note 4" and one.role == "user"

    settings = {"budget": None, "recall": 3, "recall_embeddings": "openai/text-embedding-3-small"}
    changed = client.conversations.update(made.id, metadata={"project": "renamed"}, extra_body={"memchat": settings})
    assert changed.metadata == {"project": "renamed"}
    assert {key: changed.model_extra["memchat"][key] for key in settings} == settings

    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve("nosuchthread")
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve("msg_other_1", conversation_id=made.id)

    # A deleted item leaves the conversation (and its later contexts); memchat keeps it, undone.
    left = client.conversations.items.delete(first.data[0].id, conversation_id=made.id)
    assert left.id == made.id
    assert [text for _, text in _items(client, made.id)] == [text for _, text in everything[:-1]]
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(first.data[0].id, conversation_id=made.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.delete(first.data[0].id, conversation_id=made.id)
    from memchat import Memory

    with Memory() as memory:
        kept = memory.messages(made.id)
        assert (kept[-1].content, kept[-1].status) == ("note 4", "undone")
        assert "note 4" not in [entry.content for entry in memory.context(made.id, "next").entries]
    assert client.conversations.delete(made.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(made.id)


def test_two_response_turns_send_the_exact_history(memchat, served, server):
    client = served.client()
    conversation = client.conversations.create(
        items=[{"type": "message", "role": "system", "content": "Be brief."}],
        extra_body={"memchat": {"model": "openai/gpt-4o-mini"}},
    )
    server.reply("Lisbon.", "It rains less there.")
    first = client.responses.create(model="openai/gpt-4o-mini", input="Where should I travel?", conversation=conversation.id)
    assert first.output_text == "Lisbon." and first.status == "completed"
    assert (first.usage.input_tokens, first.usage.output_tokens) == (server.PROMPT_TOKENS, server.COMPLETION_TOKENS)
    second = client.responses.create(
        model="openai/gpt-4o-mini", input=[{"role": "user", "content": "Why?"}], conversation={"id": conversation.id}
    )
    assert second.output_text == "It rains less there."
    assert server.last_messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where should I travel?"},
        {"role": "assistant", "content": "Lisbon."},
        {"role": "user", "content": "Why?"},
    ]
    assert client.responses.retrieve(first.id).output_text == "Lisbon."
    assert client.responses.retrieve(second.id).conversation.id == conversation.id

    server.reply("Porto too.")
    third = client.responses.create(
        model="openai/gpt-4o-mini", input="Any other city?", previous_response_id=second.id, instructions="Answer in 3 words."
    )
    assert third.output_text == "Porto too."
    assert server.last_messages[0] == {"role": "system", "content": "Answer in 3 words."}  # this turn's only
    assert server.last_messages[-2] == {"role": "assistant", "content": "It rains less there."}
    # An older response: the conversation is forked there, as OpenAI branches; the original stays.
    kept = _items(client, conversation.id)
    server.reply("Madrid.")
    branched = client.responses.create(model="openai/gpt-4o-mini", input="Somewhere else?", previous_response_id=first.id)
    assert branched.output_text == "Madrid." and branched.conversation.id != conversation.id
    assert server.last_messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where should I travel?"},
        {"role": "assistant", "content": "Lisbon."},
        {"role": "user", "content": "Somewhere else?"},
    ]
    assert _items(client, conversation.id) == kept
    assert client.conversations.retrieve(branched.conversation.id).model_extra["memchat"]["forked_from"] == conversation.id

    standalone = client.responses.create(model="openai/gpt-4o-mini", input="A fresh start")
    assert standalone.conversation.id != conversation.id
    assert server.last_messages == [{"role": "user", "content": "A fresh start"}]

    # The CLI works on the same conversation, and the server sees what the CLI said.
    server.reply("From the CLI.")
    said = memchat("say", conversation.id, "hello from a terminal")
    assert said.returncode == 0 and said.stdout == "From the CLI.\n", said.stderr
    assert _items(client, conversation.id)[-2:] == [("user", "hello from a terminal"), ("assistant", "From the CLI.")]

    # Several input items: the earlier ones are stored with the turn, just before the last.
    server.reply("Trains, then.")
    said = [("user", "I like trains."), ("assistant", "Noted."), ("user", "So how do I go?")]
    client.responses.create(
        model="openai/gpt-4o-mini", conversation=conversation.id, input=[{"role": r, "content": t} for r, t in said]
    )
    assert server.last_messages[-3:] == [{"role": r, "content": t} for r, t in said]
    assert _items(client, conversation.id)[-4:] == [*said, ("assistant", "Trains, then.")]


def test_streaming_through_the_sdk_helpers_of_both_apis(served, server):
    client = served.client()
    conversation = client.conversations.create(extra_body={"memchat": {"model": "openai/gpt-4o-mini"}})
    server.reply("one two three four")
    with client.responses.stream(model="openai/gpt-4o-mini", input="count", conversation=conversation.id) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text == "one two three four" and final.status == "completed"
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    assert kinds.count("response.output_text.delta") >= 2
    assert client.responses.retrieve(final.id).output_text == "one two three four"

    server.reply("five six seven")
    pieces, usage = [], None
    for chunk in client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "more"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Memchat-Thread": conversation.id},
    ):
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces) == "five six seven" and usage.completion_tokens == server.COMPLETION_TOKENS
    assert server.last_messages[-3:] == [
        {"role": "user", "content": "count"},
        {"role": "assistant", "content": "one two three four"},
        {"role": "user", "content": "more"},
    ]


def test_chat_completions_take_the_history_from_the_store(served, server):
    client = served.client()
    with pytest.raises(openai.BadRequestError) as missing:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert "X-Memchat-Thread" in missing.value.message
    thread = Memory().new_thread(model="openai/gpt-4o-mini", messages=[("user", "I like tea."), ("assistant", "Noted.")]).id
    server.reply("Tea, then.")
    done = client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "ignored: the store has the history"},
            {"role": "assistant", "content": "also ignored"},
            {"role": "user", "content": "What do I like?"},
        ],
        extra_headers={"X-Memchat-Thread": thread},
    )
    assert done.choices[0].message.content == "Tea, then." and done.usage.prompt_tokens == server.PROMPT_TOKENS
    assert server.last_messages == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "I like tea."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "What do I like?"},
    ]


def test_provider_faults_become_statuses_and_the_message_is_kept(served, server):
    client = served.client()
    conversation = client.conversations.create(extra_body={"memchat": {"model": "openai/gpt-4o-mini"}})
    server.fail(400, "the model does not like this")
    with pytest.raises(openai.APIStatusError) as rejected:
        client.responses.create(model="openai/gpt-4o-mini", input="first try", conversation=conversation.id)
    assert rejected.value.status_code == 502 and "does not like this" in rejected.value.message
    server.fail(429, "slow down", headers={"Retry-After": "1000"})
    with pytest.raises(openai.RateLimitError) as limited:
        client.responses.create(model="openai/gpt-4o-mini", input="second try", conversation=conversation.id)
    assert limited.value.response.headers["retry-after"] == "1000"
    statuses = [(item.content[0].text, item.status) for item in client.conversations.items.list(conversation.id, order="asc")]
    assert statuses == [("first try", "incomplete"), ("second try", "incomplete")]
    server.reply("finally")
    assert client.responses.create(model="openai/gpt-4o-mini", input="third", conversation=conversation.id).output_text == "finally"
    assert server.last_messages == [{"role": "user", "content": "third"}]  # failed turns are not history


def test_a_client_that_leaves_mid_stream_keeps_the_partial_reply(served, server):
    conversation = served.client().conversations.create(extra_body={"memchat": {"model": "openai/gpt-4o-mini"}})
    server.reply(" ".join(f"word{n}" for n in range(200)))
    server.piece_delay = 0.05
    body = {"model": "openai/gpt-4o-mini", "input": "talk", "conversation": conversation.id, "stream": True}
    with httpx.stream("POST", f"{served.base_url}/responses", json=body, timeout=30) as streaming:
        deltas = 0
        for line in streaming.iter_lines():
            deltas += line == "event: response.output_text.delta"
            if deltas == 3:
                break
    memory = Memory()
    for _ in range(200):
        messages = memory.messages(conversation.id)
        if len(messages) == 2:
            break
        time.sleep(0.05)
    user, partial = messages
    assert (user.status, partial.status) == ("failed", "partial")
    assert partial.content.startswith("word0 word1") and len(partial.content) < 600
    assert server.pieces_sent < 200


@pytest.mark.bad_input
def test_bad_bodies_are_4xx_with_openai_errors_and_store_nothing(served, server):
    conversation = served.client().conversations.create(extra_body={"memchat": {"model": "openai/gpt-4o-mini"}})
    url = served.base_url
    cases = [
        ("/responses", b"{not json", 400, None),
        ("/responses", {"model": "openai/gpt-4o-mini", "input": 5, "conversation": conversation.id}, 400, "input"),
        ("/responses", {"model": "openai/gpt-4o-mini", "input": [{"role": "tool", "content": "x"}], "conversation": conversation.id}, 400, "input[0].role"),
        ("/responses", {"model": "openai/gpt-4o-mini", "input": "hi", "conversation": conversation.id, "tools": [{"type": "web_search"}]}, 400, "tools[0]"),
        ("/responses", {"model": "openai/gpt-4o-mini", "input": "hi", "conversation": conversation.id, "background": True}, 400, "background"),
        ("/responses", {"model": "openai/gpt-4o-mini", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}], "conversation": conversation.id}, 400, "input[0].content[0].image_url"),
        ("/responses", {"model": "openai/gpt-4o-mini", "input": "hi", "conversation": conversation.id, "max_output_tokens": "lots"}, 400, "max_output_tokens"),
        ("/responses", {"model": "openai/gpt-4o-mini", "input": "a\u0000b", "conversation": conversation.id}, 400, None),
        ("/responses", {"model": "openai/gpt-4o-mini", "input": "hi", "conversation": "nosuch"}, 404, None),
        ("/responses", {"model": "openai/gpt-4o-mini", "input": [{"role": "user", "content": "earlier"}, {"role": "user", "content": "w " * 200_000}], "conversation": conversation.id}, 400, None),
        ("/responses", {"model": "openai/gpt-4o-mini", "input": "x" * (5 * 1024 * 1024), "conversation": conversation.id}, 413, None),
        (f"/conversations/{conversation.id}/items", {"items": [{"role": "system", "content": "x"}]}, 400, "items[0].role"),
        (f"/conversations/{conversation.id}/items", {"items": "nope"}, 400, "items"),
        ("/conversations", {"metadata": {f"k{n}": "v" for n in range(17)}}, 400, None),
        ("/conversations", {"memchat": {"api_base": "http://elsewhere"}}, 400, "memchat.api_base"),
        ("/chat/completions", {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n"),
    ]
    for path, payload, status, param in cases:
        content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        answer = httpx.post(
            url + path, content=content, headers={"Content-Type": "application/json", "X-Memchat-Thread": conversation.id}, timeout=60
        )
        assert answer.status_code == status, (path, payload if len(content) < 300 else "(huge)", answer.text)
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], answer.text
        if param:
            assert error["param"] == param, (param, answer.text)
    assert Memory().messages(conversation.id) == [] and server.requests == []
    assert len(Memory().threads()) == 1


def test_health_metrics_docs_and_a_log_line_per_request(served, server):
    assert httpx.get(f"{served.url}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{served.url}/docs").status_code == 200
    assert "/v1/responses" in httpx.get(f"{served.url}/openapi.json").json()["paths"]
    client = served.client(key="sk-secret-in-a-header")
    conversation = client.conversations.create(extra_body={"memchat": {"model": "openai/gpt-4o-mini"}})
    client.responses.create(model="openai/gpt-4o-mini", input="a private sentence", conversation=conversation.id)
    server.fail(400, "nope")
    with pytest.raises(openai.APIStatusError):
        client.responses.create(model="openai/gpt-4o-mini", input="again", conversation=conversation.id)
    exposed = httpx.get(f"{served.url}/metrics").text
    assert 'memchat_turns_total{outcome="completed"} 1.0' in exposed
    assert 'memchat_turns_total{outcome="failed"} 1.0' in exposed
    assert 'memchat_provider_errors_total{kind="rejected"} 1.0' in exposed
    assert "memchat_overhead_seconds_bucket" in exposed and "memchat_turn_seconds_count 1.0" in exposed
    log = served.output()
    assert log.count("POST /v1/responses") == 2
    assert "a private sentence" not in log and "sk-secret" not in log

    from memchat.config import database_url
    from memchat.storage import database

    engine = database.make_engine(database_url(None))
    database.downgrade(engine, "0006")  # as if an older memchat's schema were behind the server
    engine.dispose()
    unhealthy = httpx.get(f"{served.url}/healthz")
    assert unhealthy.status_code == 503 and "0006" in unhealthy.json()["cause"]


@sqlite_only
@pytest.mark.slow
def test_each_worker_has_loaded_litellm_before_it_reports_ready(db_url, server):
    """A worker that answers /healthz has already paid litellm's import (seconds), so its first
    turn does not: each worker process (new interpreters, as with --workers 2) has litellm's own
    native library mapped before any turn is sent."""
    import litellm

    package = str(Path(litellm.__file__).resolve().parent)
    served = Served("--workers", "2")
    try:
        give_up = time.monotonic() + 120
        while served.output().count("Application startup complete") < 2 and time.monotonic() < give_up:
            time.sleep(0.1)
        assert served.output().count("Application startup complete") == 2, served.output()
        workers = [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", served.output())]
        assert len(workers) == 2, served.output()
        for pid in workers:
            mapped = Path(f"/proc/{pid}/maps").read_text()
            assert package in mapped, f"worker {pid} has not loaded litellm"
        assert server.requests == []
        client = served.client()
        conversation = client.conversations.create(extra_body={"memchat": {"model": "openai/gpt-4o-mini"}})
        assert client.responses.create(model="openai/gpt-4o-mini", input="hi", conversation=conversation.id).output_text
    finally:
        served.stop()


@sqlite_only
def test_serve_refuses_to_listen_beyond_loopback_without_keys(memchat):
    refused = memchat("serve", "--host", "0.0.0.0", timeout=60)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "0.0.0.0" in refused.stderr


@pytest.mark.slow
def test_a_server_killed_mid_turn_comes_back_and_the_conversation_goes_on(db_url, server):
    first = Served()
    client = first.client()
    conversation = client.conversations.create(extra_body={"memchat": {"model": "openai/gpt-4o-mini"}})
    server.reply_delay = 30
    threading.Thread(
        target=lambda: _ignore_errors(client.responses.create, model="openai/gpt-4o-mini", input="lost?", conversation=conversation.id),
        daemon=True,
    ).start()
    for _ in range(200):
        if server.arrivals:
            break
        time.sleep(0.05)
    first.kill()
    server.reset()
    second = Served()
    try:
        server.reply("still here")
        again = second.client().responses.create(model="openai/gpt-4o-mini", input="hello again", conversation=conversation.id)
        assert again.output_text == "still here"
        assert [(m.content, m.status) for m in Memory().messages(conversation.id)] == [
            ("lost?", "pending"), ("hello again", "complete"), ("still here", "complete"),
        ]
    finally:
        second.stop()


def _ignore_errors(call, **arguments):
    try:
        call(**arguments)
    except Exception:
        pass


@pytest.mark.isolation
def test_keys_are_tenants_that_never_see_each_other(memchat, server, db_url):
    alice_key, bob_key = (memchat("key", "create", name).stdout.strip() for name in ("alice", "bob"))
    assert alice_key.startswith("mc-") and len(alice_key) > 40 and alice_key != bob_key
    listed = memchat("key", "list").stdout
    assert "alice" in listed and alice_key not in listed and alice_key[:9] in listed
    assert memchat("key", "create", "alice").returncode == 2
    served = Served()
    try:
        for key, error in ((None, "needs an API key"), ("mc-wrong", "not valid")):
            answer = httpx.get(f"{served.base_url}/conversations/x", headers={"Authorization": f"Bearer {key}"} if key else {})
            assert answer.status_code == 401 and error in answer.json()["error"]["message"]
            assert answer.headers["www-authenticate"] == "Bearer"
        alice, bob = served.client(alice_key), served.client(bob_key)
        conversation = alice.conversations.create(
            items=[{"role": "user", "content": "alice's secret"}], extra_body={"memchat": {"model": "openai/gpt-4o-mini"}}
        )
        server.reply("noted")
        reply = alice.responses.create(model="openai/gpt-4o-mini", input="remember it", conversation=conversation.id)
        item = alice.conversations.items.list(conversation.id).data[0].id
        mine = bob.conversations.create(extra_body={"memchat": {"model": "openai/gpt-4o-mini"}})
        attempts = [
            lambda: bob.conversations.retrieve(conversation.id),
            lambda: bob.conversations.update(conversation.id, metadata={"x": "y"}),
            lambda: bob.conversations.delete(conversation.id),
            lambda: bob.conversations.items.list(conversation.id),
            lambda: bob.conversations.items.create(conversation.id, items=[{"role": "user", "content": "hi"}]),
            lambda: bob.conversations.items.retrieve(item, conversation_id=conversation.id),
            lambda: bob.responses.retrieve(reply.id),
            lambda: bob.responses.create(model="openai/gpt-4o-mini", input="x", conversation=conversation.id),
            lambda: bob.responses.create(model="openai/gpt-4o-mini", input="x", previous_response_id=reply.id),
            lambda: bob.chat.completions.create(
                model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}], extra_headers={"X-Memchat-Thread": conversation.id}
            ),
            lambda: bob.conversations.items.list(conversation.id[:4]),  # not even by prefix
        ]
        for attempt in attempts:
            with pytest.raises(openai.NotFoundError):
                attempt()
        assert [i.content[0].text for i in alice.conversations.items.list(conversation.id, order="asc")] == [
            "alice's secret", "remember it", "noted",
        ]
        assert len(server.requests) == 1
        operator = json.loads(memchat("list", "--json").stdout)
        assert {(t["id"], t["tenant"]) for t in operator} == {(conversation.id, "alice"), (mine.id, "bob")}
        assert [t["id"] for t in json.loads(memchat("list", "--json", "--tenant", "bob").stdout)] == [mine.id]

        assert memchat("key", "revoke", "alice").returncode == 0
        with pytest.raises(openai.AuthenticationError):
            alice.conversations.retrieve(conversation.id)
        assert bob.conversations.retrieve(mine.id).id == mine.id
    finally:
        served.stop()
    if not db_url.startswith("postgresql"):
        stored = b"".join(p.read_bytes() for p in Path(db_url).parent.glob("memchat.db*"))
        assert alice_key.encode() not in stored and bob_key.encode() not in stored


def test_beyond_loopback_the_server_never_falls_open(memchat, server):
    key = memchat("key", "create", "only").stdout.strip()
    served = Served("--host", "0.0.0.0")
    try:
        client = served.client(key)
        assert client.conversations.create().id
        assert memchat("key", "revoke", "only").returncode == 0
        answer = httpx.post(f"{served.base_url}/conversations", json={})
        assert answer.status_code == 401
    finally:
        served.stop()


@pytest.mark.isolation
def test_a_database_that_has_had_keys_answers_without_one_only_when_the_operator_opens_it(memchat, server):
    key = memchat("key", "create", "t1").stdout.strip()
    served = Served()
    try:
        made = httpx.post(f"{served.url}/memchat/v1/threads", json={"title": "t1's"}, headers={"Authorization": f"Bearer {key}"})
        assert made.status_code == 200
        revoked = memchat("key", "revoke", "t1")
        assert revoked.returncode == 0 and "no key is live" in revoked.stderr
        for path in ("/memchat/v1/export", "/memchat/v1/threads", f"/v1/conversations/{made.json()['id']}"):
            answer = httpx.get(f"{served.url}{path}")
            assert answer.status_code == 401 and "needs an API key" in answer.json()["error"]["message"], path
        client = memchat("--server", served.url, "list")
        assert client.returncode == 8 and "t1's" not in client.stdout
    finally:
        served.stop()
    assert memchat("serve", "--host", "0.0.0.0", "--without-keys").returncode == 2
    opened = Served("--without-keys")
    try:
        assert [t["title"] for t in httpx.get(f"{opened.url}/memchat/v1/export").json()] == ["t1's"]
        assert memchat("key", "create", "t2").returncode == 0
        assert httpx.get(f"{opened.url}/memchat/v1/export").status_code == 401
    finally:
        opened.stop()


def test_memchats_own_api_mirrors_the_cli(memchat, served, server):
    api = httpx.Client(base_url=f"{served.url}/memchat/v1", timeout=60)
    made = api.post("/threads", json={"title": "own", "model": "openai/gpt-4o-mini", "recall": 2}).json()
    thread = made["id"]
    assert (made["title"], made["recall"], made["usage"]["cost"]) == ("own", 2, 0.0)
    server.reply("The capital of Portugal is Lisbon.", "Porto is second.")
    said = api.post(f"/threads/{thread}/say", json={"message": "What is the capital of Portugal?"}).json()
    assert said["text"] == "The capital of Portugal is Lisbon." and said["message"]["position"] == 1
    api.post(f"/threads/{thread}/say", json={"message": "And the second city?"})
    preview = api.post(f"/threads/{thread}/context", json={"message": "Tell me about Lisbon"}).json()
    cli_preview = json.loads(memchat("context", thread, "Tell me about Lisbon", "--json").stdout)
    assert preview == cli_preview and preview["messages"][-1] == {"role": "user", "content": "Tell me about Lisbon"}
    hits = api.get("/search", params={"q": "Lisbon"}).json()
    assert [(h["thread"], h["position"]) for h in hits] == [(thread, 1)]
    assert api.get(f"/threads/{thread}/messages", params={"last": 1}).json()[0]["content"] == "Porto is second."
    changed = api.patch(f"/threads/{thread}", json={"title": "renamed", "budget": 900}).json()
    assert (changed["title"], changed["budget"]) == ("renamed", 900)
    assert api.get(f"/threads/{thread}").json()["usage"]["completion_tokens"] == 2 * server.COMPLETION_TOKENS

    server.fail(400, "no")
    assert api.post(f"/threads/{thread}/say", json={"message": "try"}).status_code == 502
    server.reply("second try works")
    assert api.post(f"/threads/{thread}/retry", json={}).json()["text"] == "second try works"
    assert api.get(f"/threads/{thread}/summaries").json() == []

    exported = api.get(f"/threads/{thread}/export").json()
    assert exported == json.loads(memchat("export", thread).stdout)
    copied = api.post("/import", content=json.dumps(exported)).json()["threads"]
    assert len(copied) == 1 and copied[0] != thread
    everything = api.get("/export").json()
    assert sorted(t["id"] for t in everything) == sorted([thread, copied[0]])
    assert api.delete(f"/threads/{copied[0]}").json() == {"id": copied[0], "deleted": True}
    assert api.get(f"/threads/{copied[0]}").status_code == 404
    unknown = api.post("/threads", json={"api_base": "http://elsewhere"})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "api_base"


@pytest.mark.isolation
def test_search_export_and_import_never_cross_tenants(memchat, server):
    keys = {name: memchat("key", "create", name).stdout.strip() for name in ("alice", "bob")}
    served = Served()
    try:
        apis = {
            name: httpx.Client(base_url=f"{served.url}/memchat/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60)
            for name, key in keys.items()
        }
        alice_thread = apis["alice"].post("/threads", json={"model": "openai/gpt-4o-mini"}).json()["id"]
        server.reply("the password is swordfish")
        apis["alice"].post(f"/threads/{alice_thread}/say", json={"message": "what is the password?"})
        bob_thread = apis["bob"].post("/threads", json={"model": "openai/gpt-4o-mini"}).json()["id"]
        assert apis["bob"].get("/search", params={"q": "swordfish"}).json() == []
        assert apis["bob"].get("/search", params={"q": "swordfish", "thread": alice_thread}).status_code == 404
        assert [t["id"] for t in apis["bob"].get("/export").json()] == [bob_thread]
        assert [t["id"] for t in apis["bob"].get("/threads").json()] == [bob_thread]
        for path in ("", "/messages", "/export", "/summaries"):
            assert apis["bob"].get(f"/threads/{alice_thread}{path}").status_code == 404
        for path in ("/say", "/retry", "/accept", "/context", "/summaries/rebuild"):
            assert apis["bob"].post(f"/threads/{alice_thread}{path}", json={"message": "x"} if path == "/say" else {}).status_code == 404, path
        assert apis["bob"].patch(f"/threads/{alice_thread}", json={"title": "mine now"}).status_code == 404
        assert apis["bob"].delete(f"/threads/{alice_thread}").status_code == 404
        exported = apis["alice"].get(f"/threads/{alice_thread}/export").json()
        copied = apis["bob"].post("/import", content=json.dumps(exported)).json()["threads"][0]
        assert {t["id"] for t in apis["bob"].get("/threads").json()} == {bob_thread, copied}
        assert [h["thread"] for h in apis["alice"].get("/search", params={"q": "swordfish"}).json()] == [alice_thread]
        assert len(server.requests) == 1
    finally:
        served.stop()


@pytest.mark.writers
@pytest.mark.slow
def test_four_clients_five_turns_each_on_one_conversation_stay_in_order(server, db_url):
    """SQLite: one server with two worker processes; PostgreSQL: two replicas on one database."""
    postgres = db_url.startswith("postgresql")
    replicas = [Served(), Served()] if postgres else [Served("--workers", "2")]
    try:
        conversation = replicas[0].client().conversations.create(
            items=[{"role": "system", "content": "Count."}], extra_body={"memchat": {"model": "openai/gpt-4o-mini"}}
        ).id
        server.echo = True
        failures = []

        def client_turns(number: int) -> None:
            client = replicas[number % len(replicas)].client(timeout=180)
            for turn in range(5):
                try:
                    client.responses.create(model="openai/gpt-4o-mini", input=f"client {number} turn {turn}", conversation=conversation)
                except Exception as exc:  # noqa: BLE001 - reported below
                    failures.append(repr(exc))

        clients = [threading.Thread(target=client_turns, args=(n,)) for n in range(4)]
        for started in clients:
            started.start()
        for started in clients:
            started.join(timeout=300)
        assert failures == []
        stored = [(m.role, m.content, m.status) for m in Memory().messages(conversation)]
        assert len(stored) == 40 and all(status == "complete" for _, _, status in stored)
        assert [role for role, _, _ in stored] == ["user", "assistant"] * 20
        assert all(stored[i + 1][1] == "re: " + stored[i][1] for i in range(0, 40, 2))
        assert len(server.requests) == 20
        for index, request in enumerate(server.requests):
            sent = [(m["role"], m["content"]) for m in request["messages"]]
            assert sent[0] == ("system", "Count.")
            assert sent[1:] == [(role, content) for role, content, _ in stored[: 2 * index + 1]], index
        for number in range(4):
            mine = [c for _, c, _ in stored[::2] if c.startswith(f"client {number} ")]
            assert mine == [f"client {number} turn {turn}" for turn in range(5)]
        if not postgres:  # the two workers' figures, added up whichever answers
            assert 'memchat_turns_total{outcome="completed"} 20.0' in httpx.get(f"{replicas[0].url}/metrics").text
    finally:
        for replica in replicas:
            replica.stop()


@pytest.mark.slow
def test_a_busy_conversation_is_409_and_a_slow_provider_504(db_url, server):
    served = Served("--timeout", "5", "--busy-wait", "0", env={"MEMCHAT_LEASE_SECONDS": "2"})
    try:
        client = served.client()
        conversation = client.conversations.create(extra_body={"memchat": {"model": "openai/gpt-4o-mini"}}).id
        server.reply_delay = 4
        first: list = []
        running = threading.Thread(
            target=lambda: first.append(client.responses.create(model="openai/gpt-4o-mini", input="slow one", conversation=conversation))
        )
        running.start()
        for _ in range(500):  # the slow turn holds the conversation: its message is stored, its call made
            if server.arrivals and [m.content for m in Memory().messages(conversation)] == ["slow one"]:
                break
            time.sleep(0.02)
        with pytest.raises(openai.ConflictError) as busy:
            client.responses.create(model="openai/gpt-4o-mini", input="meanwhile", conversation=conversation)
        assert busy.value.body["code"] == "conversation_busy"
        running.join(timeout=60)
        assert first and first[0].status == "completed"
        server.reply_delay = 8
        with pytest.raises(openai.APIStatusError) as slow:
            client.responses.create(model="openai/gpt-4o-mini", input="too slow", conversation=conversation)
        assert slow.value.status_code == 504 and "did not answer in time" in slow.value.message
        assert [m.content for m in Memory().messages(conversation)][-1] == "too slow"
    finally:
        served.stop()
