"""Agent items between OpenAI's protocols and memchat's records: pure conversions, no storage.

A thread holds items of the Responses API's kinds (`MessageBase.kind`): messages whose content
may be parts (text, images, files), function calls, their outputs, and reasoning. The faces speak
two protocols, Responses and Chat Completions; this module reads both into `MessageCreate`
records (`from_responses_input`, `from_chat_messages`), writes records back in either protocol
(`to_responses_item`, `to_chat_messages`, `to_chat_message`), checks tool definitions
(`check_tools`, `check_tool_choice`), and says an item in one line (`describe`) or as text for
summaries and recall (`as_text`). docs/agent-items.md has the shapes and their sources.

The parts a record keeps are memchat's own, the same whichever protocol brought them:

- `{"type": "text", "text": str}` (a user's or an assistant's text alike)
- `{"type": "refusal", "text": str}` (an assistant's refusal)
- `{"type": "image", "url": "https://...", "detail": d}`: a remote image, kept as its URL
- `{"type": "image", "blob": sha256, "media_type": "image/png", "size": int, "detail": d}`
- `{"type": "file", "blob": sha256, "media_type": ..., "size": int, "filename": "a.pdf"}`, or
  with `"url"` in place of the blob for a file given by URL; `"detail"` only when given.

An image or file given as data is read here as `"data": <bytes>` (with its `media_type`) in place
of `"blob"` and `"size"`; the store keeps the bytes once per content and puts their hash in the
part (`stored_parts`, `with_blob`). Every check is made before anything is stored, and each refusal
is an `InvalidInput` naming the field, as `input[2].arguments: ...`.

`parts` is None when a message is one text (given as a string or as one text part: the record's
`content` is then all of it) and for a tool output given as a string; a tool output given as a
list keeps its parts, since the Responses shape tells a string output from a list.

This is a bottom-layer module: pydantic and the standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from memchat.config import max_item_bytes
from memchat.errors import InvalidInput, MemchatError
from memchat.records import MessageCreate
from memchat.schemas import MAX_CALL_ID, MAX_MODEL_NAME, TOOL_NAME, check_text

Blob = Callable[[str], bytes]
"""Gives the stored bytes of a blob by its SHA-256 hex digest."""

Shape = Literal["responses", "chat"]

MAX_OPENAI_CALL_ID = 64
"""OpenAI's limit on a call id a client sends (`function_call_output.call_id`: 1 to 64)."""

IMAGE_DETAILS = ("auto", "low", "high", "original")
FILE_DETAILS = CHAT_IMAGE_DETAILS = ("auto", "low", "high")
DEFAULT_DETAIL = "auto"

IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
"""The magic numbers of the image types providers take (WEBP, which needs two, is `_image_type`'s)."""
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")

MESSAGE_ROLES = ("user", "assistant", "system", "developer")
ENCRYPTED_CONTENT = "reasoning.encrypted_content"
INPUT_IMAGE_URL = "message.input_image.image_url"
"""`include` values that ask for what an item read back leaves out otherwise (spec `IncludeEnum`)."""

TOOL_CHOICES = ("auto", "none", "required")
OPENAI_TOOLS = (
    "web_search",
    "web_search_preview",
    "file_search",
    "code_interpreter",
    "computer_use_preview",
    "computer",
    "image_generation",
    "mcp",
    "local_shell",
    "shell",
    "apply_patch",
)
"""Responses tool types OpenAI runs itself, which no model behind litellm runs for memchat."""

OUTPUT_EXCERPT = 500
"""The most characters of a tool output `as_text` gives summaries and recall."""


# ---- checks shared by both protocols ----------------------------------------------------------


