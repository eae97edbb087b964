"""The context engine at scale: counts made once per tokenizer, reads bounded by the budget,
exact prompts whatever the stored counts say, offline tokenizers, and no litellm where no model is called."""

import json
import subprocess
import sys

import pytest
from helpers import sqlite_only
from sqlalchemy import text

from memchat import llm
from memchat.prompt import PAGE_SLACK, first_page
from memchat.tokens import FALLBACK_MARGIN, tokenizer_for


def long_thread(memory, messages: int, model: str = "openai/gpt-4o") -> str:
    chat = []
    for i in range(messages // 2):
        chat.append({"role": "user", "content": f"question {i}: " + "words " * (i % 7)})
        chat.append({"role": "assistant", "content": f"answer {i}: " + "more words " * (i % 5)})
    (thread_id,) = memory.import_({"title": "long", "model": model, "messages": chat}).threads
    return thread_id


def token_rows(memory, tokenizer: str) -> int:
    with memory.store.engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM message_tokens WHERE tokenizer = :t"), {"t": tokenizer}
        ).scalar()


def test_import_counts_every_message_once(memory):
    long_thread(memory, 1000)
    assert token_rows(memory, "o200k_base") == 1000


def test_a_turn_with_another_tokenizer_counts_only_what_it_reads(memory, server):
    thread = long_thread(memory, 4000)
    memory.say(thread, "and now?", model="openai/gpt-4", budget=300)
    first = token_rows(memory, "cl100k_base")
    assert 0 < first <= first_page(300) * (1 + 4 + 16)
    memory.say(thread, "again?", model="openai/gpt-4", budget=300)
    assert token_rows(memory, "cl100k_base") <= first + 2 + first_page(300)
    assert llm.counter("openai/gpt-4")(server.last_messages) <= 300


def test_the_first_page_follows_the_window_not_the_history(memory, server):
    """A warm process sizes a turn's first read of history by the messages its last context
    looked at; sized by the whole page read instead, it grew by a turn's worth every turn until
    each turn read the thread's whole history."""
    thread = long_thread(memory, 400)
    for n in range(8):
        reply = memory.say(thread, f"and then? {n}", budget=300)
    window = len(reply.context.entries) - 1
    assert 0 < window < 40
    assert first_page(300, memory.store.caches.pages_read.get(thread)) <= window + 2 + PAGE_SLACK  # the one that did not fit, a trimmed reply


def test_the_sent_prompt_is_exact_even_when_stored_counts_under_count(memory, server):
    thread = long_thread(memory, 600)
    with memory.store.engine.begin() as connection:
        connection.execute(text("UPDATE message_tokens SET tokens = 0"))
    reply = memory.say(thread, "what did I ask first?", budget=250)
    sent = server.last_messages
    assert llm.counter("openai/gpt-4o")(sent) == reply.context.prompt_tokens <= 250
    assert sent[0]["role"] == "user" and sent[-1]["content"] == "what did I ask first?"


def test_a_stand_in_tokenizer_holds_back_its_margin(memory, server):
    thread = long_thread(memory, 400, model="openai/llama-3-8b-instruct")
    preview = memory.context(thread, "hi", budget=1000)
    assert preview.tokenizer == "cl100k_base"
    assert preview.room == int(1000 * (1 - FALLBACK_MARGIN)) == 800
    reply = memory.say(thread, "hi", budget=1000)
    assert reply.context.prompt_tokens <= 800
    assert llm.counter("openai/llama-3-8b-instruct", tokenizer_for("openai/llama-3-8b-instruct"))(
        server.last_messages
    ) <= 800


