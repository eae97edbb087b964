"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions protocol, and the
embeddings one (`/v1/embeddings`).

Tests script its replies and faults and read back exactly what memchat sent through litellm. A
reply may be text, tool calls (several at once, as parallel calls), reasoning, or all three
(`Answer`), answered in JSON or streamed as OpenAI streams them; what a request carried (its
messages whole, its tools, its images) is there to read afterwards.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import mimetypes
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote_to_bytes, urlsplit


@dataclass
class Fault:
    status: int
    message: str
    code: str | None = None
    headers: dict | None = None


@dataclass
class Raw:
    """An answer written as given, to play a misbehaving provider: `body` after the status line
    and headers (`None`: the connection closes right after the headers)."""

    body: bytes | None
    status: int = 200
    content_type: str = "application/json"


@dataclass
class ToolCall:
    """A function call the fake model makes. `arguments` given as a dict is sent as its JSON; given
    as a string it is sent as it is, to play a model whose arguments are not valid JSON. The id is
    made here unless given (`call_` and 24 random characters, as OpenAI's), so a test knows it
    before the reply is sent and no two replies share one."""

    name: str
    arguments: dict | str = field(default_factory=dict)
    id: str = ""

    def __post_init__(self):
        self.id = self.id or "call_" + secrets.token_hex(12)

    @property
    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)

    def as_sent(self) -> dict:
        """The call as a Chat Completions message carries it in `tool_calls`."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments_json}}


@dataclass
class Answer:
    """A reply beyond plain text, for `reply` and `on`: text (`None`: no content, as a reply of
    only tool calls has), tool calls (several are parallel calls) and reasoning, sent as
    DeepSeek's API and litellm send it (`reasoning_content`). A reply with tool calls finishes
    with `tool_calls` unless the server's `finish_reason` says otherwise (`length`: cut off)."""

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str | None = None


@dataclass
class ReceivedImage:
    """An `image_url` content part a request carried. A data URL is decoded: its media type and
    its bytes as the model would see them. A web URL is as given: the fake fetches nothing, so
    its type is guessed from its name and its size is unknown."""

    request: int
    """The request's index in `FakeOpenAI.requests`."""
    url: str
    media_type: str | None
    data: bytes | None
    detail: str | None

    @property
    def size(self) -> int | None:
        return None if self.data is None else len(self.data)


