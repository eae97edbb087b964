"""What the provider answers is stored, whatever it holds: characters no database stores are
replaced (and said so), an unreadable embedding falls back to recall by words, and a reply cut
off by its token limit is reported as OpenAI reports it."""

import json

import pytest
from helpers import sqlite_only
from test_cli import ok

from memchat import Memory

UNSTORABLE_REPLIES = [("caf\ud800 au lait", "caf\ufffd au lait"), ("nul\x00 here", "nul\ufffd here")]


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


ECHOED = "one two three four five six seven eight nine ten eleven twelve"


@pytest.mark.fault
@pytest.mark.parametrize("stream", [False, True])
def test_a_reply_stopped_by_max_tokens_is_kept_whole_and_said_to_be_cut(memory, stream):
    thread = memory.new_thread(model="memchat/echo")
    notes = []
    cut = memory.say(thread.id, ECHOED, max_tokens=3, stream=stream, on_note=notes.append)
    assert cut.finish_reason == "length" and any("--max-tokens" in note for note in notes), notes
    assert [m.status for m in memory.messages(thread.id)] == ["complete", "complete"]
    assert memory.say(thread.id, "short", stream=stream).finish_reason == "stop"


@pytest.mark.fault
def test_the_openai_faces_report_a_reply_stopped_by_max_tokens_as_openai_does(served):
    client = served.client()
    conversation = client.conversations.create(extra_body={"memchat": {"model": "memchat/echo"}})
    made = client.responses.create(model="memchat/echo", conversation=conversation.id, input=ECHOED, max_output_tokens=3)
    assert (made.status, made.incomplete_details.reason, made.output[0].status) == ("incomplete", "max_output_tokens", "incomplete")
    events = list(client.responses.create(model="memchat/echo", conversation=conversation.id, input=ECHOED, max_output_tokens=3, stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.incomplete_details.reason == "max_output_tokens"
    whole = client.responses.create(model="memchat/echo", conversation=conversation.id, input="short")
    assert (whole.status, whole.incomplete_details) == ("completed", None)
    chat = served.client(default_headers={"X-Memchat-Thread": conversation.id}).chat.completions
    asked = {"model": "memchat/echo", "messages": [{"role": "user", "content": ECHOED}], "max_tokens": 3}
    assert chat.create(**asked).choices[0].finish_reason == "length"
    chunks = list(chat.create(**asked, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chat.create(**{**asked, "max_tokens": 500}).choices[0].finish_reason == "stop"
    assert {m.status for m in Memory().messages(conversation.id)} == {"complete"}
