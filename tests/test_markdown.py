"""memchat's Markdown: a transcript to read that imports back losslessly (export, import,
export gives the same file), whatever the messages hold."""

from __future__ import annotations

import io
import json
import os
import re
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memchat import InvalidInput
from memchat.transfer import markdown


def as_markdown(memory, thread_id: str | None) -> str:
    out = io.StringIO()
    memory.write_export(out, thread_id, format="markdown")
    return out.getvalue()


# Any text memchat stores, Markdown and memchat's own comment lines included.
tricky = st.sampled_from([
    "## #3 · user", "<!-- memchat-message {\"role\": \"user\", \"length\": 2} -->", "-->", "```python\nx = 1\n```",
    "\n\n", "\r\n", "> quoted", "# title", "🙂", "naïve", "\u2028", "  ", "--", "\t",
])
texts = st.lists(st.one_of(tricky, st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))),
                 max_size=6).map("".join)
moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2026, 1, 1)).map(lambda d: d.isoformat() + "+00:00")


@st.composite
def threads(draw):
    count = draw(st.integers(0, 12))
    messages = []
    for position in range(count):
        role = draw(st.sampled_from(["user", "assistant"]))
        status = draw(st.sampled_from(["complete", "undone", "partial", "failed"]))
        message = {"role": role, "content": draw(texts), "status": status, "created_at": draw(moments)}
        if role == "assistant":
            message.update(model=draw(st.sampled_from(["openai/gpt-4o", "memchat/echo", "weird\nname"])),
                           usage={"prompt_tokens": draw(st.integers(0, 9999)), "completion_tokens": None},
                           cost=draw(st.one_of(st.none(), st.floats(0, 1))), latency_ms=draw(st.integers(0, 10**6)))
        if draw(st.booleans()):
            message["context_limit"] = draw(st.integers(1, 200_000))
        messages.append(message)
    summaries = []
    if count and draw(st.booleans()):
        last = draw(st.integers(0, count - 1))
        summaries.append({"first_position": 0, "last_position": last, "content": draw(texts), "model": "m",
                          "prompt": draw(texts), "usage": {"prompt_tokens": 3, "completion_tokens": 4}, "cost": 0.5,
                          "latency_ms": 7, "created_at": draw(moments)})
    return {
        "title": draw(texts), "model": draw(st.one_of(st.none(), st.just("openai/gpt-4o"))),
        "system": draw(st.one_of(st.none(), texts.filter(lambda t: t.strip()))),
        "budget": draw(st.one_of(st.none(), st.integers(1, 10**6))), "policy": draw(st.sampled_from(["window", "summary"])),
        "recall": draw(st.integers(0, 20)), "summary_share": draw(st.one_of(st.none(), st.floats(0.05, 0.9))),
        "summary_prompt": draw(st.one_of(st.none(), texts)),
        "labels": draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(["a", "b--c", "é"]), texts, max_size=3))),
        "forked_from": draw(st.one_of(st.none(), st.builds(lambda at: {"thread": "abc123", "at": at}, st.integers(-1, 9)))),
        "created_at": draw(moments), "updated_at": draw(moments),
        "messages": messages, "summaries": summaries,
    }


pytestmark = pytest.mark.sqlite_only
"""One backend is enough: what is under test is the format, and import and export are tested on
both elsewhere."""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=threads())
def test_export_import_export_gives_the_same_markdown(memory, data):
    try:
        [thread_id] = memory.import_(data).threads
    except InvalidInput:
        return  # what the JSON import refuses (a label of bad text, say) never reaches Markdown
    first = as_markdown(memory, thread_id)
    [again] = memory.import_(markdown.parse(first)).threads
    assert as_markdown(memory, again) == first
    assert [m.content for m in memory.messages(again)] == [m.content for m in memory.messages(thread_id)]


