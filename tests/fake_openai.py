"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions protocol, and the
embeddings one (`/v1/embeddings`).

Tests script its replies and faults and read back exactly what memchat sent through litellm.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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


class FakeOpenAI:
    PROMPT_TOKENS = 21
    COMPLETION_TOKENS = 5

    def __init__(self):
        self.requests: list[dict] = []
        self._replies: deque[str] = deque()
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
                        text = (
                            server._replies.popleft()
                            if server._replies and not failing
                            else f"reply {len(server.requests)}"
                        )
                    else:
                        text = ruled if isinstance(ruled, str) else ""
                    if server.echo and ruled is None:
                        text = "re: " + body["messages"][-1]["content"]
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
                    self._stream(body, text, drop)
                else:
                    self._send_json(200, server._completion(body, text))

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

            def _stream(self, body: dict, text: str, drop: int | None = None):
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

                event(
                    {
                        **base,
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                    }
                )
                for index, piece in enumerate(_pieces(text)):
                    if index == drop:
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    event({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                    with server._lock:
                        server.pieces_sent += 1
                    time.sleep(server.piece_delay)
                event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": server.finish_reason}]})
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
        """Requests for which `matches(body)` holds get `answer` (a text, a Fault, or a function
        of the body returning either) instead of the scripted replies and faults."""
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

    def reply(self, *texts: str) -> None:
        self._replies.extend(texts)

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
        return self.requests[-1]["messages"]

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def _usage(self) -> dict:
        return {
            "prompt_tokens": self.PROMPT_TOKENS,
            "completion_tokens": self.COMPLETION_TOKENS,
            "total_tokens": self.PROMPT_TOKENS + self.COMPLETION_TOKENS,
        }

    def _completion(self, body: dict, text: str) -> dict:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": self.finish_reason}
            ],
            "usage": self._usage(),
        }


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [word + (" " if i < len(words) - 1 else "") for i, word in enumerate(words)]
