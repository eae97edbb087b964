"""Bringing history in from other tools: llm's logs database (made here by the real `llm`
package talking to the tests' local provider) and OpenAI JSONL files; each import is all or
nothing, says what it left out, and importing the same history again copies nothing."""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from helpers import sqlite_only

from memchat import InvalidInput
from memchat.transfer import chatgpt, llm_logs, openai_jsonl

LLM = str(Path(sys.executable).parent / "llm")


def run_llm(home: Path, *args: str, env: dict | None = None) -> str:
    env = {**os.environ, **(env or {}), "LLM_USER_PATH": str(home), "OPENAI_API_KEY": "sk-test"}
    done = subprocess.run([LLM, *args], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="session")
def llm_history(tmp_path_factory, openai_server):
    """llm's user directory, with one model of its own naming that litellm cannot know, after
    two conversations held with the real llm: one with a system prompt and a follow-up on
    OpenAI's gpt-4o-mini (by llm's alias), one on that model of the user's own configuration.
    Three runs of llm take seconds: they are held once per worker, and each test gets a copy."""
    home = tmp_path_factory.mktemp("llm-history")
    (home / "extra-openai-models.yaml").write_text(
        f"- model_id: shed-model\n  model_name: gpt-4o-mini\n  api_base: \"{openai_server.url}\"\n"
    )
    # Made before the test's own fixtures: the provider is named here as `isolated_env` names it.
    provider = {"OPENAI_BASE_URL": openai_server.url, "OPENAI_API_BASE": openai_server.url}
    openai_server.reset()
    openai_server.reply("Paris.", "Rome.", "Hello from the shed.")
    run_llm(home, "-m", "4o-mini", "-s", "Answer in one word.", "Capital of France?", env=provider)
    run_llm(home, "-c", "And of Italy?", env=provider)
    run_llm(home, "-m", "shed-model", "Hi shed", env=provider)
    openai_server.reset()
    return home


@pytest.fixture
def llm_home(tmp_path, llm_history, server):
    """The test's own copy of `llm_history`'s directory."""
    home = tmp_path / "llm-home"
    shutil.copytree(llm_history, home)
    return home


@pytest.fixture
def llm_logs_db(llm_home):
    """llm's logs database in the test's `llm_home`, with `llm_history`'s two conversations."""
    return llm_home / "logs.db"


def by_title(memory) -> dict:
    return {thread.title: thread for thread in memory.threads()}


def test_llm_conversations_become_threads_with_their_model_times_and_tokens(memchat, memory, llm_logs_db, server):
    result = memchat("import", "--from", "llm", str(llm_logs_db))
    assert result.returncode == 0, result.stderr
    made = result.stdout.split()
    assert len(made) == 2
    threads = by_title(memory)
    france = threads["Capital of France?"]
    assert set(made) == {france.id, threads["Hi shed"].id}
    assert (france.model, france.system) == ("openai/gpt-4o-mini", "Answer in one word.")
    messages = memory.messages(france.id)
    assert [(m.role, m.content) for m in messages] == [
        ("user", "Capital of France?"), ("assistant", "Paris."), ("user", "And of Italy?"), ("assistant", "Rome."),
    ]
    reply = messages[1]
    assert (reply.model, reply.prompt_tokens, reply.completion_tokens) == ("openai/gpt-4o-mini", 21, 5)
    assert reply.latency_ms is not None and messages[0].created_at <= reply.created_at <= messages[2].created_at
    # the model llm knows by the user's own name: kept on the reply, the thread on the default, and said
    shed = threads["Hi shed"]
    assert shed.model is None and memory.messages(shed.id)[1].model == "shed-model"
    assert "model 'shed-model' (1 thread): no litellm name for it is certain" in result.stderr
    # the thread goes on in memchat from where llm left it
    server.reply("Madrid.")
    memory.say(france.id, "And of Spain?")
    assert [m["content"] for m in server.last_messages] == [
        "Answer in one word.", "Capital of France?", "Paris.", "And of Italy?", "Rome.", "And of Spain?",
    ]


