"""Images and files attached to a message from the command line (`memchat say T --image photo.png
--file notes.pdf`), and items shown as lines a terminal reads (`show`, `chat`).

An attachment becomes a part of the user's message, checked by `memchat.items` exactly as a
part sent over HTTP is (its type, its size, a file's name), so the CLI refuses what the server
refuses and nothing is stored before every attachment has passed. A refusal names the option
and the path: `--image cat.txt: the data is not an image of a type memchat takes (...)`.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from memchat import items
from memchat.config import max_item_bytes
from memchat.errors import InvalidInput
from memchat.records import MessageCreate

REMOTE = ("https://", "http://")


def user_message(text: str | None, images: Sequence[str], files: Sequence[str]) -> MessageCreate:
    """The user's message: `text` (None: none) then each image and each file, in that order."""
    parts: list[dict] = [{"type": "text", "text": text}] if text else []
    named: list[tuple[str, str]] = [("--message", "")] if text else []
    for image in images:
        parts.append({"type": "image_url", "image_url": {"url": _image_url(image)}})
        named.append(("--image", image))
    for file in files:
        parts.append({"type": "file", "file": {"file_data": _data_url(file, "--file"), "filename": Path(file).name}})
        named.append(("--file", file))
    try:
        (record,) = items.from_chat_messages([{"role": "user", "content": parts}], field="message")
    except InvalidInput as refused:
        raise _named(refused, named) from None
    for part, (option, given) in zip(record.parts or (), named):
        if option == "--image" and not given.startswith(REMOTE):
            part["filename"] = Path(given).name
    return record


def _image_url(given: str) -> str:
    if given.startswith(REMOTE):
        return given
    return _data_url(given, "--image")


def _data_url(path: str, option: str) -> str:
    """The file's bytes as a data URL (its type is read from the bytes or the name by
    `memchat.items`), refused before it is read when it is over the limit."""
    try:
        size = os.stat(path).st_size
        if not Path(path).is_file():
            raise InvalidInput(f"{option} {path}: not a file")
        limit = max_item_bytes()
        if size > limit:
            raise InvalidInput(f"{option} {path}: {size:,} bytes, over the limit of {limit:,} (MEMCHAT_MAX_ITEM_BYTES)")
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{option} {path}: {exc.strerror or exc}") from None
    return "data:;base64," + base64.b64encode(data).decode("ascii")


def _named(refused: InvalidInput, named: list[tuple[str, str]]) -> InvalidInput:
    """`message[0].content[2].image_url.url: reason` as `--image photo.png: reason`."""
    where, _, reason = str(refused).partition(": ")
    prefix = "message[0].content["
    if where.startswith(prefix):
        index = where[len(prefix) :].partition("]")[0]
        if index.isdigit() and int(index) < len(named):
            option, given = named[int(index)]
            return InvalidInput(f"{option} {given}: {reason}")
    return refused


def lines(message) -> list[str]:
    """The item as the lines `show` prints: a message's text whole, each image or file of it as
    one line (`[image: photo.png, 212 KB]`); a call, an output (a long one cut, with a marker
    saying how long it is) and reasoning as one line each (`memchat.items.describe`)."""
    width = min(shutil.get_terminal_size((100, 24)).columns, 160) - 2
    if message.kind != "message":
        return [items.describe(message, width)]
    if message.parts is None:
        return message.content.splitlines() or [""]
    shown: list[str] = []
    for part in message.parts:
        if part["type"] in ("text", "refusal"):
            shown.extend(part["text"].splitlines())
        else:
            shown.append(items.describe(message.model_copy(update={"parts": [part]}), width))
    return shown or [""]
