"""memchat.items: agent items between OpenAI's protocols and memchat's records. Pure functions,
so no server: every shape of docs/agent-items.md read in and written back, every refusal naming
its field, and round trips (Responses items, Chat Completions messages) that give back exactly
what was sent."""

import base64
import hashlib
import json
import random
import struct
import subprocess
import sys
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memchat import config, items
from memchat.errors import InvalidInput
from memchat.records import MessageCreate


def png(width: int = 1, height: int = 1) -> bytes:
    """A real PNG, 8-bit grey, of noise (so that its size grows with its pixels, as a photo's does)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    noise = random.Random(width * height)
    rows = b"".join(b"\x00" + noise.randbytes(width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
IMAGES = {"image/png": png(2, 2), "image/jpeg": JPEG, "image/gif": GIF, "image/webp": WEBP}

CALL_ID = "call_okunv0eUNIXE8kqY81fgYvCs"
TOOLU_ID = "toolu_01A09q90qw90lq917835lq9"


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


class Blobs(dict):
    """A store's blobs table, in memory: what the store does with an item's data before writing it."""

    def keep(self, records: list[MessageCreate]) -> list[MessageCreate]:
        for record in records:
            if record.parts:
                record.parts, data = items.stored_parts(record.parts)
                self.update(data)
        return records


ALL = frozenset({"reasoning.encrypted_content", "message.input_image.image_url"})


def refusal(call, *args, **kwargs) -> str:
    with pytest.raises(InvalidInput) as caught:
        call(*args, **kwargs)
    return str(caught.value)


# ---- Responses input --------------------------------------------------------------------------


def test_a_string_input_is_one_user_message():
    [record] = items.from_responses_input("Weather in Paris?")
    assert (record.role, record.kind, record.content, record.parts) == ("user", "message", "Weather in Paris?", None)


def test_a_whole_tool_turn_becomes_one_record_per_item():
    image, pdf = png(), PDF
    records = items.from_responses_input(
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is on this receipt, and the weather there?"},
                    {"type": "input_image", "image_url": data_url("image/png", image), "detail": "low"},
                    {"type": "input_file", "filename": "receipt.pdf", "file_data": data_url("application/pdf", pdf)},
                ],
            },
            {
                "type": "reasoning",
                "id": "rs_6806bfca0b24",
                "summary": [{"type": "summary_text", "text": "**Reading the receipt**"}],
                "encrypted_content": "gAAAAABo...",
            },
            {
                "type": "function_call",
                "id": "fc_684b3e6bdeb8",
                "call_id": CALL_ID,
                "name": "get_weather",
                "arguments": '{"city":  "Paris"}',
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": CALL_ID, "output": "sunny, 21 C"},
            {
                "type": "message",
                "id": "msg_684d4bd40abc",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Paris: sunny, 21 C.", "annotations": [], "logprobs": []}],
            },
        ]
    )
    user, reasoning, call, output, answer = records
    assert (user.role, user.kind, user.content) == (
        "user",
        "message",
        "What is on this receipt, and the weather there?",
    )
    assert user.parts == [
        {"type": "text", "text": "What is on this receipt, and the weather there?"},
        {"type": "image", "data": image, "media_type": "image/png", "detail": "low"},
        {"type": "file", "data": pdf, "media_type": "application/pdf", "filename": "receipt.pdf"},
    ]
    assert (reasoning.role, reasoning.kind, reasoning.content, reasoning.item_id) == (
        "assistant",
        "reasoning",
        "**Reading the receipt**",
        "rs_6806bfca0b24",
    )
    assert reasoning.provider_data == {
        "family": None,
        "encrypted_content": "gAAAAABo...",
        "summary": ["**Reading the receipt**"],
        "content": [],
        "thinking_blocks": [],
    }
    assert (call.role, call.kind, call.call_id, call.name, call.item_id) == (
        "assistant",
        "function_call",
        CALL_ID,
        "get_weather",
        "fc_684b3e6bdeb8",
    )
    assert call.arguments == '{"city":  "Paris"}' and call.content == 'get_weather({"city":  "Paris"})'
    assert (output.role, output.kind, output.call_id, output.content, output.parts, output.item_id) == (
        "tool",
        "function_call_output",
        CALL_ID,
        "sunny, 21 C",
        None,
        None,
    )
    assert (answer.role, answer.content, answer.parts, answer.item_id) == (
        "assistant",
        "Paris: sunny, 21 C.",
        None,
        "msg_684d4bd40abc",
    )


def test_a_message_content_is_its_text_parts_joined_and_a_lone_text_needs_no_parts():
    easy, listed, refused = items.from_responses_input(
        [
            {"role": "developer", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "one"}]},
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "content": [
                    {"type": "output_text", "text": "I can tell you this.", "annotations": []},
                    {"type": "refusal", "refusal": "Not that."},
                ],
            },
        ]
    )
    assert (easy.role, easy.content, easy.parts) == ("developer", "Be brief.", None)
    assert (listed.content, listed.parts) == ("one", None)
    assert refused.content == "I can tell you this.\nNot that."
    assert refused.parts == [{"type": "text", "text": "I can tell you this."}, {"type": "refusal", "text": "Not that."}]


def test_an_output_given_as_parts_keeps_them_and_its_text_is_their_text():
    [output] = items.from_responses_input(
        [
            {
                "type": "function_call_output",
                "id": "fco_1",
                "call_id": TOOLU_ID,
                "output": [
                    {"type": "input_text", "text": "chart:"},
                    {"type": "input_image", "image_url": data_url("image/gif", GIF)},
                    {"type": "input_text", "text": "done"},
                ],
            }
        ]
    )
    assert (output.content, output.call_id, output.item_id) == ("chart:\ndone", TOOLU_ID, "fco_1")
    assert output.parts[1] == {"type": "image", "data": GIF, "media_type": "image/gif", "detail": "auto"}


def test_reasoning_text_is_its_summary_else_its_reasoning_text_else_nothing():
    summarised, thought, opaque = items.from_responses_input(
        [
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "First."}, {"type": "summary_text", "text": "Then."}],
                "content": [{"type": "reasoning_text", "text": "raw"}],
            },
            {"type": "reasoning", "id": "rs_2", "summary": [], "content": [{"type": "reasoning_text", "text": "a"}]},
            {"type": "reasoning", "id": "rs_3", "summary": [], "encrypted_content": "gAAAA"},
        ],
        family="openai",
    )
    assert summarised.content == "First.\n\nThen." and summarised.provider_data["content"] == ["raw"]
    assert thought.content == "a"
    assert opaque.content == "" and opaque.provider_data["encrypted_content"] == "gAAAA"
    assert {record.provider_data["family"] for record in (summarised, thought, opaque)} == {"openai"}


def test_remote_images_and_files_are_kept_as_their_urls():
    [message] = items.from_responses_input(
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "original"},
                    {"type": "input_file", "file_url": "https://example.com/letters/2024ltr.pdf"},
                ],
            }
        ]
    )
    assert message.parts == [
        {"type": "image", "url": "https://example.com/cat.jpg", "detail": "original"},
        {"type": "file", "url": "https://example.com/letters/2024ltr.pdf"},
    ]
    assert message.content == ""


@pytest.mark.parametrize(
    ("filename", "media_type"),
    [("notes.txt", "text/plain"), ("report.pdf", "application/pdf"), ("blob.zzz", "application/octet-stream")],
)
def test_bare_base64_file_data_takes_its_type_from_the_filename(filename, media_type):
    [message] = items.from_responses_input(
        [
            {
                "role": "user",
                "content": [{"type": "input_file", "filename": filename, "file_data": base64.b64encode(PDF).decode()}],
            }
        ]
    )
    assert message.parts == [{"type": "file", "data": PDF, "media_type": media_type, "filename": filename}]


@pytest.mark.parametrize(("media_type", "data"), IMAGES.items())
def test_an_image_type_is_known_by_its_bytes_not_by_what_its_url_claims(media_type, data):
    [message] = items.from_responses_input(
        [{"role": "user", "content": [{"type": "input_image", "image_url": data_url("image/png", data)}]}]
    )
    assert message.parts[0]["media_type"] == media_type


def image_message(url, **part):
    return [
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "look"}, {"type": "input_image", "image_url": url, **part}],
        }
    ]


def file_message(**part):
    return [{"role": "user", "content": [{"type": "input_file", **part}]}]


RESPONSES_REFUSALS = [
    ([{"type": "web_search_call", "id": "ws_1"}], "input[0].type: memchat holds no 'web_search_call' items"),
    (
        [{"role": "user", "content": "hi"}, {"type": "item_reference", "id": "msg_1"}],
        "input[1].type: memchat resolves no item references",
    ),
    ([{"type": "computer_call"}], "input[0].type: memchat holds no 'computer_call' items"),
    (["hello"], "input[0]: must be an object, not str"),
    ([{"role": "tool", "content": "x"}], "input[0].role: must be one of user, assistant, system, developer"),
    ([{"role": "user"}], "input[0].content: must be a list, not NoneType"),
    (
        [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}],
        "input[0].content[0].type: must be one of input_text",
    ),
    (
        [{"role": "assistant", "content": [{"type": "input_image", "image_url": "https://a.b/c.png"}]}],
        "input[0].content[0].type",
    ),
    (
        [{"type": "function_call", "call_id": CALL_ID, "name": "get_weather", "arguments": "{city: Paris}"}],
        "input[0].arguments: is not valid JSON",
    ),
    (
        [{"type": "function_call", "call_id": CALL_ID, "name": "f", "arguments": "NaN"}],
        "input[0].arguments: is not valid JSON",
    ),
    (
        [{"type": "function_call", "call_id": CALL_ID, "name": "f", "arguments": {"city": "Paris"}}],
        "input[0].arguments: must be a string",
    ),
    ([{"type": "function_call", "name": "f", "arguments": "{}"}], "input[0].call_id: is missing"),
    ([{"type": "function_call", "call_id": CALL_ID, "arguments": "{}"}], "input[0].name: must be a string"),
    (
        [{"type": "function_call_output", "call_id": "call_" + "x" * 60, "output": "ok"}],
        "input[0].call_id: must have 1 to 64 characters, not 65",
    ),
    (
        [{"type": "function_call_output", "call_id": "", "output": "ok"}],
        "input[0].call_id: must have 1 to 64 characters, not 0",
    ),
    ([{"type": "function_call_output", "call_id": CALL_ID, "output": 7}], "input[0].output: must be a list, not int"),
    (
        [{"type": "function_call_output", "call_id": CALL_ID, "output": [{"type": "refusal", "refusal": "no"}]}],
        "input[0].output[0].type",
    ),
    (
        [{"type": "reasoning", "id": "rs_1", "summary": [{"type": "reasoning_text", "text": "x"}]}],
        "input[0].summary[0].type: must be 'summary_text'",
    ),
    (
        [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": 5}],
        "input[0].encrypted_content: must be a string",
    ),
    (
        [{"type": "function_call", "id": "fc_" + "x" * 200, "call_id": CALL_ID, "name": "f", "arguments": "{}"}],
        "input[0].id: must have 1 to 200",
    ),
    (image_message(None), "input[0].content[1].image_url: is missing"),
    (
        image_message(None, file_id="file-abc"),
        "input[0].content[1].file_id: memchat keeps no uploaded files; send the image itself",
    ),
    (image_message("data:image/png,rawbytes"), "input[0].content[1].image_url: is a data URL that is not base64"),
    (image_message("data:image/png;base64"), "input[0].content[1].image_url: is not a data URL"),
    (
        image_message("data:image/png;base64,iVBOR!!!w0K"),
        "input[0].content[1].image_url: the image is not valid base64",
    ),
    (
        image_message(data_url("image/png", PDF)),
        "input[0].content[1].image_url: the data is not an image of a type memchat takes (image/png, image/jpeg, image/gif, image/webp)",
    ),
    (image_message("ftp://example.com/a.png"), "input[0].content[1].image_url: must be an http(s) URL or a data URL"),
    (
        image_message("https://example.com/a.png", detail="medium"),
        "input[0].content[1].detail: must be one of auto, low, high, original, not 'medium'",
    ),
    (
        file_message(file_data=data_url("application/pdf", PDF)),
        "input[0].content[0].filename: is missing: a file given as data needs its name",
    ),
    (
        file_message(file_id="file-abc", filename="a.pdf"),
        "input[0].content[0].file_id: memchat keeps no uploaded files; send the file itself",
    ),
    (file_message(filename="a.pdf"), "input[0].content[0]: gives no file: send it as file_data"),
    (
        file_message(filename="a.pdf", file_data="%PDF not base64"),
        "input[0].content[0].file_data: the file is not valid base64",
    ),
    (file_message(file_url="file:///etc/passwd"), "input[0].content[0].file_url: must be an http(s) URL"),
    (
        file_message(filename="a.pdf", file_data=data_url("application/pdf", PDF), detail="original"),
        "input[0].content[0].detail",
    ),
    ([{"role": "user", "content": "a\x00b"}], "input[0].content: contains a NUL character"),
    (
        [{"role": "user", "content": [{"type": "input_text", "text": "\ud800"}]}],
        "input[0].content[0].text: is not valid Unicode",
    ),
    (
        [{"type": "function_call", "call_id": CALL_ID, "name": "f", "arguments": '{"a": "\ud83d"}'}],
        "input[0].arguments: is not valid Unicode",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(("given", "said"), RESPONSES_REFUSALS)
def test_responses_input_memchat_cannot_keep_exactly_is_refused_naming_the_field(given, said):
    assert refusal(items.from_responses_input, given).startswith(said)


@pytest.mark.bad_input
def test_the_field_named_is_the_one_the_face_reads():
    said = refusal(items.from_responses_input, [{"type": "message", "role": "user", "content": 3}], field="items")
    assert said.startswith("items[0].content: ")


@pytest.mark.bad_input
def test_an_image_or_file_over_the_limit_is_refused_before_it_is_decoded(monkeypatch):
    monkeypatch.setenv("MEMCHAT_MAX_ITEM_BYTES", "1000")
    items.from_responses_input(image_message(data_url("image/png", png(10, 10))))
    big = png(200, 200)
    assert len(big) > 1000
    said = refusal(items.from_responses_input, image_message(data_url("image/png", big)))
    assert (
        said
        == f"input[0].content[1].image_url: the image is {len(big):,} bytes, over the limit of 1,000 (MEMCHAT_MAX_ITEM_BYTES)"
    )
    huge = "A" * 4_000_000
    said = refusal(items.from_responses_input, file_message(filename="a.bin", file_data=huge))
    assert said.startswith("input[0].content[0].file_data: the file is 3,000,000 bytes, over the limit of 1,000")


@pytest.mark.parametrize(
    ("value", "limit"), [(None, 20 * 2**20), ("", 20 * 2**20), ("5000", 5000), ("0", 20 * 2**20), ("1e6", 20 * 2**20)]
)
def test_the_item_limit_is_the_environments_when_it_is_a_positive_number_of_bytes(monkeypatch, value, limit):
    if value is None:
        monkeypatch.delenv("MEMCHAT_MAX_ITEM_BYTES", raising=False)
    else:
        monkeypatch.setenv("MEMCHAT_MAX_ITEM_BYTES", value)
    assert config.max_item_bytes() == limit


# ---- Chat Completions messages ----------------------------------------------------------------


def test_chat_messages_become_the_same_items():
    records = items.from_chat_messages(
        [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": data_url("image/jpeg", JPEG), "detail": "low"}},
                    {"type": "file", "file": {"file_data": data_url("application/pdf", PDF), "filename": "a.pdf"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "rain"}]},
        ]
    )
    assert [(record.role, record.kind) for record in records] == [
        ("system", "message"),
        ("user", "message"),
        ("assistant", "function_call"),
        ("assistant", "function_call"),
        ("tool", "function_call_output"),
        ("tool", "function_call_output"),
    ]
    assert records[1].parts == [
        {"type": "text", "text": "Weather here?"},
        {"type": "image", "data": JPEG, "media_type": "image/jpeg", "detail": "low"},
        {"type": "file", "data": PDF, "media_type": "application/pdf", "filename": "a.pdf"},
    ]
    assert [(record.call_id, record.arguments) for record in records[2:4]] == [
        ("call_a", '{"city":"Paris"}'),
        ("call_b", '{"city":"Rome"}'),
    ]
    assert (records[4].content, records[4].parts) == ("sunny", None)
    assert (records[5].content, records[5].parts) == ("rain", [{"type": "text", "text": "rain"}])


def test_an_assistant_message_is_its_reasoning_first_then_its_text_then_its_calls():
    blocks = [
        {"type": "thinking", "thinking": "I should call the tool.", "signature": "SIG-abc123=="},
        {"type": "redacted_thinking", "data": "EmwKAhgB..."},
    ]
    reasoning, text, call = items.from_chat_messages(
        [
            {
                "role": "assistant",
                "content": "Let me check.",
                "reasoning_content": "I should call the tool.",
                "thinking_blocks": blocks,
                "tool_calls": [
                    {
                        "index": 2,
                        "id": TOOLU_ID,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            }
        ],
        family="anthropic",
    )
    assert (reasoning.kind, reasoning.content) == ("reasoning", "I should call the tool.")
    assert reasoning.provider_data == {
        "family": "anthropic",
        "encrypted_content": None,
        "summary": ["I should call the tool."],
        "content": ["I should call the tool."],
        "thinking_blocks": blocks,
    }
    assert (text.kind, text.role, text.content) == ("message", "assistant", "Let me check.")
    assert (call.kind, call.call_id, call.name, call.arguments) == (
        "function_call",
        TOOLU_ID,
        "get_weather",
        '{"city": "Paris"}',
    )


def test_an_assistant_refusal_is_a_refusal_part():
    [message] = items.from_chat_messages([{"role": "assistant", "content": None, "refusal": "I can't help with that."}])
    assert (message.content, message.parts) == (
        "I can't help with that.",
        [{"type": "refusal", "text": "I can't help with that."}],
    )
    [both] = items.from_chat_messages([{"role": "assistant", "content": "Partly:", "refusal": "not the rest."}])
    assert both.parts == [{"type": "text", "text": "Partly:"}, {"type": "refusal", "text": "not the rest."}]


CHAT_REFUSALS = [
    (
        [
            {
                "role": "assistant",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{"}}],
            }
        ],
        "messages[0].tool_calls[0].function.arguments: is not valid JSON",
    ),
    (
        [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}],
        "messages[0].tool_calls[0].id: is missing",
    ),
    (
        [{"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "custom": {}}]}],
        "messages[0].tool_calls[0].type: memchat takes function tool calls only",
    ),
    (
        [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}],
        "messages[0].tool_calls[0].function: must be an object",
    ),
    (
        [{"role": "assistant", "content": None}],
        "messages[0].content: is missing: an assistant message needs content or tool_calls",
    ),
    ([{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}], "messages[1].tool_call_id: is missing"),
    (
        [
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "content": [{"type": "image_url", "image_url": {"url": "https://a.b/c.png"}}],
            }
        ],
        "messages[0].content[0].type: must be one of text",
    ),
    (
        [{"role": "function", "name": "f", "content": "x"}],
        "messages[0].role: must be one of system, developer, user, assistant, tool",
    ),
    (
        [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
        "messages[0].content[0].type: must be one of text, image_url, file",
    ),
    (
        [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://a.b/c.png"}}]}],
        "messages[0].content[0].type: must be one of text",
    ),
    (
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}],
        "messages[0].content[0].image_url.url: the data is not an image",
    ),
    (
        [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://a.b/c.png", "detail": "original"}}],
            }
        ],
        "messages[0].content[0].image_url.detail",
    ),
    (
        [{"role": "user", "content": [{"type": "file", "file": {"file_data": data_url("application/pdf", PDF)}}]}],
        "messages[0].content[0].filename: is missing",
    ),
    (
        [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}],
        "messages[0].content[0].file.file_id: memchat keeps no uploaded files",
    ),
    ([{"role": "user", "content": "\ud83d"}], "messages[0].content: is not valid Unicode"),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(("given", "said"), CHAT_REFUSALS)
def test_chat_messages_memchat_cannot_keep_exactly_are_refused_naming_the_field(given, said):
    assert refusal(items.from_chat_messages, given).startswith(said)


@pytest.mark.bad_input
def test_a_chat_image_over_the_limit_is_refused(monkeypatch):
    monkeypatch.setenv("MEMCHAT_MAX_ITEM_BYTES", "64")
    big = png(30, 30)
    said = refusal(
        items.from_chat_messages,
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url("image/png", big)}}]}],
    )
    assert (
        said
        == f"messages[0].content[0].image_url.url: the image is {len(big):,} bytes, over the limit of 64 (MEMCHAT_MAX_ITEM_BYTES)"
    )


# ---- blobs ------------------------------------------------------------------------------------


def test_the_store_swaps_data_for_the_hash_of_its_blob():
    [message] = items.from_responses_input(image_message(data_url("image/png", png())))
    parts, data = items.stored_parts(message.parts)
    sha256 = hashlib.sha256(png()).hexdigest()
    assert data == {sha256: png()}
    assert parts[0] == message.parts[0]
    assert parts[1] == {
        "type": "image",
        "blob": sha256,
        "size": len(png()),
        "media_type": "image/png",
        "detail": "auto",
    }
    assert "data" in message.parts[1], "the part read is left as it was"
    assert items.stored_parts([]) == ([], {}) and items.stored_parts([{"type": "text", "text": "x"}]) == (
        [{"type": "text", "text": "x"}],
        {},
    )


# ---- what a turn sends through litellm --------------------------------------------------------


def record(**fields) -> MessageCreate:
    return MessageCreate(**{"role": "user", "content": "", **fields})


def stored(records: list[MessageCreate], blobs: Blobs) -> list[MessageCreate]:
    return blobs.keep(records)


def agent_turn(family: str | None) -> list[MessageCreate]:
    return items.from_chat_messages(
        [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "thinking_blocks": [{"type": "thinking", "thinking": "Two cities.", "signature": "SIG=="}],
                "tool_calls": [
                    {
                        "id": "toolu_01",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "toolu_02",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_02", "content": "rain"},
            {"role": "assistant", "content": "Paris is sunny; Rome has rain."},
        ],
        family=family,
    )


def test_a_reply_with_calls_is_one_assistant_message_with_its_thinking_blocks_for_its_own_family():
    turn = agent_turn("anthropic")
    assert [record.kind for record in turn] == [
        "message",
        "reasoning",
        "message",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
        "message",
    ]
    sent = items.to_chat_messages(turn, Blobs().__getitem__, family="anthropic")
    assert sent == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "toolu_02",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
            "thinking_blocks": [{"type": "thinking", "thinking": "Two cities.", "signature": "SIG=="}],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": "rain"},
        {"role": "assistant", "content": "Paris is sunny; Rome has rain."},
    ]
    assert all("reasoning_content" not in message for message in sent)


@pytest.mark.parametrize(("made_by", "sent_to"), [("anthropic", "openai"), (None, None), (None, "anthropic")])
def test_reasoning_goes_to_no_other_family_and_unknown_reasoning_to_none(made_by, sent_to):
    sent = items.to_chat_messages(agent_turn(made_by), Blobs().__getitem__, family=sent_to)
    assert all("thinking_blocks" not in message for message in sent)
    assert sent[1]["content"] == "Let me check." and len(sent[1]["tool_calls"]) == 2


def test_plain_messages_are_two_keys_and_separate_replies_separate_messages():
    turn = [
        record(role="system", content="Be brief."),
        record(role="user", content="Hi"),
        record(role="assistant", content="Hello."),
        record(role="assistant", content="Anything else?"),
        record(
            role="assistant",
            kind="reasoning",
            content="alone",
            provider_data={"family": "openai", "thinking_blocks": []},
        ),
        record(role="user", content="No."),
    ]
    sent = items.to_chat_messages(turn, Blobs().__getitem__, family="openai")
    assert sent == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "assistant", "content": "Anything else?"},
        {"role": "user", "content": "No."},
    ]
    assert all(list(message) == ["role", "content"] for message in sent)


def test_user_parts_go_as_chat_parts_with_their_data_and_original_detail_as_high():
    blobs = Blobs()
    [message] = stored(
        items.from_responses_input(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Compare"},
                        {"type": "input_image", "image_url": data_url("image/png", png()), "detail": "original"},
                        {"type": "input_image", "image_url": "https://example.com/b.webp", "detail": "low"},
                        {"type": "input_file", "filename": "a.pdf", "file_data": data_url("application/pdf", PDF)},
                        {"type": "input_file", "file_url": "https://example.com/b.pdf"},
                    ],
                }
            ]
        ),
        blobs,
    )
    [sent] = items.to_chat_messages([message], blobs.__getitem__, family="openai")
    assert sent == {
        "role": "user",
        "content": [
            {"type": "text", "text": "Compare"},
            {"type": "image_url", "image_url": {"url": data_url("image/png", png()), "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/b.webp", "detail": "low"}},
            {"type": "file", "file": {"file_data": data_url("application/pdf", PDF), "filename": "a.pdf"}},
            {"type": "text", "text": "[file: https://example.com/b.pdf]"},
        ],
    }


def test_a_tool_output_with_images_is_its_text_and_a_line_per_image():
    blobs = Blobs()
    [output] = stored(
        items.from_responses_input(
            [
                {
                    "type": "function_call_output",
                    "call_id": CALL_ID,
                    "output": [
                        {"type": "input_text", "text": "chart:"},
                        {"type": "input_image", "image_url": data_url("image/png", png())},
                        {
                            "type": "input_file",
                            "filename": "data.csv",
                            "file_data": data_url("text/csv", b"a,b\n1,2\n"),
                        },
                    ],
                }
            ]
        ),
        blobs,
    )
    [sent] = items.to_chat_messages([output], blobs.__getitem__, family="openai")
    assert sent == {
        "role": "tool",
        "tool_call_id": CALL_ID,
        "content": f"chart:\n[image: image/png, {len(png())} bytes]\n[file: data.csv, text/csv, 8 bytes]",
    }


def test_a_reply_read_back_over_chat_completions_is_one_message():
    _, reasoning, text, first, second, *_ = agent_turn("anthropic")
    assert items.to_chat_message([reasoning, text, first, second]) == {
        "role": "assistant",
        "content": "Let me check.",
        "refusal": None,
        "annotations": [],
        "tool_calls": [
            {
                "id": "toolu_01",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "toolu_02",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            },
        ],
    }
    [refused] = items.from_chat_messages([{"role": "assistant", "content": "Partly:", "refusal": "not the rest."}])
    assert items.to_chat_message([refused]) == {
        "role": "assistant",
        "content": "Partly:",
        "refusal": "not the rest.",
        "annotations": [],
    }
    assert items.to_chat_message([first])["content"] is None


# ---- what Responses and Conversations read back -----------------------------------------------


def test_items_read_back_in_the_output_shapes():
    blobs = Blobs()
    user, reasoning, call, output, answer = stored(
        items.from_responses_input(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {"type": "input_image", "image_url": data_url("image/png", png())},
                    ],
                },
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "Look."}],
                    "encrypted_content": "gAAAA",
                },
                {"type": "function_call", "id": "fc_1", "call_id": CALL_ID, "name": "zoom", "arguments": '{"x": 1}'},
                {"type": "function_call_output", "call_id": CALL_ID, "output": "a cat"},
                {"type": "message", "role": "assistant", "content": "A cat."},
            ]
        ),
        blobs,
    )
    read = blobs.__getitem__
    assert items.to_responses_item(user, read, item_id="msg_u") == {
        "type": "message",
        "id": "msg_u",
        "status": "completed",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": None, "detail": "auto"},
        ],
    }
    shown = items.to_responses_item(user, read, item_id="msg_u", include={"message.input_image.image_url"})
    assert shown["content"][1]["image_url"] == data_url("image/png", png())
    assert items.to_responses_item(reasoning, read, item_id="rs_1") == {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Look."}],
        "status": "completed",
    }
    assert items.to_responses_item(reasoning, read, item_id="rs_1", include=ALL)["encrypted_content"] == "gAAAA"
    assert items.to_responses_item(call, read, item_id="fc_1") == {
        "type": "function_call",
        "id": "fc_1",
        "call_id": CALL_ID,
        "name": "zoom",
        "arguments": '{"x": 1}',
        "status": "completed",
    }
    assert items.to_responses_item(output, read, item_id="fco_9") == {
        "type": "function_call_output",
        "id": "fco_9",
        "call_id": CALL_ID,
        "output": "a cat",
        "status": "completed",
    }
    assert items.to_responses_item(answer, read, item_id="msg_a")["content"] == [
        {"type": "output_text", "text": "A cat.", "annotations": [], "logprobs": []}
    ]


@pytest.mark.parametrize(
    ("status", "finish_reason", "shown"),
    [
        ("complete", None, "completed"),
        ("complete", "length", "incomplete"),
        ("pending", None, "in_progress"),
        ("partial", None, "incomplete"),
        ("failed", None, "incomplete"),
    ],
)
def test_an_items_status_is_openais(status, finish_reason, shown):
    message = record(role="assistant", content="x", status=status, finish_reason=finish_reason)
    assert items.to_responses_item(message, Blobs().__getitem__, item_id="msg_1")["status"] == shown


# ---- tools --------------------------------------------------------------------------------------


WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"title": "City", "type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def test_function_tools_of_either_shape_go_to_litellm_in_chat_completions_shape():
    responses = [
        {
            "name": "get_weather",
            "parameters": WEATHER_PARAMETERS,
            "strict": True,
            "type": "function",
            "description": "Today's weather.",
        },
        {"type": "function", "name": "now", "parameters": None, "strict": None},
    ]
    chat = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Today's weather.",
                "parameters": WEATHER_PARAMETERS,
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "now"}},
    ]
    assert items.check_tools(responses, shape="responses") == chat
    assert items.check_tools(chat, shape="chat") == chat
    assert items.check_tools([], shape="chat") == []


TOOL_REFUSALS = [
    (
        "responses",
        [{"type": "web_search"}],
        "tools[0]: memchat passes only function tools; 'web_search' is a tool OpenAI runs",
    ),
    (
        "responses",
        [{"type": "function", "name": "f"}, {"type": "file_search", "vector_store_ids": []}],
        "tools[1]: memchat passes only function tools; 'file_search' is a tool OpenAI runs",
    ),
    (
        "responses",
        [{"type": "custom", "name": "grammar"}],
        "tools[0]: memchat passes only function tools, not 'custom'",
    ),
    (
        "responses",
        [{"type": "function", "name": "get weather"}],
        "tools[0].name: must be 1 to 64 letters, digits, _ or -, not 'get weather'",
    ),
    ("responses", [{"type": "function", "name": "f" * 65}], "tools[0].name: must be 1 to 64 letters"),
    (
        "responses",
        [{"type": "function", "name": "f", "parameters": "{}"}],
        "tools[0].parameters: must be an object, not str",
    ),
    ("responses", [{"type": "function", "name": "f", "strict": "yes"}], "tools[0].strict: must be true or false"),
    (
        "responses",
        [{"type": "function", "name": "f"}, {"type": "function", "name": "f"}],
        "tools[1].name: 'f' is defined twice",
    ),
    ("chat", [{"type": "function", "name": "f"}], "tools[0].function: must be an object, not NoneType"),
    (
        "chat",
        [{"type": "function", "function": {"name": "f", "parameters": ["city"]}}],
        "tools[0].function.parameters: must be an object, not list",
    ),
    ("chat", {"type": "function"}, "tools: must be a list, not dict"),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(("shape", "given", "said"), TOOL_REFUSALS)
def test_tools_memchat_cannot_pass_are_refused_by_name(shape, given, said):
    assert refusal(items.check_tools, given, shape=shape).startswith(said)


def test_tool_choice_is_given_to_litellm_in_chat_completions_form():
    tools = items.check_tools([{"type": "function", "name": "get_weather"}], shape="responses")
    for value in ("auto", "none", "required", None):
        assert items.check_tool_choice(value, tools, shape="responses") == value
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert items.check_tool_choice({"type": "function", "name": "get_weather"}, tools, shape="responses") == named
    assert items.check_tool_choice(named, tools, shape="chat") == named
    assert items.check_tool_choice("auto", [], shape="chat") == "auto"


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("value", "shape", "said"),
    [
        (
            {"type": "function", "name": "get_time"},
            "responses",
            "tool_choice.name: names no tool of this request: 'get_time'",
        ),
        (
            {"type": "function", "function": {"name": "get_time"}},
            "chat",
            "tool_choice.function.name: names no tool of this request",
        ),
        (
            {"type": "allowed_tools", "mode": "auto", "tools": []},
            "responses",
            "tool_choice: memchat takes 'auto', 'none', 'required' or one named function",
        ),
        ({"type": "web_search"}, "responses", "tool_choice: memchat takes"),
        ("any", "chat", "tool_choice: memchat takes"),
    ],
)
def test_a_tool_choice_naming_no_tool_given_is_refused(value, shape, said):
    tools = items.check_tools([{"type": "function", "name": "get_weather"}], shape="responses")
    assert refusal(items.check_tool_choice, value, tools, shape=shape).startswith(said)


@pytest.mark.bad_input
def test_required_needs_tools():
    assert (
        refusal(items.check_tool_choice, "required", [], shape="chat")
        == "tool_choice: 'required' needs tools to choose from"
    )


# ---- one line for a terminal, text for summaries -----------------------------------------------


def test_each_kind_is_described_in_one_plain_line():
    blobs = Blobs()
    photo, pdf = png(460, 460), PDF + bytes(1_600_000)
    user, reasoning, call, short, long = stored(
        items.from_responses_input(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is\nthis?"},
                        {"type": "input_image", "image_url": data_url("image/png", photo)},
                        {"type": "input_file", "filename": "notes.pdf", "file_data": data_url("application/pdf", pdf)},
                    ],
                },
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Looking closely."}]},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                {"type": "function_call_output", "call_id": "call_2", "output": "line\n" * 300},
            ]
        ),
        blobs,
    )
    assert items.describe(user) == "What is this? [image: image/png, 207 KB] [file: notes.pdf, 1.5 MB]"
    assert items.describe(reasoning) == "reasoning: Looking closely."
    assert items.describe(call) == 'call get_weather({"city":"Paris"})'
    assert items.describe(short) == "output of call_1: sunny"
    line = items.describe(long)
    assert line.startswith("[output of call_2: 1,500 chars] line line") and line.endswith("…") and len(line) == 100
    assert "\n" not in items.describe(long, width=30) and len(items.describe(long, width=30)) == 30
    assert items.describe(record(role="user", content="x" * 500)) == "x" * 99 + "…"
    assert items.describe(record(role="assistant", kind="reasoning", content="")) == "[reasoning]"


def test_summaries_and_recall_read_every_kind_as_text():
    user, reasoning, call, output, long = items.from_responses_input(
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look"},
                    {"type": "input_image", "image_url": "https://example.com/a.png"},
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Hmm."}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_2", "output": "y" * 2000},
        ]
    )
    assert items.as_text(user) == "Look\n[image: https://example.com/a.png]"
    assert items.as_text(reasoning) == "reasoning: Hmm."
    assert items.as_text(call) == 'called get_weather({"city":"Paris"})'
    assert items.as_text(output) == "output of call_1: sunny"
    assert items.as_text(long) == f"output of call_2: {'y' * 500}… (2,000 characters in all)"
    assert items.as_text(record(role="user", content="plain")) == "plain"


def test_the_module_loads_neither_sqlalchemy_nor_litellm():
    script = (
        "import sys, memchat.items\nprint(sorted(n for n in ('sqlalchemy', 'sqlmodel', 'litellm') if n in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---- round trips ------------------------------------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
words = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=24)
call_ids = st.one_of(words.map(lambda word: "call_" + word), words.map(lambda word: "toolu_01" + word))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
arguments = st.builds(
    lambda value, indent, separators, ascii: json.dumps(
        value, indent=indent, separators=separators, ensure_ascii=ascii
    ),
    st.dictionaries(words, json_values, max_size=4),
    st.sampled_from([None, 2]),
    st.sampled_from([None, (",", ":"), (", ", ": ")]),
    st.booleans(),
)
"""Arguments as models and clients write them: any spacing and escaping, kept byte for byte."""
image_data = st.sampled_from(sorted(IMAGES.items())).flatmap(
    lambda known: st.binary(max_size=64).map(lambda tail: (known[0], known[1] + tail))
)
details = st.sampled_from(["auto", "low", "high", "original"])
responses_images = st.one_of(
    st.builds(
        lambda image, detail: {"type": "input_image", "image_url": data_url(*image), "detail": detail},
        image_data,
        details,
    ),
    st.builds(
        lambda word, detail: {"type": "input_image", "image_url": f"https://example.com/{word}.png", "detail": detail},
        words,
        details,
    ),
)
responses_files = st.one_of(
    st.builds(
        lambda data, word, media_type: {
            "type": "input_file",
            "file_data": data_url(media_type, data),
            "filename": f"{word}.bin",
        },
        st.binary(max_size=64),
        words,
        st.sampled_from(["application/pdf", "text/csv", "application/octet-stream"]),
    ),
    st.builds(lambda word: {"type": "input_file", "file_url": f"https://example.com/{word}.pdf"}, words),
)
input_texts = st.builds(lambda value: {"type": "input_text", "text": value}, text)
input_parts = st.lists(st.one_of(input_texts, responses_images, responses_files), max_size=4)
output_parts = st.lists(
    st.one_of(
        st.builds(lambda value: {"type": "output_text", "text": value, "annotations": [], "logprobs": []}, text),
        st.builds(lambda value: {"type": "refusal", "refusal": value}, text),
    ),
    max_size=3,
)


def with_id(prefix: str, item: dict):
    return words.map(lambda word: {"id": prefix + word, **item})


responses_items = st.one_of(
    st.builds(
        lambda word, role, content: {
            "type": "message",
            "id": "msg_" + word,
            "status": "completed",
            "role": role,
            "content": content,
        },
        words,
        st.sampled_from(["user", "system", "developer"]),
        input_parts,
    ),
    st.builds(
        lambda word, content: {
            "type": "message",
            "id": "msg_" + word,
            "status": "completed",
            "role": "assistant",
            "content": content,
        },
        words,
        output_parts,
    ),
    st.builds(
        lambda word, call_id, name, args: {
            "type": "function_call",
            "id": "fc_" + word,
            "call_id": call_id,
            "name": name,
            "arguments": args,
            "status": "completed",
        },
        words,
        call_ids,
        words,
        arguments,
    ),
    st.builds(
        lambda word, call_id, output: {
            "type": "function_call_output",
            "id": "fco_" + word,
            "call_id": call_id,
            "output": output,
            "status": "completed",
        },
        words,
        call_ids,
        st.one_of(text, input_parts),
    ),
    st.builds(
        lambda word, summary, content, encrypted: {
            "type": "reasoning",
            "id": "rs_" + word,
            "summary": [{"type": "summary_text", "text": value} for value in summary],
            **({"content": [{"type": "reasoning_text", "text": value} for value in content]} if content else {}),
            "encrypted_content": encrypted,
            "status": "completed",
        },
        words,
        st.lists(text, max_size=3),
        st.lists(text, max_size=2),
        st.none() | text.map(lambda value: "gAAAAB" + value),
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(responses_items, max_size=6))
def test_responses_items_read_back_exactly_as_they_were_given(given_items):
    blobs = Blobs()
    records = blobs.keep(items.from_responses_input(given_items))
    assert all(isinstance(record.content, str) for record in records)
    read_back = [
        items.to_responses_item(record, blobs.__getitem__, item_id=record.item_id, include=ALL) for record in records
    ]
    assert read_back == given_items


chat_images = st.one_of(
    st.builds(
        lambda image, detail: {"type": "image_url", "image_url": {"url": data_url(*image), "detail": detail}},
        image_data,
        st.sampled_from(["auto", "low", "high"]),
    ),
    st.builds(
        lambda word: {"type": "image_url", "image_url": {"url": f"https://example.com/{word}.jpg", "detail": "auto"}},
        words,
    ),
)
chat_files = st.builds(
    lambda data, word: {
        "type": "file",
        "file": {"file_data": data_url("application/pdf", data), "filename": f"{word}.pdf"},
    },
    st.binary(max_size=64),
    words,
)
chat_texts = st.builds(lambda value: {"type": "text", "text": value}, text)
user_content = st.one_of(
    text,
    st.lists(chat_texts, min_size=2, max_size=3),
    st.tuples(st.lists(chat_texts, max_size=2), st.lists(chat_images | chat_files, min_size=1, max_size=2)).map(
        lambda pair: pair[0] + pair[1]
    ),
)
thinking_blocks = st.lists(
    st.one_of(
        st.builds(
            lambda thought, signature: {"type": "thinking", "thinking": thought, "signature": "SIG" + signature},
            text,
            words,
        ),
        st.builds(lambda data: {"type": "redacted_thinking", "data": "Em" + data}, words),
    ),
    min_size=1,
    max_size=2,
)


@st.composite
def chat_exchanges(draw) -> list[dict]:
    """A conversation as a client replays it: each user message answered by the assistant,
    whose tool calls are each answered by a tool message before the next reply."""
    messages: list[dict] = []
    if draw(st.booleans()):
        messages.append({"role": draw(st.sampled_from(["system", "developer"])), "content": draw(text)})
    for _ in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(user_content)})
        for _ in range(draw(st.integers(0, 2))):
            ids = draw(st.lists(call_ids, min_size=1, max_size=3, unique=True))
            reply: dict = {"role": "assistant", "content": draw(st.none() | text.filter(bool))}
            reply["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": draw(words), "arguments": draw(arguments)}}
                for call_id in ids
            ]
            if draw(st.booleans()):
                reply["thinking_blocks"] = draw(thinking_blocks)
            messages.append(reply)
            messages.extend({"role": "tool", "tool_call_id": call_id, "content": draw(text)} for call_id in ids)
        messages.append({"role": "assistant", "content": draw(text)})
    return messages


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chat_exchanges())
def test_chat_messages_read_back_exactly_as_they_were_given(messages):
    blobs = Blobs()
    records = blobs.keep(items.from_chat_messages(messages, family="anthropic"))
    assert items.to_chat_messages(records, blobs.__getitem__, family="anthropic") == messages