def test_importing_the_same_llm_history_again_copies_nothing(memchat, memory, llm_home, llm_logs_db, server):
    first = memchat("import", "--from", "llm", str(llm_logs_db))
    server.reply("Berlin.")
    run_llm(llm_home, "-m", "4o-mini", "Capital of Germany?")
    again = memchat("import", "--from", "llm", str(llm_logs_db))
    assert again.returncode == 0, again.stderr
    [new] = again.stdout.split()
    assert memory.thread(new).title == "Capital of Germany?"
    assert len(memory.threads()) == 3
    for thread_id in first.stdout.split():
        assert f"was imported before, as thread {thread_id}: left as it is" in again.stderr
    assert memory.thread(new).source.startswith("llm:")
    assert f"imported from {memory.thread(new).source}" in memchat("show", new).stdout
    # the source travels with an export, so importing that export here makes no copy either
    exported = memory.export(new)
    assert exported["source"] == memory.thread(new).source
    result = memory.import_(json.dumps(exported))
    assert result.threads == [] and result.existing == [(exported["source"], new)]


def test_an_llm_fork_becomes_a_memchat_fork_and_tool_calls_are_reported(memchat, memory, llm_logs_db):
    pytest.importorskip("llm.logs", reason="llm's message store (llm 0.36 and later) makes forks")
    import sqlite_utils
    from llm.logs import LogStore
    from llm.parts import ToolCallPart, assistant, user

    store = LogStore(sqlite_utils.Database(llm_logs_db))
    [origin] = list(store.db.query("SELECT id, tip_message_hash FROM threads WHERE name = 'Capital of France?'"))
    chain, tip = [], origin["tip_message_hash"]
    while tip is not None:
        [row] = list(store.db.query("SELECT hash, parent_hash, role FROM messages WHERE hash = ?", [tip]))
        chain.insert(0, row)
        tip = row["parent_hash"]
    first_reply = next(row["hash"] for row in chain if row["role"] == "assistant")
    fork = store.fork(first_reply, name="France, again", forked_from=origin["id"])
    store.append(fork, [user("Its population?"), assistant(ToolCallPart(name="lookup", arguments={"q": "Paris"})),
                        assistant("About two million.")])
    result = memchat("import", "--from", "llm", str(llm_logs_db))
    assert result.returncode == 0, result.stderr
    threads = by_title(memory)
    copy, original = threads["France, again"], threads["Capital of France?"]
    assert (copy.forked_from, copy.forked_at) == (original.id, 1)
    assert [m.content for m in memory.messages(copy.id)] == [
        "Capital of France?", "Paris.", "Its population?", "About two million.",
    ]
    assert f"llm thread {fork}: 1 tool calls with no result left out" in result.stderr


def test_llm_tool_calls_results_reasoning_and_attachments_become_items(memchat, memory, llm_logs_db):
    pytest.importorskip("llm.logs", reason="llm's message store (llm 0.36 and later)")
    import sqlite_utils
    from llm import Attachment
    from llm.logs import LogStore
    from llm.parts import ReasoningPart, ToolCallPart, ToolResultPart, assistant, tool_message, user

    photo = b"\x89PNG\r\n\x1a\n" + b"paris" * 40
    chart = b"\x89PNG\r\n\x1a\n" + b"chart" * 40
    store = LogStore(sqlite_utils.Database(llm_logs_db))
    thread = store.create_thread(name="Weather with tools")
    store.append(thread, [
        user("What is the weather where this was taken?", Attachment(type="image/png", content=photo)),
        assistant(ReasoningPart(text="It looks like Paris."),
                  ToolCallPart(name="weather", arguments={"city": "Paris"}, tool_call_id="call_w1"),
                  ToolCallPart(name="chart", arguments={}, tool_call_id="call_c1")),
        tool_message(ToolResultPart(name="weather", output="sunny, 21 C", tool_call_id="call_w1"),
                     ToolResultPart(name="chart", output="", tool_call_id="call_c1", exception="no data",
                                    attachments=[Attachment(type="image/png", content=chart)])),
        assistant("Sunny in Paris."),
    ])
    result = memchat("import", "--from", "llm", str(llm_logs_db))
    assert result.returncode == 0, result.stderr
    assert f"llm thread {thread}" not in result.stderr
    items = memory.messages(by_title(memory)["Weather with tools"].id)
    assert [(m.role, m.kind, m.content) for m in items] == [
        ("user", "message", "What is the weather where this was taken?"),
        ("assistant", "reasoning", "It looks like Paris."),
        ("assistant", "function_call", 'weather({"city": "Paris"})'),
        ("assistant", "function_call", "chart({})"),
        ("tool", "function_call_output", "sunny, 21 C"),
        ("tool", "function_call_output", "error: no data"),
        ("assistant", "message", "Sunny in Paris."),
    ]
    assert [(m.call_id, m.name, m.arguments) for m in items[2:4]] == [
        ("call_w1", "weather", '{"city": "Paris"}'), ("call_c1", "chart", "{}"),
    ]
    assert (items[4].call_id, items[5].call_id) == ("call_w1", "call_c1")
    [image] = [part for part in items[0].parts if part["type"] == "image"]
    [drawn] = [part for part in items[5].parts if part["type"] == "image"]
    assert memory.blobs([image["blob"], drawn["blob"]]) == {
        image["blob"]: ("image/png", photo), drawn["blob"]: ("image/png", chart),
    }


