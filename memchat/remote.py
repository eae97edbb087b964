"""`memchat --server URL`: the CLI as a client of a running `memchat serve`.

`RemoteMemory` is `memchat.interface.ConversationMemory` through memchat's own HTTP API
(`/memchat/v1`), so every command parses, calls and renders exactly as it does on a database:
same output, same exit codes, the server's errors turned back into memchat's (a 404 is
NotFound, exit 3; a 409 ThreadBusy, exit 7; ...). Its answers are the types `Memory` returns,
validated from the server's JSON (`ThreadPublic`, `MessagePublic`, `SummaryPublic`, `Reply`,
`Context`, `SearchHit`, `ImportResult`); an argument the server cannot honour (a thread's own
endpoint, a time-out for the server's model calls) is refused with InvalidInput, never dropped.
It needs HTTP from the standard library and pydantic for the records (the options a request
sends are checked with the server's own types, `memchat.schemas`), and imports neither
SQLAlchemy nor litellm: a whole `memchat --server URL say` costs a Python start and one
request, not the ~3 s of loading a model stack.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TextIO, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from pydantic import ValidationError

from memchat import items
from memchat.config import api_key_from_environment, server_from_environment
from memchat.context import Context, ContextEntry
from memchat.errors import (
    NO_THREADS_YET,
    InvalidInput,
    MemchatError,
    NotFound,
    ReplyCutOff,
    StorageError,
    Unanswered,
    error_from_body,
)
from memchat.records import MessageCreate, MessagePublic, SummaryPublic, ThreadPublic
from memchat.results import Reply, SearchHit
from memchat.schemas import ThreadSettings, TurnOptions, options_with, settings_with
from memchat.transfer import ImportResult, markdown

Schema = TypeVar("Schema", ThreadPublic, MessagePublic, SummaryPublic)

API = "/memchat/v1"
READ_CHUNK = 64 * 1024
SILENCE_LIMIT = 600.0
"""Seconds a server may send nothing before the client gives up on it: beyond a turn's own
provider time-out and its wait for a busy thread, so only a hung server reaches it."""


class UnreadableAnswer(StorageError):
    """The server answered, but not with what memchat's API sends (the wrong JSON, a field
    missing, a broken event): not a memchat server, or a broken one; a storage failure (exit 6)
    as an unreachable server is."""

    def __init__(self, url: str, what: str):
        super().__init__(f"the memchat server at {url} sent an answer memchat cannot read ({what})")


def server_from(option: str | None) -> str | None:
    """The server a CLI invocation talks to: `--server`, else $MEMCHAT_SERVER (empty: none)."""
    return option or server_from_environment()


class RemoteMemory:
    """`memchat.interface.ConversationMemory` over HTTP to `memchat serve` (see the module's docstring)."""

    def __init__(self, url: str, key: str | None = None, *, timeout: float | None = None):
        try:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"--server needs an http(s) URL such as http://127.0.0.1:8765, not {url!r}")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, port
        self._prefix = parts.path.rstrip("/")
        self._key = key if key is not None else api_key_from_environment()
        self._timeout = SILENCE_LIMIT if timeout is None else timeout

    # ---- threads ---------------------------------------------------------------------------

    def new_thread(
        self, settings: ThreadSettings | None = None, *, messages: Sequence[tuple[str, str]] = (), **given: Any
    ) -> ThreadPublic:
        settings = settings_with(settings, given)
        _local_only("api_base", settings.api_base, "a thread's endpoint is the server's to choose")
        if messages:
            raise InvalidInput("a thread is started with messages on the database itself, not through a server")
        return self._thread("POST", "/threads", settings.model_dump(mode="json", exclude_none=True))

    def threads(self, *, last: int | None = None) -> list[ThreadPublic]:
        query = f"?{urlencode({'last': last})}" if last is not None else ""
        return [
            self._parsed(ThreadPublic, _without_usage(data))
            for data in self._json("GET", f"/threads{query}", shape=list)
        ]

    def thread(self, thread_id: str) -> ThreadPublic:
        return self._thread("GET", f"/threads/{_part(thread_id)}")

    def latest_thread(self) -> ThreadPublic:
        threads = self.threads()
        if not threads:
            raise NotFound(NO_THREADS_YET)
        return threads[0]

    def configure(self, thread_id: str, settings: ThreadSettings | None = None, **changes: Any) -> ThreadPublic:
        settings = settings_with(settings, changes)
        if "api_base" in settings.model_fields_set:  # None too: returning it to the default is a change of it
            raise InvalidInput(
                "--api-base is not taken through a server: a thread's endpoint is the server's to choose"
            )
        return self._thread(
            "PATCH", f"/threads/{_part(thread_id)}", settings.model_dump(mode="json", exclude_unset=True)
        )

    def rename(self, thread_id: str, title: str) -> ThreadPublic:
        return self._thread("PATCH", f"/threads/{_part(thread_id)}", {"title": title})

    def delete(self, thread_id: str) -> str:
        with self._reading():
            return str(self._json("DELETE", f"/threads/{_part(thread_id)}")["id"])

    def fork(self, thread_id: str, *, at: int | None = None, wait: float | None = None) -> ThreadPublic:
        _local_only("wait", wait, "the server waits for a busy thread as long as its own settings say")
        return self._thread("POST", f"/threads/{_part(thread_id)}/fork", {"at": at})

    # ---- messages and turns ----------------------------------------------------------------

    def messages(self, thread_id: str, *, last: int | None = None) -> list[MessagePublic]:
        query = f"?{urlencode({'last': last})}" if last is not None else ""
        return self._list(MessagePublic, "GET", f"/threads/{_part(thread_id)}/messages{query}")

    def turn_in_progress(self, thread_id: str) -> bool:
        with self._reading():
            return bool(self._json("GET", f"/threads/{_part(thread_id)}/turn")["in_progress"])

    def say(
        self,
        thread_id: str,
        text: str | None,
        options: TurnOptions | None = None,
        *,
        stream: bool = False,
        on_text: Callable[[str], None] | None = None,
        on_note: Callable[[str], None] | None = None,
        on_start: Callable[[MessagePublic], None] | None = None,
        earlier: Sequence[tuple[str, str]] = (),
        items: Sequence[MessageCreate] = (),
        **settings: Any,
    ) -> Reply:
        if items:
            kind, body = "say", {"message": text, "items": _wire_items(items)}
        else:
            kind, body = ("retry", {}) if text is None else ("say", {"message": text})
        return self._asked(
            kind,
            thread_id,
            body,
            options_with(options, settings),
            stream=stream,
            on_text=on_text,
            on_note=on_note,
            on_start=on_start,
            earlier=earlier,
        )

    def send_tool_outputs(
        self,
        thread_id: str,
        outputs: Mapping[str, str],
        options: TurnOptions | None = None,
        *,
        text: str | None = None,
        stream: bool = False,
        on_text: Callable[[str], None] | None = None,
        on_note: Callable[[str], None] | None = None,
        on_start: Callable[[MessagePublic], None] | None = None,
        **settings: Any,
    ) -> Reply:
        if not outputs:
            raise InvalidInput("no tool outputs given: answer each call of the last reply by its call_id")
        answers = [
            MessageCreate(role="tool", kind="function_call_output", content=output, call_id=call_id)
            for call_id, output in outputs.items()
        ]
        return self.say(
            thread_id,
            text,
            options,
            stream=stream,
            on_text=on_text,
            on_note=on_note,
            on_start=on_start,
            items=answers,
            **settings,
        )

    def retry(self, thread_id: str, options: TurnOptions | None = None, **turn: Any) -> Reply:
        return self.say(thread_id, None, options, **turn)

    def edit(
        self,
        thread_id: str,
        position: int,
        text: str,
        options: TurnOptions | None = None,
        *,
        on_note: Callable[[str], None] | None = None,
        **turn: Any,
    ) -> Reply:
        callbacks = {name: turn.pop(name) for name in ("stream", "on_text", "on_start", "earlier") if name in turn}
        body = {"position": position, "message": text}
        return self._asked("edit", thread_id, body, options_with(options, turn), on_note=on_note, **callbacks)

    def accept(self, thread_id: str) -> MessagePublic:
        return self._one(MessagePublic, "POST", f"/threads/{_part(thread_id)}/accept", {})

    def undo(self, thread_id: str) -> list[MessagePublic]:
        return self._list(MessagePublic, "POST", f"/threads/{_part(thread_id)}/undo", {})

    def context(
        self,
        thread_id: str,
        text: str | None = None,
        options: TurnOptions | None = None,
        *,
        with_dropped: bool = True,
        **settings: Any,
    ) -> Context:
        body = {
            "message": text,
            "with_dropped": with_dropped,
            **options_with(options, settings).model_dump(mode="json", exclude_none=True),
        }
        with self._reading():
            return _context(self._json("POST", f"/threads/{_part(thread_id)}/context", body, shape=dict))

    # ---- long-term memory ------------------------------------------------------------------

    def summary(self, thread_id: str) -> SummaryPublic | None:
        made = self.summaries(thread_id)
        return made[-1] if made else None

    def summaries(self, thread_id: str) -> list[SummaryPublic]:
        return self._list(SummaryPublic, "GET", f"/threads/{_part(thread_id)}/summaries")

    def rebuild_summary(
        self,
        thread_id: str,
        *,
        model: str | None = None,
        budget: int | None = None,
        summary_model: str | None = None,
        timeout: float | None = None,
        api_base: str | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> SummaryPublic:
        options = {
            "model": model,
            "budget": budget,
            "summary_model": summary_model,
            "timeout": timeout,
            "api_base": api_base,
        }
        for name, value in options.items():
            _local_only(name, value, "the server summarizes with the thread's own settings")
        return self._one(SummaryPublic, "POST", f"/threads/{_part(thread_id)}/summaries/rebuild", {})

    def embed(self, thread_id: str) -> int:
        with self._reading():
            return int(self._json("POST", f"/threads/{_part(thread_id)}/embed")["embedded"])

    def search(self, query: str, *, thread_id: str | None = None, limit: int = 20) -> list[SearchHit]:
        from memchat.storage.fulltext import HIGHLIGHT_END, HIGHLIGHT_START

        values = {"q": query, "limit": limit, **({"thread": thread_id} if thread_id else {})}
        hits = []
        with self._reading():
            for row in self._json("GET", f"/search?{urlencode(values)}", shape=list):
                snippet, at = [], 0
                for start, end in row["highlights"]:
                    snippet += [row["snippet"][at:start], HIGHLIGHT_START, row["snippet"][start:end], HIGHLIGHT_END]
                    at = end
                snippet.append(row["snippet"][at:])
                message = self._parsed(MessagePublic, row["message"])
                hits.append(SearchHit(message, str(row["title"]), "".join(snippet), float(row["score"])))
        return hits

    # ---- usage -----------------------------------------------------------------------------

    def usage_totals(self, thread_id: str | None = None) -> dict[str, dict[str, Any]]:
        if thread_id is not None:
            answers = [self._json("GET", f"/threads/{_part(thread_id)}", shape=dict)]
        else:
            answers = self._json("GET", "/threads", shape=list)
        with self._reading():
            return {data["id"]: dict(data["usage"]) for data in answers if any(data["usage"].values())}

    def stats(
        self, thread_id: str | None = None, *, by: str | None = None, since: datetime | None = None
    ) -> dict[str, list[dict]]:
        values = {
            name: value
            for name, value in (("thread", thread_id), ("by", by), ("since", since.isoformat() if since else None))
            if value is not None
        }
        return self._json("GET", "/stats" + (f"?{urlencode(values)}" if values else ""), shape=dict)

    # ---- transfer --------------------------------------------------------------------------

    def export(self, thread_id: str) -> dict[str, Any]:
        return self._json("GET", f"/threads/{_part(thread_id)}/export", shape=dict)

    def export_all(self) -> list[dict[str, Any]]:
        return self._json("GET", "/export", shape=list)

    def write_export(self, out: TextIO, thread_id: str | None = None, *, format: str = "json") -> None:
        path = "/export" if thread_id is None else f"/threads/{_part(thread_id)}/export"
        if format == "markdown":
            exported = self._json("GET", path)
            threads = exported if isinstance(exported, list) else [exported]
            blob = markdown.exported_blobs(
                {sha: b for thread in threads for sha, b in (thread.get("blobs") or {}).items()}
            )
            with self._reading():
                for thread in threads:
                    markdown.write_thread(thread, thread["messages"], thread["summaries"], out, blob=blob)
            return
        with self._request("GET", path) as response:
            try:
                while chunk := response.read(READ_CHUNK):
                    out.write(chunk.decode("utf-8"))
            except (http.client.HTTPException, OSError) as exc:
                raise StorageError(
                    f"the export from {self.url} stopped part-way ({exc or type(exc).__name__})"
                ) from None

    def import_(self, data: str | bytes | Any) -> ImportResult:
        raw = data if isinstance(data, bytes) else (data if isinstance(data, str) else json.dumps(data)).encode("utf-8")
        answer = self._json("POST", "/import", raw, shape=dict)
        with self._reading():
            return ImportResult(
                answer["threads"],
                [(item["source"], item["thread"]) for item in answer.get("existing", [])],
                [(item["thread"], item["forked_from"]) for item in answer.get("unlinked", [])],
            )

    def close(self) -> None:
        pass

    # ---- HTTP -----------------------------------------------------------------------------

    def _asked(
        self,
        kind: str,
        thread_id: str,
        body: dict[str, Any],
        options: TurnOptions,
        *,
        stream: bool = False,
        on_text: Callable[[str], None] | None = None,
        on_note: Callable[[str], None] | None = None,
        on_start: Callable[[MessagePublic], None] | None = None,
        earlier: Sequence[tuple[str, str]] = (),
    ) -> Reply:
        """A turn of `kind` (say, retry, edit) with `say`'s options: the ones the server takes
        sent, the others refused, none dropped. The reply comes over memchat's own event stream
        (so notes and the stored user message arrive as they happen); `on_text` hears it piece by
        piece with `stream`, else whole at the end, as a local turn's does."""
        if earlier:
            raise InvalidInput("earlier messages are stored with a turn on the database itself, not through a server")
        for name in ("api_base", "timeout"):
            _local_only(name, getattr(options, name), "the server's own settings apply to its model calls")
        _local_only("wait", options.wait, "the server waits for a busy thread as long as its own settings say")
        body = {**body, **options.model_dump(mode="json", exclude_none=True)}
        reply = self._turn(
            kind, thread_id, body, on_text=on_text if stream else None, on_note=on_note, on_start=on_start
        )
        if on_text and not stream:
            on_text(reply.text)
        return reply

    def _turn(
        self,
        kind: str,
        thread_id: str,
        body: dict[str, Any],
        *,
        on_text: Callable[[str], None] | None,
        on_note: Callable[[str], None] | None,
        on_start: Callable[[MessagePublic], None] | None,
    ) -> Reply:
        """A turn over memchat's own event stream: pieces to `on_text` as they arrive, notes to
        `on_note`; a failure after the user's message was stored raised as it would be locally."""
        body = {**body, "stream": True}
        received: list[str] = []
        started: str | None = None
        stored: MessagePublic | None = None
        try:
            with self._request("POST", f"/threads/{_part(thread_id)}/{kind}", body) as response:
                for event, data in self._events(response):
                    if event == "start":
                        with self._reading():
                            stored = self._parsed(MessagePublic, data)
                        started = stored.thread_id
                        if on_start:
                            on_start(stored)
                    elif event == "note" and on_note:
                        with self._reading():
                            note = str(data["text"])
                        on_note(note)
                    elif event == "text":
                        with self._reading():
                            delta = str(data["delta"])
                        received.append(delta)
                        if on_text:
                            on_text(delta)
                    elif event == "reply":
                        with self._reading():
                            return self._reply(data)
                    elif event == "error":
                        with self._reading():
                            failure = _failure(data["status"], data)
                            unanswered_in = data.get("unanswered_in")
                        raise failure if unanswered_in is None else Unanswered(unanswered_in, stored, failure)
        except KeyboardInterrupt as interrupt:
            # Leaving closes the stream: the server stops the turn there and keeps what it sent
            # as a partial reply, as a local turn does on Ctrl-C.
            cause: BaseException = interrupt
            if received:
                cause = ReplyCutOff(
                    "interrupted",
                    "".join(received),
                    interrupted=True,
                    signal_number=getattr(interrupt, "signal_number", None),
                )
            if started is not None:
                raise Unanswered(started, stored, cause) from None
            if cause is interrupt:
                raise
            raise cause from None
        except UnreadableAnswer as failure:
            if started is not None:
                raise Unanswered(started, stored, failure) from None
            raise
        except (http.client.HTTPException, ConnectionResetError, TimeoutError) as exc:
            failure = StorageError(f"the memchat server at {self.url} broke off the turn ({exc or type(exc).__name__})")
            if started is not None:
                raise Unanswered(started, stored, failure) from None
            raise failure from None
        raise StorageError(f"the server at {self.url} ended the turn's stream without its reply")

    def _reply(self, data: dict[str, Any]) -> Reply:
        summary = self._parsed(SummaryPublic, data["summary"]) if data["summary"] is not None else None
        return Reply(
            text=str(data["text"]),
            thread_id=str(data["thread"]),
            message=self._parsed(MessagePublic, data["message"]),
            user_message=self._parsed(MessagePublic, data["user_message"]),
            context=_context(data["context"]),
            summary=summary,
            finish_reason=data["finish_reason"],
            items=tuple(self._parsed(MessagePublic, item) for item in data.get("items", ())),
            said=tuple(self._parsed(MessagePublic, item) for item in data.get("said", ())),
        )

    def _json(self, method: str, path: str, body: Any = None, *, shape: type | None = None) -> Any:
        with self._request(method, path, body) as response:
            try:
                answer = json.loads(response.read())
            except (http.client.HTTPException, OSError, ValueError, RecursionError) as exc:
                reason = exc or type(exc).__name__
                raise StorageError(f"the memchat server at {self.url} sent no readable answer ({reason})") from None
        if shape is not None and not isinstance(answer, shape):
            raise UnreadableAnswer(
                self.url, f"{'an array' if shape is list else 'an object'} expected, not JSON's {type(answer).__name__}"
            )
        return answer

    def _parsed(self, schema: type[Schema], data: Any) -> Schema:
        """`data` read as the public record `schema` (a thread's JSON less its `usage`)."""
        try:
            return schema.model_validate(data)
        except ValidationError as invalid:
            first = invalid.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the record"
            raise UnreadableAnswer(self.url, f"a {schema.__name__} whose {where}: {first['msg']}") from None

    def _one(self, schema: type[Schema], method: str, path: str, body: Any = None) -> Schema:
        return self._parsed(schema, self._json(method, path, body, shape=dict))

    def _list(self, schema: type[Schema], method: str, path: str, body: Any = None) -> list[Schema]:
        return [self._parsed(schema, data) for data in self._json(method, path, body, shape=list)]

    def _thread(self, method: str, path: str, body: Any = None) -> ThreadPublic:
        return self._parsed(ThreadPublic, _without_usage(self._json(method, path, body, shape=dict)))

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """What the server sent, read as memchat's API answers: a field missing or of the wrong
        kind is an answer memchat cannot read (exit 6), not a crash."""
        try:
            yield
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, UnreadableAnswer):
                raise
            detail = f"no {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise UnreadableAnswer(self.url, detail) from None

    def _events(self, response: http.client.HTTPResponse) -> Iterator[tuple[str, Any]]:
        """Server-sent events as (event, decoded data), read line by line as they arrive."""
        event, data = "message", []
        for raw in response:
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise UnreadableAnswer(self.url, "an event that is not UTF-8") from None
            if not line:
                if data:
                    try:
                        yield event, json.loads("\n".join(data))
                    except (ValueError, RecursionError):
                        raise UnreadableAnswer(self.url, f"a {event!r} event whose data is not JSON") from None
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))

    def _request(self, method: str, path: str, body: Any = None) -> http.client.HTTPResponse:
        if isinstance(body, bytes):
            payload, content_type = body, "application/json"
        elif body is not None:
            payload, content_type = json.dumps(body).encode("utf-8"), "application/json"
        else:
            payload, content_type = None, None
        headers = {"Accept": "application/json, text/event-stream"}
        if content_type:
            headers["Content-Type"] = content_type
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        connection_class = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        connection = connection_class(self._host, self._port, timeout=self._timeout)
        try:
            connection.request(method, f"{self._prefix}{API}{path}", body=payload, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise StorageError(f"cannot reach the memchat server at {self.url}: {reason}") from None
        if response.status >= 400:
            try:
                data = json.loads(response.read() or b"{}")
            except (ValueError, OSError, http.client.HTTPException):
                data = {}
            finally:
                connection.close()
            raise _failure(response.status, data, response.getheader("Retry-After"))
        return response


def _wire_items(records: Sequence[MessageCreate]) -> list[dict[str, Any]]:
    """A turn's items as the server reads them: Responses input items (`memchat.items`), the
    bytes of an image or a file as base64 in a data URL, so the server checks them as it checks
    any client's; an image keeps the name of the file it came from (`filename`, memchat's own)."""
    wire = []
    for record in records:
        held: dict[str, bytes] = {}
        parts = None
        if record.parts is not None:
            parts = []
            for index, part in enumerate(record.parts):
                if "data" in part:
                    held[str(index)] = part["data"]
                    part = {**{key: value for key, value in part.items() if key != "data"}, "blob": str(index)}
                parts.append(part)
        shown = record.model_copy(update={"parts": parts})
        item = items.to_responses_item(shown, held.__getitem__, item_id=None, include=_WHOLE)
        for part, given in zip(record.parts or (), item.get("content") or ()):
            if part["type"] == "image" and part.get("filename"):
                given["filename"] = part["filename"]
        wire.append(item)
    return wire


_WHOLE = (items.INPUT_IMAGE_URL, items.ENCRYPTED_CONTENT)
"""`include` values that make an item given back whole (an image with its data)."""


def _part(value: str) -> str:
    return quote(value, safe="")


def _local_only(name: str, value: Any, why: str) -> None:
    if value is not None:
        option = "--" + name.replace("_", "-")
        raise InvalidInput(f"{option} is not taken through a server: {why}")


def _without_usage(data: Any) -> Any:
    """A thread's JSON as `ThreadPublic` reads it: its `usage` is `usage_totals`' answer."""
    return {name: value for name, value in data.items() if name != "usage"} if isinstance(data, dict) else data


def _context(data: dict[str, Any]) -> Context:
    entries = [
        ContextEntry(
            role=entry["role"],
            content=entry["content"],
            kind=entry["kind"],
            tokens=entry["tokens"],
            kept=entry["kept"],
            position=entry["position"],
            span=tuple(entry["span"]) if entry["span"] else None,
            recalled=tuple(entry["recalled"]),
        )
        for entry in data["entries"]
    ]
    return Context(
        entries=entries,
        budget=data["budget"],
        room=data["room"],
        prompt_tokens=data["prompt_tokens"],
        framing_tokens=data["framing_tokens"],
        model=data["model"],
        tokenizer=data["tokenizer"],
        policy=data["policy"],
        summary_due=tuple(data["summary_due"]) if data["summary_due"] else None,
    )


def _failure(status: int, data: dict[str, Any], retry_after: str | None = None) -> MemchatError:
    """The server's error as the memchat error it stands for (its message kept as the server
    wrote it): the CLI then prints the same line and exits with the same code as locally."""
    try:
        wait = float(retry_after) if retry_after is not None else None
    except ValueError:
        wait = None
    return error_from_body(status, data, retry_after=wait)