def test_a_transcript_reads_as_one(memory, server):
    thread = memory.new_thread(title="Trip", system="You plan trips.\nBriefly.", model="openai/gpt-4o-mini", budget=3000)
    server.reply("Lisbon is lovely.", "Take the tram.")
    memory.say(thread.id, "Where to go in May?")
    memory.say(thread.id, "How to get around?")
    memory.undo(thread.id)
    text = as_markdown(memory, thread.id)
    visible = [line for line in text.splitlines() if not line.startswith("<!-- memchat-")]
    assert visible[:10] == [
        "# Trip", "", "- model: openai/gpt-4o-mini", "- system prompt:", "", "  > You plan trips.", "  > Briefly.", "",
        "- budget: 3,000 tokens", "- memory: window policy, recall 0",
    ]
    headings = [line for line in visible if line.startswith("## ")]
    assert [h.split(" · ")[:2] for h in headings] == [
        ["## #0", "user"], ["## #1", "assistant"], ["## #2", "user"], ["## #3", "assistant"],
    ]
    assert headings[1].endswith(" · openai/gpt-4o-mini")
    assert headings[3].endswith(" · undone (left out of the memory)")
    assert "Lisbon is lovely." in visible and "Take the tram." in visible


def test_the_cli_writes_and_reads_markdown_and_refuses_an_edited_file(memchat, memory, server, tmp_path):
    server.reply("Lisbon is lovely.")
    thread = memory.new_thread(title="Trip", model="openai/gpt-4o-mini")
    memory.say(thread.id, "Where to go in May?")
    path = tmp_path / "trip.md"
    written = memchat("export", thread.id, "--format", "markdown", "-o", str(path))
    assert written.returncode == 0, written.stderr
    imported = memchat("import", "--format", "markdown", str(path))
    assert imported.returncode == 0, imported.stderr
    [copy] = imported.stdout.split()
    assert memchat("export", copy, "--format", "markdown").stdout == path.read_text()
    both = memchat("export", "--all", "--format", "markdown").stdout
    assert [t["title"] for t in markdown.parse(both)] == ["Trip", "Trip"]
    path.write_text(path.read_text().replace("Lisbon is lovely.", "Lisbon is lovely!!"))
    edited = memchat("import", "--format", "markdown", str(path))
    assert (edited.returncode, edited.stdout) == (2, "")
    assert "of the Markdown has a text that is not the length its comment gives" in edited.stderr
    mixed = memchat("import", "--from", "llm", "--format", "markdown", str(tmp_path / "none.db"))
    assert mixed.returncode == 2 and "--format markdown reads memchat's own Markdown" in mixed.stderr
    not_markdown = memchat("import", "--format", "markdown", os.devnull)
    assert not_markdown.stderr.startswith("memchat: import: this is not memchat's Markdown")
    assert len(memory.threads()) == 2


def test_markdown_through_a_server_is_the_same_file(memchat, memory, server, tmp_path):
    from serving import Served

    server.reply("Lisbon is lovely.")
    thread = memory.new_thread(title="Trip", model="openai/gpt-4o-mini")
    memory.say(thread.id, "Where to go in May?")
    local = memchat("export", thread.id, "--format", "markdown").stdout
    served = Served()
    try:
        there = memchat("--server", served.url, "export", thread.id, "--format", "markdown",
                        env={"MEMCHAT_DB": "/nonexistent/never-opened.db"})
        assert there.stdout == local, there.stderr
        path = tmp_path / "trip.md"
        path.write_text(local)
        back = memchat("--server", served.url, "import", "--format", "markdown", str(path),
                       env={"MEMCHAT_DB": "/nonexistent/never-opened.db"})
        assert back.returncode == 0, back.stderr
    finally:
        served.stop()
    assert json.loads(memchat("list", "--json").stdout)[0]["title"] == "Trip" and len(memory.threads()) == 2


def _exported_trip(memchat, memory, server, tmp_path) -> Path:
    server.reply("Lisbon is lovely.", "Take the tram.")
    thread = memory.new_thread(title="Trip", system="You plan trips.\nBriefly.", model="openai/gpt-4o-mini")
    memory.say(thread.id, "Where to go in May?")
    memory.say(thread.id, "How to get around?")
    path = tmp_path / "trip.md"
    written = memchat("export", thread.id, "--format", "markdown", "-o", str(path))
    assert written.returncode == 0, written.stderr
    return path


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def _comment_before(text: str, needle: str) -> str:
    """The memchat comment line of the block whose text or heading holds `needle`."""
    return [line for line in text[: text.index(needle)].splitlines() if line.startswith("<!-- memchat-")][-1]