def test_a_missing_or_foreign_database_is_refused_with_nothing_stored(memchat, memory, tmp_path):
    missing = memchat("import", "--from", "llm", str(tmp_path / "nowhere.db"))
    assert (missing.returncode, missing.stdout) == (2, "")
    assert "no llm logs database at" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    import sqlite3

    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (text)")
    refused = memchat("import", "--from", "llm", str(other))
    assert refused.returncode == 2 and "is not an llm logs database" in refused.stderr
    assert memory.threads() == []


def test_llm_is_found_where_llm_keeps_it(llm_home, llm_logs_db, monkeypatch):
    monkeypatch.setenv("LLM_USER_PATH", str(llm_home))
    assert llm_logs.default_path() == llm_logs_db
    assert len(llm_logs.read().threads) == 2


@pytest.mark.parametrize(
    ("llm_name", "litellm_name"),
    [("gpt-4o", "openai/gpt-4o"), ("4o", "openai/gpt-4o"), ("o3-mini", "openai/o3-mini"),
     ("gemini-1.5-pro-latest", "gemini/gemini-1.5-pro-latest"),
     ("anthropic/claude-3-5-sonnet-latest", "anthropic/claude-3-5-sonnet-latest"),
     ("llama3.2:latest", "llama3.2:latest"), ("claude-3.5-sonnet", "claude-3.5-sonnet")],
)
def test_model_names_map_only_where_unambiguous(llm_name, litellm_name):
    assert llm_logs.litellm_model(llm_name) == litellm_name


