"""Agent items at the terminal, as real `memchat` processes: `say --image/--file` attach to the
message (checked, refused in one line with nothing stored), `show` and `chat` render calls,
outputs, reasoning, images and files as one-line descriptions, and client mode carries them."""

import pytest
from fake_openai import Answer

from memchat import Memory

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 848  # 217,096 bytes: "212 KB"
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "photo.png").write_bytes(PNG)
    (tmp_path / "notes.txt").write_text("hello notes\n")
    (tmp_path / "not-an-image.png").write_text("just text")
    return tmp_path


def test_say_attaches_images_and_files_and_show_describes_them(memchat, server, files):
    thread = memchat("new", "--model", "openai/gpt-4o", check=True).stdout.strip()
    server.reply("A photo and some notes.")
    said = memchat(
        "say",
        thread,
        "What are these?",
        "--image",
        "photo.png",
        "--file",
        "notes.txt",
        "--image",
        "https://example.com/cat.jpg",
        cwd=files,
    )
    assert said.returncode == 0, said.stderr
    assert said.stdout == "A photo and some notes.\n"
    received = server.images_received
    assert [(i.media_type, i.data) for i in received] == [("image/png", PNG), ("image/jpeg", None)]
    sent = server.last_messages[-1]["content"]
    assert sent[0] == {"type": "text", "text": "What are these?"}
    assert sent[3]["file"]["filename"] == "notes.txt"
    assert sent[3]["file"]["file_data"].startswith("data:text/plain;base64,")

    shown = memchat("show", thread, "--no-pager").stdout
    assert (
        "  What are these?\n  [image: photo.png, 212 KB]\n  [image: https://example.com/cat.jpg]\n"
        "  [file: notes.txt, 12 bytes]\n"
    ) in shown


@pytest.mark.bad_input
def test_a_bad_attachment_is_one_line_exit_2_and_nothing_is_stored(memchat, server, files):
    thread = memchat("new", "--model", "openai/gpt-4o", check=True).stdout.strip()
    cases = [
        (["--image", "not-an-image.png"], {}, "--image not-an-image.png: the data is not an image"),
        (["--image", "missing.png"], {}, "--image missing.png: No such file or directory"),
        (["--file", "missing.pdf"], {}, "--file missing.pdf: No such file or directory"),
        (
            ["--image", "photo.png"],
            {"MEMCHAT_MAX_ITEM_BYTES": "1000"},
            "--image photo.png: 217,096 bytes, over the limit of 1,000",
        ),
        (["--image", "ftp://example.com/a.png"], {}, "--image ftp://example.com/a.png:"),
    ]
    for options, env, said in cases:
        done = memchat("say", thread, "look", *options, cwd=files, env=env)
        assert done.returncode == 2, (options, done.stderr)
        assert done.stderr.startswith(f"memchat: {said}") and done.stderr.count("\n") == 1, done.stderr
    assert Memory().messages(thread) == []
    assert server.requests == []


def test_show_and_chat_describe_calls_outputs_and_reasoning(memchat, server, tmp_path):
    memory = Memory()
    thread = memory.new_thread(model="openai/gpt-4o").id
    calls = server.reply_tool_calls(
        [{"name": "get_weather", "arguments": {"city": "Oslo"}}], reasoning="Oslo, so a tool."
    )
    memory.say(thread, "Weather in Oslo?", tools=[WEATHER])
    server.reply("Cold.")
    memory.send_tool_outputs(thread, {calls[0].id: "snow " * 400}, tools=[WEATHER])

    shown = memchat("show", thread, "--no-pager").stdout
    assert "  reasoning: Oslo, so a tool.\n" in shown
    assert '  call get_weather({"city": "Oslo"})\n' in shown
    output_line = next(line for line in shown.splitlines() if "output of" in line)
    assert output_line.startswith(f"  [output of {calls[0].id}: 2,000 chars] snow snow")
    assert output_line.endswith("…") and len(output_line) <= 102
    assert "  Cold.\n" in shown

    server.reply(Answer(text="Warm now.", reasoning="It is summer."))
    done = memchat("chat", thread, input="And now?\n", env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert done.returncode == 0, done.stderr
    assert "Warm now.\nreasoning: It is summer.\n" in done.stdout


def test_client_mode_carries_attachments_and_shows_items(memchat, served, server, files):
    thread = memchat("new", "--model", "openai/gpt-4o", "--server", served.url, check=True).stdout.strip()
    server.reply("A photo.")
    said = memchat("say", thread, "What is it?", "--image", "photo.png", "--server", served.url, cwd=files)
    assert said.returncode == 0, said.stderr
    assert [(i.media_type, i.data) for i in server.images_received] == [("image/png", PNG)]
    shown = memchat("show", thread, "--no-pager", "--server", served.url).stdout
    assert "  What is it?\n  [image: photo.png, 212 KB]\n" in shown
    refused = memchat("say", thread, "x", "--image", "not-an-image.png", "--server", served.url, cwd=files)
    assert refused.returncode == 2 and "--image not-an-image.png" in refused.stderr
    assert len(Memory().messages(thread)) == 2


def test_a_served_thread_with_tool_calls_reads_the_same_through_the_client(memchat, served, server):
    memory = Memory()
    thread = memory.new_thread(model="openai/gpt-4o").id
    server.reply_tool_calls([{"name": "get_weather", "arguments": {"city": "Rome"}}])
    memory.say(thread, "Weather in Rome?", tools=[WEATHER])
    here = memchat("show", thread, "--no-pager").stdout
    there = memchat("show", thread, "--no-pager", "--server", served.url).stdout
    assert here == there and 'call get_weather({"city": "Rome"})' in here