@pytest.fixture
def cached_llama3_tokenizer(tmp_path, monkeypatch):
    """A Hugging Face hub cache holding a (tiny, word-level) tokenizer under llama 3's repository name."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[UNK]", "hello", "world", "my", "name", "is", "ada"]
    tokenizer = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    repo = tmp_path / "hub" / "models--Xenova--llama-3-tokenizer"
    snapshot = repo / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    tokenizer.save(str(snapshot / "tokenizer.json"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def test_a_cached_hugging_face_tokenizer_is_used_without_margin(cached_llama3_tokenizer, memory, server):
    chosen = tokenizer_for("ollama/llama3")
    assert (chosen.name, chosen.margin) == ("hf:Xenova/llama-3-tokenizer", 0)
    assert chosen.count("hello world my name is ada !") == 7
    thread = memory.new_thread(model="openai/llama-3-8b-instruct")
    reply = memory.say(thread.id, "hello world", budget=200)
    assert reply.context.tokenizer == "hf:Xenova/llama-3-tokenizer"
    assert reply.context.room == 200
    exported = memory.export(thread.id)["messages"]
    assert exported[0]["tokens"] == {"hf:Xenova/llama-3-tokenizer": 2}


def test_without_the_cache_the_same_model_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    chosen = tokenizer_for("ollama/llama3")
    assert (chosen.name, chosen.margin) == ("cl100k_base", FALLBACK_MARGIN)


@pytest.mark.parametrize(
    "model, name",
    [
        ("openai/gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("openai/gpt-4.1", "o200k_base"),
        ("openai/o3-mini", "o200k_base"),
        ("openai/gpt-4", "cl100k_base"),
        ("openai/gpt-3.5-turbo", "cl100k_base"),
        ("memchat/echo", "cl100k_base"),
    ],
)
def test_openai_models_get_their_own_encoding_exactly(model, name):
    chosen = tokenizer_for(model)
    assert (chosen.name, chosen.margin) == (name, 0)
    messages = [{"role": "user", "content": "Tokenizers differ: ünïcode, emoji 🙂, code `x += 1`."}]
    cost = llm.message_cost(llm.counter(model, chosen))
    assert cost("user", chosen.count(messages[0]["content"])) + llm.counter(model)([]) == llm.counter(model)(messages)


@pytest.mark.slow
def test_commands_that_call_no_model_never_import_litellm_or_the_server(db_url, tmp_path):
    export = tmp_path / "export.json"
    probe = f"""
import sys
from typer.testing import CliRunner
from memchat.cli import app
runner = CliRunner()
def run(*args, input=None, codes=(0,)):
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code in codes, (args, result.stdout, result.stderr)
    return result.stdout
thread = run("new", "--title", "t").strip()
run("new", "--model", "anthropic/claude-sonnet-4-5", "--recall-embeddings", "ollama/nomic-embed-text")
run("set", thread, "--model", "openai/a-model-not-yet-in-litellms-map"); run("config", "set", "model", "groq/llama3-8b")
run("list"); run("list", "--json"); run("show", thread); run("show", thread, "--json")
run("export", thread, "-o", {str(export)!r}); run("export", "--all")
run("import", {str(export)!r}); run("import", "-", input=open({str(export)!r}).read())
run("set", thread, "--policy", "summary", "--recall", "2"); run("summary", thread); run("summary", thread, "--prompt")
run("search", "t", "--json", codes=(1,))
run("rename", thread, "u"); run("rm", thread, "--yes"); run("db", "current"); run("db", "upgrade"); run("--help")
run("key", "list"); run("serve", "--help")
print(sorted(name for name in sys.modules if name.split(".")[0] in ("litellm", "fastapi", "uvicorn", "starlette")))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_export_of_a_long_thread_round_trips(memory):
    thread = long_thread(memory, 3000)
    exported = memory.export(thread)
    assert len(exported["messages"]) == 3000
    (copy,) = memory.import_(json.dumps(exported)).threads
    again = memory.export(copy)
    assert [(m["role"], m["content"]) for m in again["messages"]] == [
        (m["role"], m["content"]) for m in exported["messages"]
    ]


@sqlite_only
def test_the_reads_of_a_turn_do_not_grow_with_the_thread(memory):
    """SQLite's own count of the steps its statements run (deterministic, unlike a timing): a
    turn's context, a recall and a page of items on a 6,000-message thread take about what they
    take on a 300-message one, its own or inherited by a fork. Two ranges on one column once let
    SQLite read a thread's whole index for a window."""
    from sqlalchemy import event

    steps = [0]

    def count(connection, *_):
        connection.connection.driver_connection.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1), 100)

    event.listen(memory.store.engine, "before_cursor_execute", count)

    def middle(thread: str) -> int:
        return memory.thread(thread).message_count // 2

    def cost(thread: str) -> list[int]:
        spent = []
        for read in (
            lambda: memory.context(thread, "and then?", with_dropped=False, budget=2000),
            lambda: memory.context(thread, "7 zebra", with_dropped=False, recall=3, budget=2000),
            lambda: memory.store.message_page(thread, after=middle(thread), limit=10, newest_first=False),
            lambda: memory.store.message_page(thread, after=middle(thread), limit=10, newest_first=True),
            lambda: memory.store.completed_messages(thread, after=middle(thread), through=middle(thread) + 30, limit=20),
            lambda: memory.store.message_at(thread, middle(thread)),
            lambda: memory.messages(thread, last=4),
            lambda: memory.store.unanswered(thread),
        ):
            read()
            steps[0] = 0
            read()
            spent.append(steps[0])
        return spent

    short, long = long_thread(memory, 300), long_thread(memory, 6000)
    fork = memory.fork(long).id
    baseline = cost(short)
    for thread in (long, fork):
        assert all(n <= 2 * b + 50 for n, b in zip(cost(thread), baseline)), (cost(thread), baseline)
