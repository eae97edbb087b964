"""Export format, round trips, and all-or-nothing import."""

import json
import re

import litellm
import pytest

from memchat import InvalidInput
from memchat.tokens import tokenizer_for


@pytest.fixture
def conversation(memory, server):
    thread = memory.new_thread(title="Trip", system="You plan trips.", model="openai/gpt-4o-mini", budget=3000)
    server.reply("Lisbon is lovely.", "Take the tram.")
    memory.say(thread.id, "Where to go in May?")
    memory.say(thread.id, "How to get around?")
    return thread


def test_export_shape(memory, conversation):
    data = memory.export(conversation.id)
    assert set(data) == {
        "id", "title", "model", "system", "budget", "created_at", "updated_at", "messages", "summaries", "source",
        "policy", "recall", "summary_model", "summary_share", "summary_prompt", "api_base", "labels", "forked_from",
    }
    assert data["summaries"] == [] and (data["policy"], data["recall"]) == ("window", 0)
    assert (data["id"], data["title"], data["model"], data["system"], data["budget"]) == (
        conversation.id,
        "Trip",
        "openai/gpt-4o-mini",
        "You plan trips.",
        3000,
    )
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("system", "You plan trips."),
        ("user", "Where to go in May?"),
        ("assistant", "Lisbon is lovely."),
        ("user", "How to get around?"),
        ("assistant", "Take the tram."),
    ]
    answer = data["messages"][2]
    assert answer["usage"] == {"prompt_tokens": 21, "completion_tokens": 5}
    assert answer["model"] == "openai/gpt-4o-mini"
    assert answer["tokens"] == {"o200k_base": tokenizer_for("openai/gpt-4o-mini").count("Lisbon is lovely.")}
    assert answer["latency_ms"] >= 0 and answer["created_at"].endswith("+00:00")
    json.dumps(data)


def test_exported_messages_go_straight_to_litellm(memory, server, conversation):
    chat = [{"role": m["role"], "content": m["content"]} for m in memory.export(conversation.id)["messages"]]
    response = litellm.completion(model="openai/gpt-4o-mini", messages=chat + [{"role": "user", "content": "ok?"}])
    assert response.choices[0].message.content
    assert server.last_messages[:-1] == chat


def test_export_import_export_keeps_the_conversation(memory, conversation):
    first = memory.export(conversation.id)
    (new_id,) = memory.import_(json.dumps(first)).threads
    assert new_id != conversation.id
    second = memory.export(new_id)
    for key in ("title", "model", "system", "budget", "created_at"):
        assert second[key] == first[key]
    strip = lambda data: [(m["role"], m["content"], m.get("usage")) for m in data["messages"]]  # noqa: E731
    assert strip(second) == strip(first)
    assert [m.get("created_at") for m in second["messages"]] == [m.get("created_at") for m in first["messages"]]


def test_streamed_export_is_the_same_json(memory, conversation):
    import io

    memory.new_thread(title="second")
    one, everything = io.StringIO(), io.StringIO()
    memory.write_export(one, conversation.id)
    memory.write_export(everything)
    assert json.loads(one.getvalue()) == memory.export(conversation.id)
    assert json.loads(everything.getvalue()) == memory.export_all()


def test_import_counts_tokens_with_the_thread_tokenizer(memory, conversation):
    exported = memory.export(conversation.id)
    exported["model"] = "openai/gpt-4"
    for message in exported["messages"]:
        message["tokens"] = {"o200k_base": 999_999}
    (new_id,) = memory.import_(exported).threads
    messages = memory.export(new_id)["messages"][1:]
    cl100k = tokenizer_for("openai/gpt-4")
    assert [m["tokens"] for m in messages] == [{"cl100k_base": cl100k.count(m["content"])} for m in messages]
    assert cl100k.name == "cl100k_base"


def test_export_all_and_import_an_array(memory, conversation):
    memory.new_thread(title="empty one")
    everything = memory.export_all()
    assert [t["title"] for t in everything] == ["empty one", "Trip"]
    ids = memory.import_(json.dumps(everything).encode()).threads
    assert len(ids) == 2
    assert len(memory.threads()) == 4


def test_a_minimal_chatml_thread_imports(memory):
    (thread_id,) = memory.import_(
        {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}]}
    ).threads
    thread = memory.thread(thread_id)
    assert thread.system == "Be kind." and thread.title == ""
    assert [(m.role, m.content, m.status) for m in memory.messages(thread_id)] == [("user", "hi", "complete")]


@pytest.mark.parametrize(
    "raw, problem",
    [
        (b'{"messages": [', "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"42", "expected an exported thread"),
        (b"[]", "no threads"),
        (b'{"title": "no messages"}', "messages: Field required"),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role"),
        (b'{"messages": [{"role": "user", "content": ["parts"]}]}', "messages[0].content"),
        (b'{"messages": [], "budget": -3}', "budget"),
        (b'[{"messages": []}, "oops"]', "thread 2: expected a JSON object"),
    ],
)
def test_bad_imports_are_refused_whole_with_one_line(memory, raw, problem):
    memory.new_thread(title="existing")
    with pytest.raises(InvalidInput) as caught:
        memory.import_(raw)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)
    assert [t.title for t in memory.threads()] == ["existing"]


def test_one_bad_thread_in_an_array_imports_none(memory, conversation):
    good = memory.export(conversation.id)
    bad = {**good, "messages": good["messages"] + [{"role": "user"}]}
    with pytest.raises(InvalidInput, match="thread 2"):
        memory.import_(json.dumps([good, bad]))
    assert len(memory.threads()) == 1