def _bad(path: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{path}: {reason}")


def _object(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise _bad(path, f"must be an object, not {type(value).__name__}")
    return value


def _list(value: Any, path: str) -> list:
    if not isinstance(value, list):
        raise _bad(path, f"must be a list, not {type(value).__name__}")
    return value


def _text(value: Any, path: str) -> str:
    """A string every backend stores unchanged (`schemas.check_text`)."""
    if not isinstance(value, str):
        raise _bad(path, f"must be a string, not {type(value).__name__}")
    try:
        return check_text(value)
    except ValueError as exc:
        raise _bad(path, str(exc)) from None


def _call_id(value: Any, path: str) -> str:
    if value is None:
        raise _bad(path, "is missing: a call id pairs a function call with its output")
    text = _text(value, path)
    if not 1 <= len(text) <= MAX_OPENAI_CALL_ID:
        raise _bad(path, f"must have 1 to {MAX_OPENAI_CALL_ID} characters, not {len(text)}")
    return text


def _name(value: Any, path: str) -> str:
    text = _text(value, path)
    if not 1 <= len(text) <= MAX_MODEL_NAME:
        raise _bad(path, f"must have 1 to {MAX_MODEL_NAME} characters")
    return text


def _arguments(value: Any, path: str) -> str:
    """A call's arguments, kept as the exact text given once it is known to be JSON."""
    text = _text(value, path)
    try:
        json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise _bad(path, f"is not valid JSON ({exc})") from None
    return text


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _item_id(item: dict, path: str) -> str | None:
    value = item.get("id")
    if value is None:
        return None
    text = _text(value, f"{path}.id")
    if not 1 <= len(text) <= MAX_CALL_ID:
        raise _bad(f"{path}.id", f"must have 1 to {MAX_CALL_ID} characters")
    return text


def _detail(value: Any, path: str, allowed: tuple[str, ...]) -> str:
    if value is None:
        return DEFAULT_DETAIL
    if value not in allowed:
        raise _bad(path, f"must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _base64(payload: str, path: str, what: str) -> bytes:
    """Decoded base64, refused before decoding when its length alone says it is over the limit."""
    limit = max_item_bytes()
    size = len(payload) // 4 * 3 - payload[-2:].count("=")
    if size > limit:
        raise _too_large(path, what, size, limit)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(path, f"the {what} is not valid base64") from None
    if len(data) > limit:
        raise _too_large(path, what, len(data), limit)
    return data


def _too_large(path: str, what: str, size: int, limit: int) -> InvalidInput:
    return _bad(path, f"the {what} is {size:,} bytes, over the limit of {limit:,} (MEMCHAT_MAX_ITEM_BYTES)")


def _data_url(value: str, path: str, what: str) -> tuple[str | None, bytes]:
    """The media type a `data:` URL declares (None if none) and its decoded bytes."""
    header, comma, payload = value[len("data:") :].partition(",")
    if not comma:
        raise _bad(path, "is not a data URL (data:<type>;base64,<data>)")
    parameters = header.split(";")
    if parameters[-1].strip().lower() != "base64":
        raise _bad(path, f"is a data URL that is not base64; memchat takes the {what} as data:<type>;base64,<data>")
    media_type = parameters[0].strip().lower() if len(parameters) > 1 else ""
    return media_type or None, _base64(payload, path, what)


def _image_type(data: bytes) -> str | None:
    """The image's type from its first bytes, whatever its URL or file name claims."""
    for signature, media_type in IMAGE_SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _image(url: Any, detail: Any, path: str, detail_path: str, details: tuple[str, ...] = IMAGE_DETAILS) -> dict:
    """An image part from a URL: a remote one kept as its URL, a data URL decoded."""
    detail = _detail(detail, detail_path, details)
    url = _text(url, path)
    if url.startswith("data:"):
        _, data = _data_url(url, path, "image")
        media_type = _image_type(data)
        if media_type is None:
            raise _bad(path, f"the data is not an image of a type memchat takes ({', '.join(IMAGE_TYPES)})")
        return {"type": "image", "data": data, "media_type": media_type, "detail": detail}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "url": url, "detail": detail}
    raise _bad(path, "must be an http(s) URL or a data URL (data:image/png;base64,...)")


def _file(*, data: Any, url: Any, file_id: Any, filename: Any, detail: Any, path: str, keys: dict[str, str]) -> dict:
    """A file part from `file_data` (a data URL or bare base64) or `file_url`; `keys` names the
    fields in the protocol's words for the messages."""
    if file_id is not None:
        raise _bad(f"{path}.{keys['file_id']}", "memchat keeps no uploaded files; send the file itself")
    part: dict[str, Any] = {"type": "file"}
    if data is not None:
        data_path = f"{path}.{keys['data']}"
        if filename is None:
            raise _bad(f"{path}.filename", "is missing: a file given as data needs its name")
        filename = _name(filename, f"{path}.filename")
        text = _text(data, data_path)
        if text.startswith("data:"):
            media_type, part["data"] = _data_url(text, data_path, "file")
        else:
            media_type, part["data"] = None, _base64(text, data_path, "file")
        part["media_type"] = media_type or _type_of(filename)
    elif url is not None:
        url = _text(url, f"{path}.{keys['url']}")
        if not url.startswith(("https://", "http://")):
            raise _bad(f"{path}.{keys['url']}", "must be an http(s) URL")
        part["url"] = url
        if filename is not None:
            filename = _name(filename, f"{path}.filename")
    else:
        raise _bad(path, f"gives no file: send it as {keys['data']} (base64, or a data URL)")
    if filename is not None:
        part["filename"] = filename
    if detail is not None:
        part["detail"] = _detail(detail, f"{path}.detail", FILE_DETAILS)
    return part


def _type_of(filename: str) -> str:
    import mimetypes

    return mimetypes.guess_type(filename, strict=False)[0] or "application/octet-stream"


def _joined(parts: Iterable[dict], kinds: tuple[str, ...] = ("text", "refusal")) -> str:
    return "\n".join(part["text"] for part in parts if part["type"] in kinds)


def _message(role: str, content: str | list[dict], item_id: str | None) -> MessageCreate:
    """A message record: a lone text needs no parts (`content` is all of it)."""
    if isinstance(content, list) and len(content) == 1 and content[0]["type"] == "text":
        content = content[0]["text"]
    if isinstance(content, str):
        return MessageCreate(role=role, content=content, item_id=item_id)
    return MessageCreate(role=role, content=_joined(content), parts=content, item_id=item_id)


def _output(call_id: str, output: str | list[dict], item_id: str | None) -> MessageCreate:
    if isinstance(output, str):
        return MessageCreate(role="tool", kind="function_call_output", content=output, call_id=call_id, item_id=item_id)
    return MessageCreate(
        role="tool",
        kind="function_call_output",
        content=_joined(output),
        parts=output,
        call_id=call_id,
        item_id=item_id,
    )


def _call(call_id: str, name: str, arguments: str, item_id: str | None) -> MessageCreate:
    return MessageCreate(
        role="assistant",
        kind="function_call",
        content=f"{name}({arguments})",
        call_id=call_id,
        name=name,
        arguments=arguments,
        item_id=item_id,
    )


def _reasoning(
    *,
    summary: list[str],
    content: list[str],
    encrypted_content: str | None,
    thinking_blocks: list[dict],
    family: str | None,
    item_id: str | None,
) -> MessageCreate:
    text = "\n\n".join(summary) or "\n\n".join(content)
    return MessageCreate(
        role="assistant",
        kind="reasoning",
        content=text,
        item_id=item_id,
        provider_data={
            "family": family,
            "encrypted_content": encrypted_content,
            "summary": summary,
            "content": content,
            "thinking_blocks": thinking_blocks,
        },
    )


# ---- what a Responses client sends ------------------------------------------------------------


def from_responses_input(input: str | list, *, field: str = "input", family: str | None = None) -> list[MessageCreate]:
    """The records of a Responses request's `input` (or a Conversations `items` list): a string
    is one user message; a list holds messages (easy, input or output shape), `function_call`,
    `function_call_output` and `reasoning` items. Any other kind (`item_reference`, the tool
    calls OpenAI runs) is refused: memchat would lose it. `family` is the provider family that
    made the reasoning items given, when the face knows it (None: unknown, so their signed
    content is never sent to a model)."""
    if isinstance(input, str):
        return [MessageCreate(role="user", content=_text(input, field))]
    items = _list(input, field)
    return [_responses_item(item, f"{field}[{index}]", family) for index, item in enumerate(items)]


def _responses_item(item: Any, path: str, family: str | None) -> MessageCreate:
    item = _object(item, path)
    kind = item.get("type") or "message"
    if kind == "message":
        return _responses_message(item, path)
    if kind == "function_call":
        return _call(
            _call_id(item.get("call_id"), f"{path}.call_id"),
            _name(item.get("name"), f"{path}.name"),
            _arguments(item.get("arguments"), f"{path}.arguments"),
            _item_id(item, path),
        )
    if kind == "function_call_output":
        output = item.get("output")
        if not isinstance(output, str):
            output = _responses_parts(output, f"{path}.output", OUTPUT_PARTS)
        else:
            output = _text(output, f"{path}.output")
        return _output(_call_id(item.get("call_id"), f"{path}.call_id"), output, _item_id(item, path))
    if kind == "reasoning":
        return _reasoning(
            summary=_texts(item.get("summary", []), f"{path}.summary", "summary_text"),
            content=_texts(item.get("content") or [], f"{path}.content", "reasoning_text"),
            encrypted_content=_optional_text(item.get("encrypted_content"), f"{path}.encrypted_content"),
            thinking_blocks=[],
            family=family,
            item_id=_item_id(item, path),
        )
    if kind == "item_reference":
        raise _bad(f"{path}.type", "memchat resolves no item references; send the item itself")
    raise _bad(
        f"{path}.type",
        f"memchat holds no {str(kind)[:80]!r} items; it holds message, function_call, "
        "function_call_output and reasoning items",
    )


def _optional_text(value: Any, path: str) -> str | None:
    return None if value is None else _text(value, path)


def _texts(value: Any, path: str, part_type: str) -> list[str]:
    """The texts of a reasoning item's `summary` or `content` parts."""
    texts = []
    for index, part in enumerate(_list(value, path)):
        part = _object(part, f"{path}[{index}]")
        if part.get("type") != part_type:
            raise _bad(f"{path}[{index}].type", f"must be {part_type!r}, not {part.get('type')!r}")
        texts.append(_text(part.get("text"), f"{path}[{index}].text"))
    return texts


USER_PARTS = ("input_text", "input_image", "input_file")
ASSISTANT_PARTS = ("output_text", "refusal", "input_text")
OUTPUT_PARTS = USER_PARTS


def _responses_message(item: dict, path: str) -> MessageCreate:
    role = item.get("role")
    if role not in MESSAGE_ROLES:
        raise _bad(f"{path}.role", f"must be one of {', '.join(MESSAGE_ROLES)}, not {role!r}")
    content = item.get("content")
    if isinstance(content, str):
        content = _text(content, f"{path}.content")
    else:
        allowed = ASSISTANT_PARTS if role == "assistant" else USER_PARTS
        content = _responses_parts(content, f"{path}.content", allowed)
    return _message(role, content, _item_id(item, path))


RESPONSES_FILE_KEYS = {"data": "file_data", "url": "file_url", "file_id": "file_id"}


def _responses_parts(value: Any, path: str, allowed: tuple[str, ...]) -> list[dict]:
    parts = []
    for index, part in enumerate(_list(value, path)):
        where = f"{path}[{index}]"
        part = _object(part, where)
        kind = part.get("type")
        if kind not in allowed:
            raise _bad(f"{where}.type", f"must be one of {', '.join(allowed)}, not {str(kind)[:80]!r}")
        if kind in ("input_text", "output_text"):
            parts.append({"type": "text", "text": _text(part.get("text"), f"{where}.text")})
        elif kind == "refusal":
            parts.append({"type": "refusal", "text": _text(part.get("refusal"), f"{where}.refusal")})
        elif kind == "input_image":
            if part.get("image_url") is None:
                if part.get("file_id") is not None:
                    raise _bad(f"{where}.file_id", "memchat keeps no uploaded files; send the image itself")
                raise _bad(f"{where}.image_url", "is missing: an image is given by its URL or as a data URL")
            parts.append(_image(part["image_url"], part.get("detail"), f"{where}.image_url", f"{where}.detail"))
        else:
            parts.append(
                _file(
                    data=part.get("file_data"),
                    url=part.get("file_url"),
                    file_id=part.get("file_id"),
                    filename=part.get("filename"),
                    detail=part.get("detail"),
                    path=where,
                    keys=RESPONSES_FILE_KEYS,
                )
            )
    return parts


# ---- what a Chat Completions client sends -----------------------------------------------------


def from_chat_messages(
    messages: list[dict], *, field: str = "messages", family: str | None = None
) -> list[MessageCreate]:
    """The records of Chat Completions messages. An assistant message becomes a reasoning item
    (from `reasoning_content` and `thinking_blocks`, when it has them), then a message item (when
    it has text), then one `function_call` per tool call (its `id` the call id); a `tool`
    message becomes a `function_call_output`. `family`: as `from_responses_input`'s, here the
    provider family whose `thinking_blocks` the client sends back."""
    records: list[MessageCreate] = []
    for index, message in enumerate(_list(messages, field)):
        records.extend(_chat_message(message, f"{field}[{index}]", family))
    return records


CHAT_FILE_KEYS = {"data": "file.file_data", "url": "file.file_url", "file_id": "file.file_id"}


def _chat_message(message: Any, path: str, family: str | None) -> list[MessageCreate]:
    message = _object(message, path)
    role = message.get("role")
    if role == "assistant":
        return _chat_assistant(message, path, family)
    if role == "tool":
        call_id = _call_id(message.get("tool_call_id"), f"{path}.tool_call_id")
        content = message.get("content")
        if isinstance(content, str):
            return [_output(call_id, _text(content, f"{path}.content"), None)]
        return [_output(call_id, _chat_parts(content, f"{path}.content", ("text",)), None)]
    if role not in MESSAGE_ROLES:
        raise _bad(f"{path}.role", f"must be one of system, developer, user, assistant, tool, not {role!r}")
    content = message.get("content")
    if isinstance(content, str):
        return [_message(role, _text(content, f"{path}.content"), None)]
    allowed = ("text", "image_url", "file") if role == "user" else ("text",)
    return [_message(role, _chat_parts(content, f"{path}.content", allowed), None)]


def _chat_parts(value: Any, path: str, allowed: tuple[str, ...]) -> list[dict]:
    parts = []
    for index, part in enumerate(_list(value, path)):
        where = f"{path}[{index}]"
        part = _object(part, where)
        kind = part.get("type")
        if kind not in allowed:
            raise _bad(f"{where}.type", f"must be one of {', '.join(allowed)}, not {str(kind)[:80]!r}")
        if kind == "text":
            parts.append({"type": "text", "text": _text(part.get("text"), f"{where}.text")})
        elif kind == "refusal":
            parts.append({"type": "refusal", "text": _text(part.get("refusal"), f"{where}.refusal")})
        elif kind == "image_url":
            image = part.get("image_url")
            if isinstance(image, str):
                image = {"url": image}
            image = _object(image, f"{where}.image_url")
            parts.append(
                _image(
                    image.get("url"),
                    image.get("detail"),
                    f"{where}.image_url.url",
                    f"{where}.image_url.detail",
                    CHAT_IMAGE_DETAILS,
                )
            )
        else:
            file = _object(part.get("file"), f"{where}.file")
            parts.append(
                _file(
                    data=file.get("file_data"),
                    url=file.get("file_url"),
                    file_id=file.get("file_id"),
                    filename=file.get("filename"),
                    detail=None,
                    path=where,
                    keys=CHAT_FILE_KEYS,
                )
            )
    return parts


def _chat_assistant(message: dict, path: str, family: str | None) -> list[MessageCreate]:
    records = []
    reasoning = message.get("reasoning_content")
    blocks = message.get("thinking_blocks") or []
    if reasoning or blocks:
        blocks = [
            _object(block, f"{path}.thinking_blocks[{index}]")
            for index, block in enumerate(_list(blocks, f"{path}.thinking_blocks"))
        ]
        thoughts = [
            _text(block["thinking"], f"{path}.thinking_blocks[{index}].thinking")
            for index, block in enumerate(blocks)
            if isinstance(block.get("thinking"), str)
        ]
        records.append(
            _reasoning(
                summary=[_text(reasoning, f"{path}.reasoning_content")] if reasoning else [],
                content=thoughts,
                encrypted_content=None,
                thinking_blocks=blocks,
                family=family,
                item_id=None,
            )
        )
    content = message.get("content")
    calls = message.get("tool_calls") or []
    if isinstance(content, list):
        content = _chat_parts(content, f"{path}.content", ("text", "refusal"))
    elif content is not None:
        content = _text(content, f"{path}.content")
    if message.get("refusal") is not None:
        text = [{"type": "text", "text": content}] if isinstance(content, str) and content else []
        refusal = {"type": "refusal", "text": _text(message["refusal"], f"{path}.refusal")}
        content = [*(content if isinstance(content, list) else text), refusal]
    if content or (content is not None and not calls):
        records.append(_message("assistant", content, None))
    for index, call in enumerate(_list(calls, f"{path}.tool_calls")):
        where = f"{path}.tool_calls[{index}]"
        call = _object(call, where)
        if call.get("type", "function") != "function":
            raise _bad(f"{where}.type", f"memchat takes function tool calls only, not {str(call.get('type'))[:80]!r}")
        function = _object(call.get("function"), f"{where}.function")
        records.append(
            _call(
                _call_id(call.get("id"), f"{where}.id"),
                _name(function.get("name"), f"{where}.function.name"),
                _arguments(function.get("arguments"), f"{where}.function.arguments"),
                None,
            )
        )
    if not records:
        raise _bad(f"{path}.content", "is missing: an assistant message needs content or tool_calls")
    return records


# ---- blobs: what the store keeps once per content ---------------------------------------------


def stored_parts(parts: Sequence[dict]) -> tuple[list[dict], dict[str, bytes]]:
    """`parts` as a row keeps them, each part given with its bytes (`data`) referring instead to
    the blob that holds them (`with_blob`: their SHA-256 and size); and those bytes, by hash."""
    kept: list[dict] = []
    data: dict[str, bytes] = {}
    for part in parts:
        if "data" in part:
            sha256 = hashlib.sha256(part["data"]).hexdigest()
            data[sha256] = part["data"]
            part = with_blob(part, sha256, len(part["data"]))
        kept.append(part)
    return kept, data


def with_blob(part: dict, sha256: str, size: int) -> dict:
    """The part as stored: its bytes replaced by the hash of the blob that holds them, and their size."""
    stored = {key: value for key, value in part.items() if key != "data"}
    stored["blob"] = sha256
    stored["size"] = size
    return stored


def _data_url_of(part: dict, blob: Blob) -> str:
    if "url" in part:
        return part["url"]
    return f"data:{part['media_type']};base64,{base64.b64encode(blob(part['blob'])).decode('ascii')}"


# ---- what memchat sends through litellm, and Chat Completions faces read back -------------------


def to_chat_messages(items: Iterable[Any], blob: Blob, *, family: str | None) -> list[dict]:
    """The items as Chat Completions messages, which litellm takes for every provider: each
    item's own form (`to_chat_form`), each model reply's items then made one assistant message
    (`merged`)."""
    return merged([to_chat_form(item, blob, family=family) for item in items])


def to_chat_form(item: Any, blob: Blob, *, family: str | None) -> dict:
    """One item as the Chat Completions message it is sent as, on its own (`{}`: nothing is sent
    for it). A reply's items are an assistant message each, which `merged` joins: its text, a
    call in `tool_calls`, its reasoning as the `thinking_blocks` when that reasoning came from
    `family` (signed blocks go back only to the provider family that made them; other reasoning
    is left out). An output is a `tool` message whose content is text (images and files become
    one line each saying what they were, as Chat Completions tool content is text only). A
    message with no parts, or from the assistant, is `{"role", "content"}`: two keys, which the
    token counter's cache relies on."""
    kind, role = item.kind, item.role
    if kind == "function_call":
        call = {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": item.arguments}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if kind == "reasoning":
        data = item.provider_data or {}
        if family is None or data.get("family") != family or not data.get("thinking_blocks"):
            return {}
        return {"role": "assistant", "content": None, "thinking_blocks": list(data["thinking_blocks"])}
    if kind == "function_call_output":
        return {"role": "tool", "tool_call_id": item.call_id, "content": _output_text(item)}
    if item.parts is None or role == "assistant":
        return {"role": role, "content": item.content}
    return {"role": role, "content": [_chat_part(part, blob) for part in item.parts]}


def merged(messages: Iterable[dict]) -> list[dict]:
    """A ChatML list with each model reply whole: the items it was stored as (reasoning, text,
    each call) one assistant message, as providers require (the tool messages answering its
    calls must follow the message that holds them). Reasoning and text open a reply; a call joins
    the reply before it. Plain messages are left as they are; `{}` (an item not sent) and a reply
    left with neither text nor calls are dropped."""
    out: list[dict] = []
    for message in messages:
        if not message:
            continue
        previous = out[-1] if out else None
        if (
            previous is not None
            and previous.get("role") == "assistant"
            and message.get("role") == "assistant"
            and (message.get("tool_calls") or (previous.get("content") is None and not previous.get("tool_calls")))
        ):
            out[-1] = _one_reply(previous, message)
        else:
            out.append(message)
    return [message for message in out if message.get("content") is not None or "tool_calls" in message]


def _one_reply(first: dict, second: dict) -> dict:
    texts = [m["content"] for m in (first, second) if isinstance(m.get("content"), str) and m["content"]]
    joined: dict = {"role": "assistant", "content": "\n".join(texts) if texts else None}
    for key in ("tool_calls", "thinking_blocks"):
        values = [*(first.get(key) or ()), *(second.get(key) or ())]
        if values:
            joined[key] = values
    return joined


def _output_text(item: Any) -> str:
    if item.parts is None:
        return item.content
    return "\n".join(part["text"] if part["type"] in ("text", "refusal") else _placeholder(part) for part in item.parts)


def _placeholder(part: dict) -> str:
    """A line in place of an image or a file where only text can go."""
    if "url" in part:
        return f"[{part['type']}: {part['url']}]"
    name = f"{part['filename']}, " if part.get("filename") else ""
    return f"[{part['type']}: {name}{part['media_type']}, {part['size']} bytes]"


def _chat_part(part: dict, blob: Blob) -> dict:
    if part["type"] in ("text", "refusal"):
        return {"type": "text", "text": part["text"]}
    if part["type"] == "image":
        detail = part.get("detail", DEFAULT_DETAIL)
        detail = "high" if detail == "original" else detail
        return {"type": "image_url", "image_url": {"url": _data_url_of(part, blob), "detail": detail}}
    if "url" in part:
        return {"type": "text", "text": _placeholder(part)}
    return {"type": "file", "file": {"file_data": _data_url_of(part, blob), "filename": part["filename"]}}


def to_chat_message(items: Iterable[Any]) -> dict:
    """A reply's items (reasoning, assistant messages, function calls) as the one assistant
    message of a Chat Completions answer (`choices[0].message`): its text, its refusal apart,
    and its tool calls; reasoning is not part of OpenAI's message and is left out."""
    texts, refusals, calls = [], [], []
    for item in items:
        if item.kind == "function_call":
            calls.append(
                {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": item.arguments}}
            )
        elif item.kind == "message" and item.role == "assistant":
            parts = item.parts if item.parts is not None else [{"type": "text", "text": item.content}]
            texts.extend(part["text"] for part in parts if part["type"] == "text")
            refusals.extend(part["text"] for part in parts if part["type"] == "refusal")
        elif item.kind != "reasoning":
            raise MemchatError(f"a reply holds no {item.kind} item from {item.role}")
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "\n".join(texts) if texts else None,
        "refusal": "\n".join(refusals) if refusals else None,
        "annotations": [],
    }
    if calls:
        message["tool_calls"] = calls
    return message


# ---- what Responses and Conversations faces read back -----------------------------------------


def item_status(message: Any) -> str:
    """OpenAI's status of a stored item: a reply that stopped at its max_tokens is `incomplete`,
    though memchat keeps it as complete."""
    if message.status == "complete":
        return "incomplete" if message.finish_reason == "length" else "completed"
    return "in_progress" if message.status == "pending" else "incomplete"


def to_responses_item(message: Any, blob: Blob, *, item_id: str, include: Iterable[str] = frozenset()) -> dict:
    """A stored item in the shape the Responses and Conversations APIs give it back (spec
    `ItemResource`). As OpenAI does (spec `IncludeEnum`), an input message's image URL is given
    only when `include` holds `message.input_image.image_url` (else `image_url` is null), and a
    reasoning item's `encrypted_content` only with `reasoning.encrypted_content`. `item_id` is
    the id the face shows: the stored `item_id` when there is one."""
    include = frozenset(include)
    status = item_status(message)
    if message.kind == "function_call":
        return {
            "type": "function_call",
            "id": item_id,
            "call_id": message.call_id,
            "name": message.name,
            "arguments": message.arguments,
            "status": status,
        }
    if message.kind == "function_call_output":
        output: str | list[dict] = message.content
        if message.parts is not None:
            output = [_responses_part(part, blob, "user", image_urls=True) for part in message.parts]
        return {
            "type": "function_call_output",
            "id": item_id,
            "call_id": message.call_id,
            "output": output,
            "status": status,
        }
    if message.kind == "reasoning":
        data = message.provider_data or {}
        item: dict[str, Any] = {
            "type": "reasoning",
            "id": item_id,
            "summary": [{"type": "summary_text", "text": text} for text in data.get("summary", [])],
        }
        if data.get("content"):
            item["content"] = [{"type": "reasoning_text", "text": text} for text in data["content"]]
        if ENCRYPTED_CONTENT in include:
            item["encrypted_content"] = data.get("encrypted_content")
        item["status"] = status
        return item
    parts = message.parts if message.parts is not None else [{"type": "text", "text": message.content}]
    image_urls = INPUT_IMAGE_URL in include
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": message.role,
        "content": [_responses_part(part, blob, message.role, image_urls=image_urls) for part in parts],
    }


def _responses_part(part: dict, blob: Blob, role: str, *, image_urls: bool) -> dict:
    if part["type"] == "refusal":
        return {"type": "refusal", "refusal": part["text"]}
    if part["type"] == "text":
        if role == "assistant":
            return {"type": "output_text", "text": part["text"], "annotations": [], "logprobs": []}
        return {"type": "input_text", "text": part["text"]}
    if part["type"] == "image":
        url = _data_url_of(part, blob) if image_urls else None
        return {"type": "input_image", "image_url": url, "detail": part.get("detail", DEFAULT_DETAIL)}
    shown: dict[str, Any] = {"type": "input_file"}
    if "url" in part:
        shown["file_url"] = part["url"]
    else:
        shown["file_data"] = _data_url_of(part, blob)
    for key in ("filename", "detail"):
        if key in part:
            shown[key] = part[key]
    return shown


# ---- tool definitions ---------------------------------------------------------------------------


def check_tools(tools: Any, *, shape: Shape, field: str = "tools") -> list[dict]:
    """Function tool definitions, in either protocol's shape (Responses: flat; Chat Completions:
    under `function`), checked and given back in Chat Completions' shape, which litellm takes.
    A tool OpenAI runs itself (web search, file search, ...) is refused by name: no model behind
    litellm runs it for memchat."""
    checked: list[dict] = []
    names: set[str] = set()
    for index, tool in enumerate(_list(tools, field)):
        path = f"{field}[{index}]"
        tool = _object(tool, path)
        kind = tool.get("type")
        if kind != "function":
            if kind in OPENAI_TOOLS:
                raise _bad(path, f"memchat passes only function tools; {kind!r} is a tool OpenAI runs")
            raise _bad(path, f"memchat passes only function tools, not {str(kind)[:80]!r}")
        where = path
        if shape == "chat":
            where = f"{path}.function"
            tool = _object(tool.get("function"), where)
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise _bad(f"{where}.name", f"must be 1 to 64 letters, digits, _ or -, not {str(name)[:80]!r}")
        if name in names:
            raise _bad(f"{where}.name", f"{name!r} is defined twice")
        names.add(name)
        function: dict[str, Any] = {"name": name}
        if tool.get("description") is not None:
            function["description"] = _text(tool["description"], f"{where}.description")
        if tool.get("parameters") is not None:
            function["parameters"] = _object(tool["parameters"], f"{where}.parameters")
        if tool.get("strict") is not None:
            if not isinstance(tool["strict"], bool):
                raise _bad(f"{where}.strict", "must be true or false")
            function["strict"] = tool["strict"]
        checked.append({"type": "function", "function": function})
    return checked


def check_tool_choice(value: Any, tools: list[dict], *, shape: Shape, field: str = "tool_choice") -> str | dict | None:
    """`tool_choice` in Chat Completions' form (`auto`, `none`, `required`, or one named
    function); `tools` are `check_tools`' result. None: not given (the provider's default)."""
    if value is None:
        return None
    names = [tool["function"]["name"] for tool in tools]
    if value in TOOL_CHOICES:
        if value == "required" and not names:
            raise _bad(field, "'required' needs tools to choose from")
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        if shape == "chat":
            function = _object(value.get("function"), f"{field}.function")
            name, where = function.get("name"), f"{field}.function.name"
        else:
            name, where = value.get("name"), f"{field}.name"
        if name not in names:
            raise _bad(where, f"names no tool of this request: {str(name)[:80]!r}")
        return {"type": "function", "function": {"name": name}}
    raise _bad(field, "memchat takes 'auto', 'none', 'required' or one named function")


# ---- items as text --------------------------------------------------------------------------------


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024**2:
        return f"{round(size / 1024)} KB"
    return f"{size / 1024**2:.1f} MB"


def _described_part(part: dict) -> str:
    if part["type"] in ("text", "refusal"):
        return part["text"]
    if "url" in part:
        return f"[{part['type']}: {part['url']}]"
    return f"[{part['type']}: {part.get('filename') or part['media_type']}, {_size(part['size'])}]"


def _line(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


def describe(message: Any, width: int = 100) -> str:
    """The item in one plain line of at most `width` characters, for a terminal: a message's text
    with `[image: photo.png, 212 KB]` for each image or file, `call get_weather({"city":"Paris"})`,
    `output of call_1: sunny` (a long output as `[output of call_1: 1,234 chars] sunny, …`),
    `reasoning: ...`."""
    if message.kind == "function_call":
        return _line(f"call {message.name}({message.arguments})", width)
    if message.kind == "reasoning":
        return _line(f"reasoning: {message.content}" if message.content else "[reasoning]", width)
    parts = message.parts if message.parts is not None else [{"type": "text", "text": message.content}]
    text = " ".join(_described_part(part) for part in parts)
    if message.kind == "function_call_output":
        whole = f"output of {message.call_id}: {text}"
        if len(" ".join(whole.split())) <= width:
            return _line(whole, width)
        return _line(f"[output of {message.call_id}: {len(message.content):,} chars] {text}", width)
    return _line(text, width)


def as_text(message: Any) -> str:
    """The item as text a summary or recall reads: a message's text (and what its images and
    files were), a call's name and arguments, the first OUTPUT_EXCERPT characters of an output,
    a reasoning summary."""
    if message.kind == "function_call":
        return f"called {message.name}({message.arguments})"
    if message.kind == "reasoning":
        return f"reasoning: {message.content}"
    if message.kind == "function_call_output":
        text = message.content
        if len(text) > OUTPUT_EXCERPT:
            text = f"{text[:OUTPUT_EXCERPT]}… ({len(message.content):,} characters in all)"
        others = [_described_part(part) for part in message.parts or () if part["type"] not in ("text", "refusal")]
        return "\n".join([f"output of {message.call_id}: {text}", *others])
    others = [_described_part(part) for part in message.parts or () if part["type"] not in ("text", "refusal")]
    return "\n".join([message.content, *others]) if others else message.content