def jsonl(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def test_openai_jsonl_lines_become_threads_and_again_copy_nothing(memchat, memory, tmp_path):
    path = jsonl(
        tmp_path,
        {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi there"},
                      {"role": "assistant", "content": "Hello!", "weight": 1}]},
        "",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                                   {"type": "image_url", "image_url": {"url": PNG_URL}},
                                                   {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]},
                      {"role": "assistant", "content": None, "tool_calls": [
                          {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": '{"at": 1}'}}]},
                      {"role": "tool", "content": "a cat", "tool_call_id": "call_1"},
                      {"role": "assistant", "content": "A cat."}]},
        {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi there"},
                      {"role": "assistant", "content": "Hello!", "weight": 1}]},
    )
    result = memchat("import", "--from", "openai-jsonl", str(path))
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split()
    kind = memory.thread(first)
    assert (kind.title, kind.system) == ("Hi there", "Be kind.")
    assert [(m.role, m.content) for m in memory.messages(first)] == [("user", "Hi there"), ("assistant", "Hello!")]
    items = memory.messages(second)
    assert [(m.role, m.kind, m.content) for m in items] == [
        ("user", "message", "What is this?"),
        ("assistant", "function_call", 'look({"at": 1})'),
        ("tool", "function_call_output", "a cat"),
        ("assistant", "message", "A cat."),
    ]
    assert (items[1].call_id, items[1].name, items[1].arguments, items[2].call_id) == (
        "call_1", "look", '{"at": 1}', "call_1")
    image = items[0].parts[1]
    assert (image["type"], image["media_type"], image["size"]) == ("image", "image/png", len(PNG))
    assert memory.blobs([image["blob"]]) == {image["blob"]: ("image/png", PNG)}
    for note in ("line 3: 1 input_audio parts left out", "line 4: the same conversation as line 1"):
        assert note in result.stderr
    assert "tool" not in result.stderr
    again = memchat("import", "--from", "openai-jsonl", str(path))
    assert (again.returncode, again.stdout) == (0, "")
    assert again.stderr.count("was imported before") == 2 and len(memory.threads()) == 2


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("messages", "named"),
    [
        ([{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_9", "content": "x"}],
         "line 2: messages[1] is a tool message answering no call before it (tool_call_id call_9)"),
        ([{"role": "user", "content": "hi"},
          {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                "function": {"name": "f", "arguments": "{}"}}]},
          {"role": "user", "content": "well?"}],
         "line 2: messages[1] calls c1, and no tool message answers it before messages[2]"),
        ([{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f"}}]}],
         "line 2: messages[0].tool_calls[0].function.arguments"),
    ],
)
def test_a_tool_message_out_of_place_refuses_the_whole_jsonl(memchat, memory, tmp_path, messages, named):
    path = jsonl(tmp_path, {"messages": [{"role": "user", "content": "fine"}]}, {"messages": messages})
    refused = memchat("import", "--from", "openai-jsonl", str(path))
    assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
    assert named in refused.stderr and "nothing was imported" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and memory.threads() == []


def test_a_bad_jsonl_line_refuses_the_whole_file(memchat, memory, tmp_path):
    path = jsonl(tmp_path, {"messages": [{"role": "user", "content": "fine"}]}, "{not json")
    refused = memchat("import", "--from", "openai-jsonl", str(path))
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith("memchat: import: line 2 is not JSON")
    with pytest.raises(InvalidInput, match='line 1 is not a {"messages": \\[...\\]} object'):
        openai_jsonl.read(jsonl(tmp_path, [1, 2]))
    assert memory.threads() == []


@pytest.mark.isolation
def test_imports_through_a_server_are_the_callers_own(memchat, memory, tmp_path):
    from serving import Served

    from memchat import Memory

    path = jsonl(tmp_path, {"messages": [{"role": "user", "content": "Mine"}, {"role": "assistant", "content": "Yes."}]})
    with Memory() as operator:
        keys = [operator.create_key(name) for name in ("ann", "bob")]
    served = Served()
    try:
        def through(key: str) -> subprocess.CompletedProcess:
            env = {"MEMCHAT_DB": "/nonexistent/never-opened.db", "MEMCHAT_API_KEY": key}
            return memchat("--server", served.url, "import", "--from", "openai-jsonl", str(path), env=env)

        [ann] = through(keys[0]).stdout.split()
        [bob] = through(keys[1]).stdout.split()  # another tenant's copy: its own thread
        again = through(keys[0])
        assert again.stdout == "" and f"as thread {ann}" in again.stderr
    finally:
        served.stop()
    assert {memory.thread(ann).tenant, memory.thread(bob).tenant} == {"ann", "bob"}


def node(node_id, parent, children, role=None, text=None, *, kind="text", parts=None, when=None, **extra):
    """A node of a ChatGPT export's `mapping`, as the export writes it (`message` null for the root)."""
    message = None
    if role is not None:
        content = {"content_type": kind, "parts": parts if parts is not None else [text]}
        if kind not in ("text", "multimodal_text"):
            content = {"content_type": kind, **extra.pop("content", {})}
        message = {
            "id": node_id, "author": {"role": role, "name": None, "metadata": {}}, "create_time": when,
            "content": content, "status": "finished_successfully", "recipient": extra.pop("recipient", "all"),
            "metadata": extra.pop("metadata", {}),
        }
    return node_id, {"id": node_id, "message": message, "parent": parent, "children": children}


T0 = 1_714_000_000.0
TRIP = {
    "title": "Trip to Lisbon", "conversation_id": "c-trip", "create_time": T0, "update_time": T0 + 60,
    "current_node": "a2",
    "mapping": dict([
        node("root", None, ["sys"]),
        node("sys", "root", ["ctx"], "system", "", metadata={"is_visually_hidden_from_conversation": True}),
        node("ctx", "sys", ["u1"], "user", kind="user_editable_context",
             content={"user_profile": "I am vegetarian.", "user_instructions": "Be brief."},
             metadata={"is_visually_hidden_from_conversation": True}),
        node("u1", "ctx", ["a1", "a1b"], "user", "Where should I go in May?", when=T0 + 1),
        node("a1", "u1", ["u2", "u2b"], "assistant", "Lisbon.", when=T0 + 2, metadata={"model_slug": "gpt-4o"}),
        node("a1b", "u1", [], "assistant", "Porto.", when=T0 + 3, metadata={"model_slug": "gpt-4o"}),
        node("u2", "a1", ["call"], "user", kind="multimodal_text", when=T0 + 10,
             parts=[{"content_type": "image_asset_pointer", "asset_pointer": "file-service://photo"}, "What is this tram?"]),
        node("call", "u2", ["out"], "assistant", kind="code", recipient="python",
             content={"language": "python", "text": "look(photo)"}),
        node("out", "call", ["out2"], "tool", kind="execution_output", content={"text": "tram 28"}),
        node("out2", "out", ["a2"], "tool", "It is the 28."),
        node("a2", "out2", [], "assistant", "Tram 28.", when=T0 + 12, metadata={"model_slug": "gpt-4o"}),
        node("u2b", "a1", ["a2b"], "user", "How do trams work?", when=T0 + 20),
        node("a2b", "u2b", [], "assistant", "On rails.", when=T0 + 21, metadata={"model_slug": "gpt-4o"}),
    ]),
}
THOUGHTFUL = {
    "title": "Riddle", "id": "c-riddle", "create_time": T0 + 100, "current_node": "r2",
    "mapping": dict([
        node("q", None, ["t"], "user", "What has keys but no locks?", when=T0 + 100),
        node("t", "q", ["r2"], "assistant", kind="thoughts", content={"thoughts": [{"content": "piano..."}]}),
        node("r2", "t", [], "assistant", "A piano.", when=T0 + 102, metadata={"model_slug": "o3"}),
    ]),
}
EMPTY = {"title": "Nothing", "id": "c-empty", "current_node": "root", "mapping": dict([node("root", None, [])])}


TRAM_PNG = b"\x89PNG\r\n\x1a\n" + b"tram" * 64


def chatgpt_export(tmp_path: Path, form: str, *, images: bool = True) -> Path:
    """The export as ChatGPT makes it: conversations, and the files of their images named by file id."""
    import zipfile

    if form == "zip":
        path = tmp_path / "chatgpt-export.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("conversations.json", json.dumps([TRIP, THOUGHTFUL, EMPTY]))
            archive.writestr("chat.html", "<html></html>")
            if images:
                archive.writestr("user-abc/photo-IMG_2041.png", TRAM_PNG)
        return path
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "conversations-000.json").write_text(json.dumps([TRIP, EMPTY]))
    (folder / "conversations-001.json").write_text(json.dumps([THOUGHTFUL]))
    (folder / "user.json").write_text("{}")
    if images:
        (folder / "photo-IMG_2041.png").write_bytes(TRAM_PNG)
    return folder