def test_every_field_survives_import_export_import(memory):
    moment = "2026-03-04T05:06:07+00:00"
    data = {
        "title": "All fields",
        "model": "openai/gpt-4o",
        "system": "Be exact.",
        "budget": 4321,
        "policy": "summary",
        "recall": 3,
        "summary_model": "openai/gpt-4o-mini",
        "summary_share": 0.3,
        "summary_prompt": "Condense in {max_words} words.",
        "api_base": "http://127.0.0.1:8000/v1",
        "created_at": moment,
        "updated_at": "2026-03-05T00:00:00+00:00",
        "messages": [
            {"role": "system", "content": "Be exact."},
            {"role": "user", "content": "one", "status": "complete", "created_at": moment},
            {
                "role": "assistant", "content": "two", "status": "complete", "created_at": moment,
                "model": "openai/gpt-4o", "usage": {"prompt_tokens": 11, "completion_tokens": 2},
                "cost": 0.00125, "latency_ms": 345,
            },
            {"role": "user", "content": "three", "status": "failed", "created_at": moment},
            {"role": "user", "content": "four", "status": "complete", "created_at": moment},
            {
                "role": "assistant", "content": "fi", "status": "partial", "created_at": moment,
                "model": "openai/gpt-4o", "usage": {"prompt_tokens": None, "completion_tokens": None},
                "cost": None, "latency_ms": None, "context_limit": 50,
            },
            {"role": "user", "content": "six", "status": "pending", "created_at": moment},
        ],
        "summaries": [
            {
                "first_position": 0, "last_position": 1, "content": "one, two", "model": "openai/gpt-4o-mini",
                "prompt": "Condense.", "usage": {"prompt_tokens": 40, "completion_tokens": 4}, "cost": 0.0001,
                "latency_ms": 12, "created_at": moment,
            }
        ],
    }
    (first,) = memory.import_(json.dumps(data)).threads
    exported = memory.export(first)
    for key, value in data.items():
        if key != "messages":
            assert exported[key] == value, key
    fields = ("role", "content", "status", "created_at", "model", "usage", "cost", "latency_ms", "context_limit")
    assert [{k: m[k] for k in fields if k in m} for m in exported["messages"]] == [
        {k: m[k] for k in fields if k in m} for m in data["messages"]
    ]
    (second,) = memory.import_(json.dumps(exported)).threads
    again = memory.export(second)
    assert {**again, "id": None} == {**exported, "id": None}


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("reply", "field"),
    [
        ({"usage": {"prompt_tokens": 2**63 - 1, "completion_tokens": 0}}, "usage.prompt_tokens"),
        ({"usage": {"prompt_tokens": 0, "completion_tokens": 2**31}}, "usage.completion_tokens"),
        ({"cost": 1e300}, "cost"),
        ({"latency_ms": 2**31}, "latency_ms"),
    ],
)
def test_imported_counts_too_large_to_sum_are_refused(memory, reply, field):
    """A count that fits a row on SQLite but not the totals over rows would make `memchat stats`,
    the thread list's usage and the server's /threads and /stats fail for the whole database."""
    most = 2**31 - 1
    largest = {"model": "openai/gpt-4o", "usage": {"prompt_tokens": most, "completion_tokens": most}, "cost": 1e9}
    kept = {"title": "big", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", **largest}]}
    memory.import_(json.dumps([kept, kept]))
    bad = {"title": "bad", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", **reply}]}
    with pytest.raises(InvalidInput, match=re.escape(f"messages[1].{field}: ")):
        memory.import_(json.dumps(bad))
    assert [thread.title for thread in memory.threads()] == ["big", "big"]
    (row,) = memory.stats()["turns"]
    assert (row["prompt_tokens"], row["completion_tokens"], row["cost"]) == (2 * most, 2 * most, 2e9)
    assert sum(usage["prompt_tokens"] for usage in memory.usage_totals().values()) == 2 * most


@pytest.mark.isolation
def test_an_imported_fork_keeps_its_link_only_to_a_thread_the_importer_may_see(memory, memchat, tmp_path):
    ann, bob = memory.as_tenant("ann"), memory.as_tenant("bob")
    hers, his = ann.new_thread(title="hers"), bob.new_thread(title="his")

    def fork_of(origin: str) -> dict:
        return {"title": "fork", "forked_from": {"thread": origin, "at": -1}, "messages": [{"role": "user", "content": "hi"}]}

    named = [hers.id, his.id, "0" * 32, hers.id[:8]]
    made = ann.import_(json.dumps([fork_of(origin) for origin in named]))
    assert [ann.thread(thread).forked_from for thread in made.threads] == [hers.id, None, None, None]
    assert [ann.thread(thread).forked_at for thread in made.threads] == [-1, None, None, None]
    assert made.unlinked == list(zip(made.threads[1:], named[1:]))
    path = tmp_path / "fork.json"
    path.write_text(json.dumps(fork_of("0" * 32)))
    done = memchat("import", str(path), timeout=120)
    assert done.returncode == 0, done.stderr
    (thread,) = done.stdout.split()
    assert done.stderr == (
        f"import: thread {thread} names '{'0' * 32}' as the thread it was forked from, which is no thread here: "
        "imported as a thread of its own\n"
    )
    assert memory.thread(thread).forked_from is None