class FakeOpenAI:
    PROMPT_TOKENS = 21
    COMPLETION_TOKENS = 5

    def __init__(self):
        self.requests: list[dict] = []
        self._replies: deque[str | Answer] = deque()
        self._faults: deque[Fault | Raw] = deque()
        self._drops: deque[int] = deque()
        self.piece_delay = 0.0
        self.reply_delay = 0.0
        self.echo = False
        self.finish_reason = "stop"
        """How every reply ends: `length` plays a provider whose reply reached max_tokens."""
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        """Connections accepted (a client keeping its connection alive opens one for many requests)."""
        self.arrivals: list[float] = []
        """When each request arrived (time.monotonic()), and when each was answered."""
        self.answered: list[float] = []
        self.pieces_sent = 0
        self.gate: threading.Barrier | None = None
        """Requests wait here (outside the server's lock) before they are answered."""
        self._rules: list[tuple] = []
        self.embedding_requests: list[dict] = []
        self.embedding_faults: deque[Fault] = deque()
        self.answered_vector = None
        """Set: every embedding is answered as this value (a provider whose answer is not a vector)."""
        self.meanings: dict[str, str] = {}
        """Words embedded as another (synonyms: {"automobile": "car"}); see `embedding`."""
        self._generation = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                """No Nagle delay, as real servers (uvicorn, nginx) set: without it a reply written
                in two pieces waits for the client's delayed ACK (40 ms) on a kept-alive connection."""
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with server._lock:
                    server.connections += 1

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.endswith("/embeddings"):
                    self._embeddings(body)
                    return
                if not self.path.endswith("/chat/completions"):
                    self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.arrivals.append(time.monotonic())
                    generation = server._generation
                    gate = server.gate
                try:
                    if gate is not None:
                        try:
                            gate.wait()
                        except threading.BrokenBarrierError:
                            pass
                    time.sleep(server.reply_delay)
                    self._answer(body, generation)
                finally:
                    with server._lock:
                        server.in_flight -= 1
                        server.answered.append(time.monotonic())

            def _answer(self, body: dict, generation: int):
                with server._lock:
                    if generation != server._generation:
                        self.close_connection = True
                        return
                    server.requests.append(body)
                    ruled = next((answer for matches, answer in server._rules if matches(body)), None)
                    if callable(ruled):
                        ruled = ruled(body)
                    scripted = server._faults.popleft() if ruled is None and server._faults else ruled
                    fault = scripted if isinstance(scripted, Fault) else None
                    raw = scripted if isinstance(scripted, Raw) else None
                    if ruled is None:
                        failing = fault or raw
                        answer = (
                            server._replies.popleft()
                            if server._replies and not failing
                            else f"reply {len(server.requests)}"
                        )
                    else:
                        answer = ruled if isinstance(ruled, str | Answer) else ""
                    if server.echo and ruled is None:
                        answer = "re: " + body["messages"][-1]["content"]
                    if isinstance(answer, str):
                        answer = Answer(text=answer)
                    drop = server._drops.popleft() if server._drops and not fault and body.get("stream") else None
                if raw:
                    self._send_raw(raw)
                elif fault:
                    self._send_json(
                        fault.status,
                        {"error": {"message": fault.message, "type": "error", "code": fault.code, "param": None}},
                        fault.headers,
                    )
                elif body.get("stream"):
                    self._stream(body, answer, drop)
                else:
                    self._send_json(200, server._completion(body, answer))

            def _embeddings(self, body: dict):
                with server._lock:
                    server.embedding_requests.append(body)
                    fault = server.embedding_faults.popleft() if server.embedding_faults else None
                if fault:
                    self._send_json(
                        fault.status, {"error": {"message": fault.message, "type": "error", "code": fault.code}}
                    )
                    return
                texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                data = [
                    {"object": "embedding", "index": i, "embedding": server.answered_vector or server.embedding(t)}
                    for i, t in enumerate(texts)
                ]
                tokens = sum(len(t.split()) for t in texts)
                usage = {"prompt_tokens": tokens, "total_tokens": tokens}
                self._send_json(200, {"object": "list", "data": data, "model": body["model"], "usage": usage})

            def _send_json(self, status: int, payload: dict, headers: dict | None = None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _send_raw(self, raw: Raw):
                self.send_response(raw.status)
                self.send_header("Content-Type", raw.content_type)
                if raw.body is not None:
                    self.send_header("Content-Length", str(len(raw.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.flush()
                if raw.body is not None:
                    self.wfile.write(raw.body)
                    self.wfile.flush()
                else:
                    self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

            def _stream(self, body: dict, answer: Answer, drop: int | None = None):
                """The reply as OpenAI streams it (see `_deltas`). `drop` counts pieces: those of
                the reasoning, of the text and of each call's arguments."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                base = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": body["model"],
                }

                def event(payload: dict):
                    self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
                    self.wfile.flush()

                pieces = 0
                for delta, is_piece in _deltas(answer):
                    if is_piece and pieces == drop:
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                    if is_piece:
                        pieces += 1
                        with server._lock:
                            server.pieces_sent += 1
                        time.sleep(server.piece_delay)
                finish_reason = server._finish_reason(answer)
                event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    event({**base, "choices": [], "usage": server._usage()})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def on(self, matches, answer) -> None:
        """Requests for which `matches(body)` holds get `answer` (a text, an `Answer`, a Fault, or
        a function of the body returning one of them) instead of the scripted replies and faults.
        An `Answer` given as it is answers every such request with the same call ids: a function
        that makes a new one each time gives each reply its own."""
        self._rules.append((matches, answer))

    EMBEDDING_DIMENSIONS = 64

    def embedding(self, text: str) -> list[float]:
        """A bag of the text's words (each through `meanings`), hashed into EMBEDDING_DIMENSIONS:
        texts sharing words, or words given one meaning, are similar."""
        vector = [0.0] * self.EMBEDDING_DIMENSIONS
        for word in re.findall(r"\w+", text.lower()):
            meaning = self.meanings.get(word, word)
            vector[int(hashlib.sha256(meaning.encode()).hexdigest(), 16) % self.EMBEDDING_DIMENSIONS] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def reply(self, *texts: str | Answer) -> None:
        """The next requests are answered with these, in order: a text, or an `Answer`."""
        self._replies.extend(texts)

    def reply_tool_calls(
        self, calls: list[dict | ToolCall], text: str | None = None, reasoning: str | None = None
    ) -> list[ToolCall]:
        """The next reply calls these tools (more than one: parallel calls), each given as a
        `ToolCall` or as its fields (`{"name": "get_weather", "arguments": {"city": "Lisbon"}}`),
        beside `text` and `reasoning` if given. Returns the calls, with the ids the reply will
        carry, for the test to answer them by."""
        made = [call if isinstance(call, ToolCall) else ToolCall(**call) for call in calls]
        self.reply(Answer(text=text, tool_calls=made, reasoning=reasoning))
        return made

    def drop_after(self, pieces: int) -> None:
        """The next streamed reply breaks off (the connection closes) after `pieces` pieces."""
        self._drops.append(pieces)

    def fail(
        self, status: int, message: str = "scripted failure", code: str | None = None, headers: dict | None = None
    ) -> None:
        self._faults.append(Fault(status, message, code, headers))

    def answer_raw(self, *answers: Raw) -> None:
        """The next requests get these answers, written as they are (in turn with `fail`)."""
        self._faults.extend(answers)

    def reset(self) -> None:
        """Forget the previous test, including requests still held by `reply_delay`: a client that gave up
        earlier must not show up in the next test's `requests`."""
        with self._lock:
            self._generation += 1
            self.requests.clear()
            self.embedding_requests.clear()
            self.embedding_faults.clear()
            self.meanings = {}
            self.answered_vector = None
            self._replies.clear()
            self._faults.clear()
            self._drops.clear()
            self._rules.clear()
            self.piece_delay = 0.0
            self.reply_delay = 0.0
            self.echo = False
            self.finish_reason = "stop"
            self.max_in_flight = 0
            self.connections = 0
            self.arrivals.clear()
            self.answered.clear()
            self.pieces_sent = 0
            self.gate = None

    @property
    def last_messages(self) -> list[dict]:
        """The last request's messages, each whole as it arrived (tool calls, tool messages,
        content parts and any field a client added)."""
        return self.requests[-1]["messages"]

    @property
    def last_tools(self) -> list[dict] | None:
        """The tool definitions the last request sent (`None`: it sent none)."""
        return self.requests[-1].get("tools")

    @property
    def images_received(self) -> list[ReceivedImage]:
        """Every `image_url` part of every request since `reset`, in the order they arrived."""
        with self._lock:
            requests = list(self.requests)
        return [image for index, body in enumerate(requests) for image in _images(index, body)]

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def _usage(self) -> dict:
        return {
            "prompt_tokens": self.PROMPT_TOKENS,
            "completion_tokens": self.COMPLETION_TOKENS,
            "total_tokens": self.PROMPT_TOKENS + self.COMPLETION_TOKENS,
        }

    def _finish_reason(self, answer: Answer) -> str:
        return "tool_calls" if answer.tool_calls and self.finish_reason == "stop" else self.finish_reason

    def _completion(self, body: dict, answer: Answer) -> dict:
        message = {"role": "assistant", "content": answer.text}
        if answer.reasoning is not None:
            message["reasoning_content"] = answer.reasoning
        if answer.tool_calls:
            message["tool_calls"] = [call.as_sent() for call in answer.tool_calls]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish_reason(answer)}],
            "usage": self._usage(),
        }


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [word + (" " if i < len(words) - 1 else "") for i, word in enumerate(words)]


ARGUMENT_FRAGMENT = 8
"""Characters in each streamed piece of a call's arguments: a JSON string split anywhere, even
inside a name or a value, as a model's tokens split it."""


def _deltas(answer: Answer) -> Iterator[tuple[dict, bool]]:
    """The deltas of a streamed reply in the order OpenAI sends them, each with whether it is a
    piece (generated text, what `drop_after`, `piece_delay` and `pieces_sent` count). The role
    comes first, in a delta of its own (a text reply's content `""`, as before; `null` with no
    text), except before a lone tool call, whose first delta carries it, as OpenAI's recorded
    streams show; then the reasoning (`reasoning_content`, content null), the text, and each
    call: a delta with its index, id, type, name and empty arguments, then its arguments in
    fragments, each with the index alone."""
    calls = answer.tool_calls
    lone_call = len(calls) == 1 and answer.text is None and answer.reasoning is None
    role = {"role": "assistant", "content": "" if answer.text is not None else None}
    if not lone_call:
        yield role, False
    for piece in _pieces(answer.reasoning) if answer.reasoning is not None else []:
        yield {"content": None, "reasoning_content": piece}, True
    for piece in _pieces(answer.text) if answer.text is not None else []:
        yield {"content": piece}, True
    for index, call in enumerate(calls):
        opening = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        yield {**(role if lone_call else {}), "tool_calls": [opening]}, False
        arguments = call.arguments_json
        for start in range(0, len(arguments), ARGUMENT_FRAGMENT):
            fragment = arguments[start : start + ARGUMENT_FRAGMENT]
            yield {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}, True


def _images(request: int, body: dict) -> Iterator[ReceivedImage]:
    for message in body.get("messages") or []:
        parts = message.get("content")
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            image = part["image_url"]
            url, detail = (image, None) if isinstance(image, str) else (image["url"], image.get("detail"))
            media_type, data = _decoded(url)
            yield ReceivedImage(request, url, media_type, data, detail)


def _decoded(url: str) -> tuple[str | None, bytes | None]:
    """A data URL's media type and bytes (RFC 2397: base64 or percent-encoded); a web URL's type
    guessed from its path, and no bytes."""
    if not url.startswith("data:"):
        return mimetypes.guess_type(urlsplit(url).path)[0], None
    header, _, payload = url[len("data:") :].partition(",")
    media_type, *parameters = header.split(";")
    if "base64" not in parameters:
        return media_type or None, unquote_to_bytes(payload)
    try:
        return media_type or None, base64.b64decode(payload, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"an image's data URL is not valid base64 ({exc}): {url[:60]}...") from exc