def _same_length_text(text):
    return text.replace("Lisbon is lovely.", "Lisbon is LOVELY."), _comment_before(text, "Lisbon is lovely.")


def _role_flipped_in_its_record(text):
    comment = _comment_before(text, "Lisbon is lovely.")
    return text.replace(comment, comment.replace('"role": "assistant"', '"role": "user"')), comment.replace(
        '"role": "assistant"', '"role": "user"'
    )


def _role_flipped_in_its_heading(text):
    heading = next(line for line in text.splitlines() if line.startswith("## #1 · assistant"))
    flipped = heading.replace("assistant", "user")
    return text.replace(heading, flipped), flipped


def _length_adjusted(text):
    comment = _comment_before(text, "Lisbon is lovely.")
    adjusted = comment.replace('"length": 17', '"length": 24')
    return text.replace(comment, adjusted).replace("Lisbon is lovely.", "Lisbon is lovely, truly."), adjusted


def _turn_deleted(text):
    start = text.index(_comment_before(text, "How to get around?"))
    end = text.index(_comment_before(text, "Take the tram."))
    return text[:start] + text[end:], "<!-- memchat-end "


def _system_prompt_edited(text):
    return text.replace("  > You plan trips.", "  > You plan heists."), "  > You plan heists."


def _title_edited(text):
    return text.replace("# Trip\n", "# Heist\n"), "# Heist"


def _paragraph_added(text):
    return text.replace("Take the tram.\n\n", "Take the tram.\n\nOr walk.\n\n"), "Or walk."


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "edit",
    [_same_length_text, _role_flipped_in_its_record, _role_flipped_in_its_heading, _length_adjusted, _turn_deleted,
     _system_prompt_edited, _title_edited, _paragraph_added],
)
def test_an_edited_transcript_is_refused_naming_the_line(memchat, memory, server, tmp_path, edit):
    path = _exported_trip(memchat, memory, server, tmp_path)
    edited, named = edit(path.read_text())
    path.write_text(edited)
    refused = memchat("import", "--format", "markdown", str(path))
    assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert f"line {_line_of(edited, named)} of the Markdown" in refused.stderr
    assert "nothing was imported" in refused.stderr
    assert len(memory.threads()) == 1


@pytest.mark.bad_input
def test_a_transcript_without_digests_is_refused_asking_for_a_new_export(memchat, memory, server, tmp_path):
    path = _exported_trip(memchat, memory, server, tmp_path)
    current = path.read_text()
    older = "".join(
        re.sub(r', "sha256": "[0-9a-f]{64}"', "", line)
        for line in current.splitlines(keepends=True)
        if not line.startswith("<!-- memchat-end ")
    )
    path.write_text(older)
    refused = memchat("import", "--format", "markdown", str(path))
    assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
    assert "line 1 of the Markdown" in refused.stderr and "export it again" in refused.stderr
    assert len(memory.threads()) == 1


def test_import_tells_markdown_by_its_content_or_name_and_names_the_formats_for_anything_else(
    memchat, memory, server, tmp_path
):
    path = _exported_trip(memchat, memory, server, tmp_path)
    by_name = memchat("import", str(path))
    assert by_name.returncode == 0, by_name.stderr
    by_content = memchat("import", "-", input=path.read_text())
    assert by_content.returncode == 0, by_content.stderr
    assert [t.title for t in memory.threads()] == ["Trip"] * 3
    edited, named = _title_edited(path.read_text())
    path.write_text(edited)
    refused = memchat("import", str(path))
    assert refused.returncode == 2 and f"line {_line_of(edited, named)} of the Markdown" in refused.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("Lisbon in May: trams, pastries.\n")
    unknown = memchat("import", str(notes))
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert unknown.stderr.splitlines() == [
        f"memchat: import: {notes} is neither of memchat's exports (JSON, Markdown); the formats: --format json|markdown "
        "(memchat's own), --from llm|chatgpt|openai-jsonl (another tool's history); nothing was imported"
    ]
    empty = memchat("import", "-", input="\n")
    assert (empty.returncode, empty.stderr) == (2, "memchat: import: the input is empty; nothing was imported\n")
    assert len(memory.threads()) == 3