@pytest.mark.parametrize("form", ["zip", "folder"])
def test_a_chatgpt_export_keeps_every_branch_as_a_fork(memchat, memory, tmp_path, form):
    export = chatgpt_export(tmp_path, form)
    result = memchat("import", "--from", "chatgpt", str(export))
    assert result.returncode == 0, result.stderr
    threads = by_title(memory)
    assert set(threads) == {"Trip to Lisbon", "Trip to Lisbon (branch 1)", "Trip to Lisbon (branch 2)", "Riddle"}
    trip = threads["Trip to Lisbon"]
    assert (trip.system, trip.model, trip.source) == ("I am vegetarian.\n\nBe brief.", None, "chatgpt:c-trip")
    said = memory.messages(trip.id)
    assert [(m.role, m.kind, m.content) for m in said] == [
        ("user", "message", "Where should I go in May?"), ("assistant", "message", "Lisbon."),
        ("user", "message", "What is this tram?"),
        ("assistant", "function_call", 'python({"code": "look(photo)"})'),
        ("tool", "function_call_output", "tram 28\n\nIt is the 28."),
        ("assistant", "message", "Tram 28."),
    ]
    call, output = said[3], said[4]
    assert (call.name, call.arguments, output.call_id) == ("python", '{"code": "look(photo)"}', call.call_id)
    photo = said[2].parts[0]
    assert [part["type"] for part in said[2].parts] == ["image", "text"]
    assert memory.blobs([photo["blob"]]) == {photo["blob"]: ("image/png", TRAM_PNG)}
    assert said[1].model == "gpt-4o" and said[0].created_at.timestamp() == T0 + 1
    regenerated, edited = threads["Trip to Lisbon (branch 1)"], threads["Trip to Lisbon (branch 2)"]
    assert (regenerated.forked_from, regenerated.forked_at) == (trip.id, 0)
    assert [m.content for m in memory.messages(regenerated.id)] == ["Where should I go in May?", "Porto."]
    assert (edited.forked_from, edited.forked_at) == (trip.id, 1)
    assert [m.content for m in memory.messages(edited.id)] == [
        "Where should I go in May?", "Lisbon.", "How do trams work?", "On rails.",
    ]
    assert [(m.role, m.content) for m in memory.messages(threads["Riddle"].id)] == [
        ("user", "What has keys but no locks?"), ("assistant", "A piano."),
    ]
    assert "c-trip" not in result.stderr
    for note in ("ChatGPT conversation c-riddle: 1 reasoning summaries left out",
                 "ChatGPT conversation c-empty: no message with text; not imported"):
        assert note in result.stderr
    again = memchat("import", "--from", "chatgpt", str(export))
    assert (again.returncode, again.stdout) == (0, "") and again.stderr.count("was imported before") == 4
    assert len(memory.threads()) == 4


