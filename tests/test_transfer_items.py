"""Agent threads through export and import: every item kind (function calls, their outputs,
reasoning) and every part (text, refusal, images and files as blobs or URLs) round-trips exactly
through memchat's JSON and its Markdown, blobs travel once per export with their hash checked,
and a tool output answering no call is refused whole."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memchat import InvalidInput
from memchat.transfer import markdown

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4\n" + b"hello " * 50
CONTENTS = {"image/png": PNG, "application/pdf": PDF, "image/jpeg": b"\xff\xd8\xff" + b"j" * 300}
ITEM_KEYS = ("role", "content", "status", "kind", "parts", "call_id", "name", "arguments", "item_id", "provider_data")

texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
) | st.sampled_from(["## #3 · user", "<!-- memchat-message {} -->", "```\ncode\n```", "→ image", "\n\n", "--"])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_of(media_type: str) -> dict:
    return {"blob": sha(CONTENTS[media_type]), "media_type": media_type, "size": len(CONTENTS[media_type])}


@st.composite
def parts(draw, *, files: bool = True):
    chosen = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["text", "refusal", "image", "image_url", "file", "file_url"] if files else ["text"])
        )
        if kind in ("text", "refusal"):
            chosen.append({"type": kind, "text": draw(texts)})
        elif kind == "image":
            media_type = draw(st.sampled_from(["image/png", "image/jpeg"]))
            chosen.append(
                {"type": "image", **blob_of(media_type), "detail": draw(st.sampled_from(["auto", "low", "original"]))}
            )
        elif kind == "image_url":
            chosen.append({"type": "image", "url": "https://example.com/a.png", "detail": "high"})
        elif kind == "file":
            chosen.append(
                {"type": "file", **blob_of("application/pdf"), "filename": draw(st.sampled_from(["a.pdf", "b c.pdf"]))}
            )
        else:
            chosen.append({"type": "file", "url": "https://example.com/b.pdf"})
    return chosen


def joined(given: list[dict]) -> str:
    return "\n".join(part["text"] for part in given if part["type"] in ("text", "refusal"))


@st.composite
def agent_threads(draw):
    """A thread of turns as an agent's would be stored: a user message (text or parts), maybe
    reasoning, then function calls each answered by its output, then a reply; some turns undone."""
    messages: list[dict] = []
    calls = 0
    for _ in range(draw(st.integers(1, 4))):
        status = draw(st.sampled_from(["complete", "complete", "undone"]))
        turn: list[dict] = []
        if draw(st.booleans()):
            given = draw(parts())
            turn.append({"role": "user", "content": joined(given), "parts": given})
        else:
            turn.append({"role": draw(st.sampled_from(["user", "developer", "system"])), "content": draw(texts)})
        if draw(st.booleans()):
            summary = draw(st.lists(texts, max_size=2))
            turn.append(
                {
                    "role": "assistant",
                    "kind": "reasoning",
                    "content": "\n\n".join(summary),
                    "item_id": f"rs_{calls}",
                    "provider_data": {
                        "family": draw(st.sampled_from(["openai", "anthropic", None])),
                        "encrypted_content": draw(st.one_of(st.none(), texts)),
                        "summary": summary,
                        "content": [],
                        "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}],
                    },
                }
            )
        made = []
        for _ in range(draw(st.integers(0, 2))):
            calls += 1
            call_id = f"call_{calls}"
            arguments = draw(st.sampled_from(['{"city": "Lisbon"}', '{ "a" : [1, 2] }', "{}"]))
            turn.append(
                {
                    "role": "assistant",
                    "kind": "function_call",
                    "content": f"get_weather({arguments})",
                    "call_id": call_id,
                    "name": "get_weather",
                    "arguments": arguments,
                    **({"item_id": f"fc_{calls}"} if draw(st.booleans()) else {}),
                }
            )
            made.append(call_id)
        for call_id in made:
            if draw(st.booleans()):
                given = draw(parts())
                turn.append(
                    {
                        "role": "tool",
                        "kind": "function_call_output",
                        "content": joined(given),
                        "parts": given,
                        "call_id": call_id,
                    }
                )
            else:
                turn.append(
                    {"role": "tool", "kind": "function_call_output", "content": draw(texts), "call_id": call_id}
                )
        if made or draw(st.booleans()):
            turn.append(
                {
                    "role": "assistant",
                    "content": draw(texts),
                    "model": "openai/gpt-4o",
                    **({"item_id": "msg_1"} if draw(st.booleans()) else {}),
                }
            )
        messages.extend({**item, "status": status} for item in turn)
    referenced = {part["blob"] for m in messages for part in m.get("parts") or () if "blob" in part}
    blobs = {
        sha(data): {"media_type": media_type, "data": base64.b64encode(data).decode()}
        for media_type, data in CONTENTS.items()
        if sha(data) in referenced
    }
    # positions, as an export gives its items: a leading system message is then an item, not the prompt
    messages = [{**message, "position": position} for position, message in enumerate(messages)]
    return {
        "title": draw(texts),
        "system": draw(st.one_of(st.none(), st.just("Use the tools."))),
        "messages": messages,
        "blobs": blobs,
    }


def items_of(exported: dict) -> list[tuple]:
    return [
        tuple(message.get(key, "message" if key == "kind" else None) for key in ITEM_KEYS)
        for message in exported["messages"]
        if "position" in message
    ]


def given_items(data: dict) -> list[tuple]:
    return [
        tuple(message.get(key, {"kind": "message", "status": "complete"}.get(key)) for key in ITEM_KEYS)
        for message in data["messages"]
    ]


def as_markdown(memory, thread_id: str | None) -> str:
    out = io.StringIO()
    memory.write_export(out, thread_id, format="markdown")
    return out.getvalue()


pytestmark = pytest.mark.sqlite_only
"""The format is under test; import and export are tested on both backends elsewhere."""


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=agent_threads())
def test_an_agent_thread_round_trips_exactly_through_json(memory, data):
    [thread_id] = memory.import_(json.dumps(data)).threads
    first = memory.export(thread_id)
    assert items_of(first) == given_items(data)
    assert first["blobs"] == data["blobs"] if data["blobs"] else "blobs" not in first
    streamed = io.StringIO()
    memory.write_export(streamed, thread_id)
    assert json.loads(streamed.getvalue()) == first
    [again] = memory.import_(streamed.getvalue()).threads
    second = memory.export(again)
    assert items_of(second) == items_of(first) and second.get("blobs") == first.get("blobs")
    assert [m.get("created_at") for m in second["messages"]] == [m.get("created_at") for m in first["messages"]]
    for part in (p for m in memory.messages(again) for p in m.parts or () if "blob" in p):
        assert memory.blobs([part["blob"]])[part["blob"]] == (part["media_type"], CONTENTS[part["media_type"]])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=agent_threads())
def test_an_agent_thread_round_trips_exactly_through_markdown(memory, data):
    [thread_id] = memory.import_(json.dumps(data)).threads
    first = as_markdown(memory, thread_id)
    [again] = memory.import_(markdown.parse(first)).threads
    assert as_markdown(memory, again) == first
    assert items_of(memory.export(again)) == items_of(memory.export(thread_id))


def test_a_real_agent_thread_reads_as_a_transcript_and_comes_back_whole(memory, server):
    from memchat.records import MessageCreate

    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    thread = memory.new_thread(system="Use the tools.", model="openai/gpt-4o-mini")
    [call] = server.reply_tool_calls(
        [{"name": "get_weather", "arguments": {"city": "Lisbon"}}], reasoning="Look it up."
    )
    photo = {"type": "image", "data": PNG, "media_type": "image/png", "detail": "auto"}
    memory.say(
        thread.id,
        None,
        items=[
            MessageCreate(
                role="user", content="Weather here?", parts=[{"type": "text", "text": "Weather here?"}, photo]
            )
        ],
        tools=tools,
    )
    server.reply("Sunny.")
    memory.send_tool_outputs(thread.id, {call.id: "sunny, 21 C"}, tools=tools)

    text = as_markdown(memory, thread.id)
    visible = [line for line in text.splitlines() if line and not line.startswith("<!-- memchat-")]
    short = sha(PNG)[:12]
    assert visible[visible.index("Weather here?") + 1] == (
        f"→ image (image/png, {len(PNG):,} bytes): [attachment {short}](#attachment-{short})"
    )
    headings = [line.split(" · ")[1:3] for line in visible if line.startswith("## #")]
    assert headings[:4] == [
        ["user", visible[visible.index("Weather here?") - 1].split(" · ")[2]],
        ["assistant", "reasoning"],
        ["assistant", f"call get_weather ({call.id})"],
        ["tool", f"output of {call.id}"],
    ]
    assert "## Attachments" in visible and f"### Attachment {short}" in visible

    [from_markdown] = memory.import_(markdown.parse(text)).threads
    [from_json] = memory.import_(json.dumps(memory.export(thread.id))).threads
    original = items_of(memory.export(thread.id))
    assert items_of(memory.export(from_markdown)) == original == items_of(memory.export(from_json))
    server.reply("Still sunny.")
    assert memory.say(from_json, "And now?").text == "Still sunny."
    assert server.last_messages[1]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert server.last_messages[2]["tool_calls"][0]["id"] == call.id


def test_export_all_carries_each_blob_once_and_imports_back(memory):
    image = [{"type": "text", "text": "see"}, {"type": "image", **blob_of("image/png"), "detail": "auto"}]
    blobs = {sha(PNG): {"media_type": "image/png", "data": base64.b64encode(PNG).decode()}}
    for title in ("one", "two"):
        memory.import_(
            {"title": title, "messages": [{"role": "user", "content": "see", "parts": image}], "blobs": blobs}
        )
    streamed = io.StringIO()
    memory.write_export(streamed)
    exported = json.loads(streamed.getvalue())
    assert exported == memory.export_all()
    assert [list(thread.get("blobs", {})) for thread in exported].count([sha(PNG)]) == 1
    assert streamed.getvalue().count(blobs[sha(PNG)]["data"]) == 1
    assert len(memory.import_(streamed.getvalue()).threads) == 2


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("messages", "blobs", "named"),
    [
        (
            [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_9", "content": "x"}],
            {},
            "messages[1]: No tool call found for function call output with call_id call_9.",
        ),
        (
            [
                {
                    "role": "assistant",
                    "kind": "function_call",
                    "content": "f({})",
                    "call_id": "c",
                    "name": "f",
                    "arguments": "{}",
                },
                {"role": "user", "content": "well?"},
            ],
            {},
            "messages[1]: No tool output found for function call c (messages[0])",
        ),
        (
            [
                {
                    "role": "assistant",
                    "kind": "function_call",
                    "content": "f",
                    "call_id": "c",
                    "name": "f",
                    "arguments": "{oops",
                }
            ],
            {},
            "messages[0]: a function_call's arguments are not JSON",
        ),
        (
            [{"role": "user", "content": "", "parts": [{"type": "image", **blob_of("image/png")}]}],
            {},
            f"messages[0].parts[0]: blob {sha(PNG)} is not in the import's `blobs`",
        ),
        (
            [{"role": "user", "content": "", "parts": [{"type": "image", **blob_of("image/png")}]}],
            {sha(PNG): {"media_type": "image/png", "data": base64.b64encode(PDF).decode()}},
            f"blobs.{sha(PNG)}: the data's SHA-256 is not the blob's name",
        ),
        ([{"role": "tool", "kind": "message", "content": "x"}], {}, "messages[0]: a message item has the role"),
    ],
)
def test_an_item_out_of_place_refuses_the_whole_import(memory, memchat, tmp_path, messages, blobs, named):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            [
                {"title": "fine", "messages": [{"role": "user", "content": "ok"}]},
                {"title": "bad", "messages": messages, "blobs": blobs},
            ]
        )
    )
    refused = memchat("import", str(path))
    assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
    assert "thread 2: " in refused.stderr and named in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert memory.threads() == []
    with pytest.raises(InvalidInput):
        memory.import_(path.read_text())
