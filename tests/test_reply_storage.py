"""What the provider answers is stored, whatever it holds: characters no database stores are
replaced (and said so), an unreadable embedding falls back to recall by words, and a reply cut
off by its token limit is reported as OpenAI reports it."""

import json
import re

import httpx
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
def test_say_keeps_such_a_reply_too(db_url, server):
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


@pytest.mark.fault
@pytest.mark.parametrize("stream", [False, True])
def test_a_reply_stopped_by_max_tokens_reads_back_as_stopped(served, server, stream):
    client = served.client()
    conversation = client.conversations.create(extra_body={"memchat": {"model": "openai/gpt-4o-mini"}})
    asked = {"model": "openai/gpt-4o-mini", "conversation": conversation.id, "max_output_tokens": 16}
    server.finish_reason = "length"
    server.reply("cut off right")
    if stream:
        made = list(client.responses.create(**asked, input="tell me all", stream=True))[-1].response
    else:
        made = client.responses.create(**asked, input="tell me all")
    server.finish_reason = "stop"
    server.reply("whole")
    whole = client.responses.create(**asked, input="short")
    read = client.responses.retrieve(made.id)
    assert (read.status, read.incomplete_details.reason, read.output[0].status) == ("incomplete", "max_output_tokens", "incomplete")
    assert read.output_text == "cut off right"
    assert (client.responses.retrieve(whole.id).status, client.responses.retrieve(whole.id).incomplete_details) == ("completed", None)
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [item.status for item in items] == ["completed", "incomplete", "completed", "completed"]
    own = httpx.get(f"{served.url}/memchat/v1/threads/{conversation.id}/messages").json()
    assert [message["finish_reason"] for message in own] == [None, "length", None, None]
    assert [m.status for m in Memory().messages(conversation.id)] == ["complete"] * 4


@pytest.mark.fault
def test_a_reply_stopped_by_max_tokens_is_exported_and_imported_as_stopped(memory, server):
    import io

    from memchat.transfer import markdown

    thread = memory.new_thread(model="openai/gpt-4o-mini")
    server.finish_reason = "length"
    server.reply("cut off right")
    memory.say(thread.id, "tell me all", max_tokens=16)
    server.finish_reason = "stop"
    server.reply("whole")
    memory.say(thread.id, "short")
    exported = memory.export(thread.id)
    assert [m.get("finish_reason") for m in exported["messages"]] == [None, "length", None, None]
    (copy,) = memory.import_(json.dumps(exported)).threads
    assert {**memory.export(copy), "id": None} == {**exported, "id": None}
    assert [m.finish_reason for m in memory.messages(copy)] == [None, "length", None, None]
    written = io.StringIO()
    memory.write_export(written, thread.id, format="markdown")
    assert "stopped at its max tokens" in written.getvalue()
    (from_markdown,) = memory.import_(markdown.parse(written.getvalue())).threads
    assert [m.finish_reason for m in memory.messages(from_markdown)] == [None, "length", None, None]
    shown = json.loads(ok("show", thread.id, "--json").stdout)
    assert [m.get("finish_reason") for m in shown["messages"]] == [None, "length", None, None]
    assert "(stopped at its max tokens)" in ok("show", thread.id, "--no-pager").stdout


@pytest.mark.bad_input
def test_an_import_refuses_a_finish_reason_memchat_does_not_keep(memory):
    from memchat import InvalidInput

    reply = {"role": "assistant", "content": "yo", "finish_reason": "tool_calls"}
    with pytest.raises(InvalidInput, match=re.escape("messages[1].finish_reason")):
        memory.import_(json.dumps({"title": "bad", "messages": [{"role": "user", "content": "hi"}, reply]}))
    assert memory.threads() == []