def test_a_chatgpt_image_missing_from_the_export_is_named_in_one_line(tmp_path):
    history = chatgpt.read(chatgpt_export(tmp_path, "zip", images=False))
    (trip,) = [thread for thread in history.threads if thread["source"] == "chatgpt:c-trip"]
    assert trip["messages"][2] == {"role": "user", "content": "What is this tram?", "created_at": trip["messages"][2]["created_at"]}
    assert "blobs" not in trip
    assert [note for note in history.notes if "c-trip" in note] == [
        "ChatGPT conversation c-trip: 1 image not in the export (photo); the messages are kept without them"
    ]


def test_chatgpt_tool_results_with_no_call_and_calls_with_no_result_are_left_out_and_counted(tmp_path):
    conversation = {
        "title": "Tools", "id": "c-tools", "current_node": "a",
        "mapping": dict([
            node("q", None, ["r"], "user", "Search this.", when=T0),
            node("r", "q", ["c"], "tool", kind="tether_quote", content={"title": "T", "url": "https://x", "text": "q"}),
            node("c", "r", ["a"], "assistant", '{"query": "x"}', recipient="browser"),
            node("a", "c", [], "assistant", "Found nothing.", when=T0 + 1),
        ]),
    }
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([conversation]))
    history = chatgpt.read(path)
    assert [(m["role"], m["content"]) for m in history.threads[0]["messages"]] == [
        ("user", "Search this."), ("assistant", "Found nothing."),
    ]
    assert history.notes == [
        "ChatGPT conversation c-tools: 1 tool calls with no result left out",
        "ChatGPT conversation c-tools: 1 tool results with no tool call before them left out",
    ]


def test_a_file_that_is_no_chatgpt_export_is_refused_whole(memchat, memory, tmp_path):
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([TRIP, {"title": "broken"}]))
    refused = memchat("import", "--from", "chatgpt", str(path))
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == "memchat: import: conversations.json: conversation 2 has no `mapping`; nothing was imported\n"
    path.write_text('{"not": "a list"}')
    assert "is not a ChatGPT export" in memchat("import", "--from", "chatgpt", str(path)).stderr
    assert memory.threads() == []


