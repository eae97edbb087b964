"""What the provider answers is stored, whatever it holds: characters no database stores are
replaced (and said so), an unreadable embedding falls back to recall by words, and a reply cut
off by its token limit is reported as OpenAI reports it."""

import json

import httpx
import pytest
from fake_openai import Raw
from helpers import sqlite_only
from serving import Served
from test_cli import ok

from memchat import Memory

UNSTORABLE_REPLIES = [("caf\ud800 au lait", "caf\ufffd au lait"), ("nul\x00 here", "nul\ufffd here")]


@pytest.fixture
def served(server):
    running = Served()
    yield running
    running.stop()


@pytest.mark.fault
@pytest.mark.parametrize(("sent", "stored"), UNSTORABLE_REPLIES)
@pytest.mark.parametrize("stream", [False, True])
def test_a_reply_no_database_stores_is_kept_with_the_characters_replaced(memory, server, sent, stored, stream):
    thread = memory.new_thread(model="openai/gpt-4o-mini")
    server.reply(sent)
    notes, pieces = [], []
    reply = memory.say(thread.id, "hi", stream=stream, on_text=pieces.append, on_note=notes.append)
    assert reply.text == stored and "".join(pieces) == stored
    assert [(m.status, m.content) for m in memory.messages(thread.id)] == [("complete", "hi"), ("complete", stored)]
    assert any("U+FFFD" in note for note in notes), notes
    exported = memory.export(thread.id)
    imported = Memory().import_(json.dumps(exported)).threads
    assert Memory().messages(imported[0])[-1].content == stored


@pytest.mark.fault
@sqlite_only
def test_say_keeps_such_a_reply_too(server):
    thread = Memory().new_thread(model="openai/gpt-4o-mini")
    server.reply("caf\ud800 au lait")
    said = ok("say", thread.id, "hi")
    assert said.stdout == "caf\ufffd au lait\n" and "U+FFFD" in said.stderr
    assert Memory().messages(thread.id)[-1].content == "caf\ufffd au lait"


@pytest.mark.fault
def test_the_server_answers_such_a_reply_streamed_or_not(served, server):
    client = served.client()
    conversation = client.conversations.create(extra_body={"memchat": {"model": "openai/gpt-4o-mini"}})
    server.reply("caf\ud800 au lait", "nul\x00 here")
    made = client.responses.create(model="openai/gpt-4o-mini", conversation=conversation.id, input="hi")
    assert made.output_text == "caf\ufffd au lait"
    events = list(client.responses.create(model="openai/gpt-4o-mini", conversation=conversation.id, input="again", stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "nul\ufffd here"
    assert [m.status for m in Memory().messages(conversation.id)] == ["complete"] * 4