def test_a_broken_message_tree_skips_that_conversation_only(memchat, memory, tmp_path):
    looped = {"title": "Loop", "id": "c-loop", "current_node": "x",
              "mapping": dict([node("x", "y", [], "user", "hi"), node("y", "x", ["x"], "assistant", "ho")])}
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([looped, THOUGHTFUL]))
    result = memchat("import", "--from", "chatgpt", str(path))
    assert result.returncode == 0, result.stderr
    assert [t.title for t in memory.threads()] == ["Riddle"]
    assert "ChatGPT conversation c-loop: its message tree is broken at node x; not imported" in result.stderr


def test_llms_older_layout_is_read_and_a_conversation_in_both_is_read_once(memory, llm_logs_db):
    """llm up to 0.2x logged `responses` rows grouped by `conversations`: the tables come from the
    real llm's own migrations, the rows as those versions wrote them (prompt, system, response,
    model, tokens, duration, UTC time; `-f` fragments linked apart)."""
    import sqlite_utils

    database = sqlite_utils.Database(llm_logs_db)
    [(newer_id,)] = database.execute("SELECT id FROM threads WHERE name = 'Hi shed'").fetchall()
    database["conversations"].insert_all([{"id": "old1", "name": "Old chat", "model": "gpt-3.5-turbo"},
                                          {"id": newer_id, "name": "Hi shed", "model": "shed-model"}])
    rows = [
        {"id": "r1", "model": "gpt-3.5-turbo", "prompt": "Name a colour", "system": "Be short.", "response": "Blue.",
         "conversation_id": "old1", "duration_ms": 640, "datetime_utc": "2024-03-01T10:00:00.000000",
         "input_tokens": 12, "output_tokens": 2},
        {"id": "r2", "model": "gpt-3.5-turbo", "prompt": "Another", "system": "Be short.", "response": "Red.",
         "conversation_id": "old1", "duration_ms": 500, "datetime_utc": "2024-03-01T10:01:00.000000"},
        {"id": "r3", "model": "shed-model", "prompt": "Hi shed", "response": "Hello from the shed.",
         "conversation_id": newer_id, "datetime_utc": "2024-03-02T10:00:00"},
    ]
    database["responses"].insert_all(rows, alter=False)
    fragment = database["fragments"].insert({"hash": "h", "content": "Context: paint."}).last_pk
    database["prompt_fragments"].insert({"response_id": "r2", "fragment_id": fragment, "order": 0})
    history = llm_logs.read(llm_logs_db)
    assert sorted(thread["title"] for thread in history.threads) == ["Capital of France?", "Hi shed", "Old chat"]
    old = next(thread for thread in history.threads if thread["title"] == "Old chat")
    assert (old["source"], old["system"], old["model"]) == ("llm:old1", "Be short.", "openai/gpt-3.5-turbo")
    assert [(m["role"], m["content"]) for m in old["messages"]] == [
        ("user", "Name a colour"), ("assistant", "Blue."), ("user", "Context: paint.\nAnother"), ("assistant", "Red."),
    ]
    assert old["messages"][1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 2}
    assert old["messages"][1]["latency_ms"] == 640 and old["messages"][0]["created_at"].startswith("2024-03-01T10:00:00")
    made = memory.import_(history.threads).threads
    assert by_title(memory)["Old chat"].id in made and len(made) == 3


def test_the_import_size_limit_holds_for_other_tools_histories_too(memchat, memory, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMCHAT_IMPORT_MAX_MIB", "1")
    big = "x" * (2 * 2**20)
    path = jsonl(tmp_path, {"messages": [{"role": "user", "content": big}]})
    with pytest.raises(InvalidInput, match="over the 1 MiB limit"):
        openai_jsonl.read(path)
    export = chatgpt_export(tmp_path, "zip")
    import zipfile

    with zipfile.ZipFile(export, "a") as archive:
        archive.writestr("conversations-001.json", json.dumps([{"title": big, "mapping": {}}]))
    refused = memchat("import", "--from", "chatgpt", str(export))
    assert (refused.returncode, refused.stdout) == (2, "") and "over the 1 MiB limit" in refused.stderr
    assert memory.threads() == []


@pytest.mark.bad_input
@sqlite_only
@pytest.mark.parametrize("origin", ["chatgpt", "openai-jsonl"])
def test_json_nested_too_deeply_is_refused_in_one_line(memchat, memory, tmp_path, origin):
    path = tmp_path / ("conversations.json" if origin == "chatgpt" else "deep.jsonl")
    path.write_text("[" * 200_000 + "]" * 200_000 + "\n")
    done = memchat("import", "--from", origin, str(path))
    assert done.returncode == 2, done.stderr
    assert "nested too deeply" in done.stderr and len(done.stderr.splitlines()) == 1
    assert memory.threads() == []


def _zip_with_lying_header(path: Path, inflated: int, declared: int) -> Path:
    """A ChatGPT export zip whose one member inflates to `inflated` bytes while its headers
    (local and central) say `declared`: what a zip bomb does to a check of declared sizes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations.json", b"[" + b" " * (inflated - 2) + b"]")
    raw = bytearray(path.read_bytes())
    assert raw[:4] == b"PK\x03\x04"
    struct.pack_into("<I", raw, 22, declared)
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, declared)
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.bad_input
@sqlite_only
def test_a_zip_inflating_past_what_its_headers_say_is_refused_in_flat_memory(memchat, memory, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMCHAT_IMPORT_MAX_MIB", "1")
    bomb = _zip_with_lying_header(tmp_path / "export.zip", inflated=48 * 2**20, declared=1000)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match=r"^import: cannot read .*export\.zip: "):
            chatgpt.read(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20
    refused = memchat("import", "--from", "chatgpt", str(bomb))
    assert (refused.returncode, refused.stdout) == (2, "") and len(refused.stderr.splitlines()) == 1
    assert memory.threads() == []


def _damage_llm_logs(database: Path, damage: str) -> None:
    """Break llm's logs database as a crash, a bad disk or a hand edit might."""
    import sqlite3

    with sqlite3.connect(database) as connection:
        [(thread, tip)] = connection.execute("SELECT id, tip_message_hash FROM threads WHERE name = 'Capital of France?'")
        first = tip
        while (parent := connection.execute("SELECT parent_hash FROM messages WHERE hash = ?", [first]).fetchone()[0]):
            first = parent
        statement, values = {
            "cycle": ("UPDATE messages SET parent_hash = ? WHERE hash = ?", [tip, first]),
            "missing parent": ("UPDATE messages SET parent_hash = 'no-such-message' WHERE hash = ?", [first]),
            "forked from itself": ("UPDATE threads SET forked_from = id WHERE id = ?", [thread]),
            "bytes for text": ("UPDATE parts SET text = CAST(text AS BLOB) WHERE message_hash = ?", [tip]),
        }.get(damage, (None, None))
        if statement:
            connection.execute(statement, values)
        [(root,)] = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'messages'")
        size = connection.execute("PRAGMA page_size").fetchone()[0]
    if damage == "corrupt page":
        raw = bytearray(database.read_bytes())
        raw[(root - 1) * size : root * size] = b"\xff" * size
        database.write_bytes(bytes(raw))


@pytest.mark.bad_input
@sqlite_only
@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ("cycle", "(a cycle)"),
        ("missing parent", "message no-such-message, the parent of message"),
        ("forked from itself", "is forked from itself"),
        ("bytes for text", "holds bytes where llm writes text"),
        ("corrupt page", "malformed"),
    ],
)
def test_a_damaged_llm_database_is_refused_saying_what_is_wrong(memchat, memory, llm_logs_db, damage, said):
    pytest.importorskip("llm.logs", reason="llm's message store (llm 0.36 and later)")
    _damage_llm_logs(llm_logs_db, damage)
    refused = memchat("import", "--from", "llm", str(llm_logs_db))
    assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
    assert said in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert memory.threads() == []
