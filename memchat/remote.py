"""`memchat --server URL`: the CLI as a client of a running `memchat serve`.

`RemoteMemory` answers the calls the CLI makes of `Memory` through memchat's own HTTP API
(`/memchat/v1`), so every command parses, calls and renders exactly as it does on a database:
same output, same exit codes, the server's errors turned back into memchat's (a 404 is
NotFound, exit 3; a 409 ThreadBusy, exit 7; ...). It is built on the standard library and
the pydantic-only `memchat.schemas` (the options a request sends are checked with the
server's own types) and imports neither SQLAlchemy nor litellm: a whole `memchat --server URL say` costs a
Python start and one request, not the ~3 s of loading a model stack.

Records come back as the server wrote them (the JSON of memchat's *Public models) and are
read by attribute as the models are (`Record`); contexts and replies are rebuilt as the
dataclasses the CLI renders.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import quote, urlencode, urlsplit

from memchat.config import api_key_from_environment, server_from_environment
from memchat.context import Context, ContextEntry
from memchat.errors import (
    InvalidInput,
    MemchatError,
    NotFound,
    ReplyCutOff,
    StorageError,
    Unanswered,
    error_from_body,
)
from memchat.schemas import ThreadSettings, TurnOptions, options_with, settings_with
from memchat.transfer import ImportResult, markdown

API = "/memchat/v1"
READ_CHUNK = 64 * 1024
SILENCE_LIMIT = 600.0
"""Seconds a server may send nothing before the client gives up on it: beyond a turn's own
provider time-out and its wait for a busy thread, so only a hung server reaches it."""


class UnreadableAnswer(StorageError, AttributeError):
    """The server answered, but not with what memchat's API sends (the wrong JSON, a field
    missing, a broken event): not a memchat server, or a broken one; a storage failure (exit 6)
    as an unreachable server is. An AttributeError too, so a record read for an optional field
    (`getattr(record, name, None)`) still finds it absent."""

    def __init__(self, url: str, what: str):
        super().__init__(f"the memchat server at {url} sent an answer memchat cannot read ({what})")


def server_from(option: str | None) -> str | None:
    """The server a CLI invocation talks to: `--server`, else $MEMCHAT_SERVER (empty: none)."""
    return option or server_from_environment()


class Record:
    """A record as the server sent it, read as the model it came from: by attribute, times
    (the `*_at` fields) as datetimes; `model_dump(mode="json")` gives back the very JSON."""

    def __init__(self, data: dict[str, Any], url: str):
        if not isinstance(data, dict):
            raise UnreadableAnswer(url, f"a record that is a {type(data).__name__}, not an object")
        self._data = data
        self._url = url

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            value = self._data[name]
        except KeyError:
            raise UnreadableAnswer(self._url, f"a record without its `{name}`") from None
        if name.endswith("_at") and isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                raise UnreadableAnswer(self._url, f"a record whose `{name}` is not a time") from None
        return value

    def model_dump(self, mode: str = "json", **_: Any) -> dict[str, Any]:
        return dict(self._data)

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Record:
        return Record({**self._data, **(update or {})}, self._url)


@dataclass(frozen=True)
class RemoteReply:
    """`Reply` as the CLI reads it, from the server's reply JSON."""

    text: str
    thread_id: str
    message: Record
    user_message: Record
    context: Record
    summary: Record | None


@dataclass(frozen=True)
class RemoteHit:
    """`SearchHit` as the CLI reads it: the snippet with its highlight marks put back."""

    message: Record
    thread_title: str
    snippet: str
    score: float


class RemoteMemory:
    """The `Memory` calls of the CLI, over HTTP to `memchat serve` (see the module's docstring)."""

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

    # ---- the calls the CLI makes -------------------------------------------------------

    def threads(self) -> list[Record]:
        return self._records("GET", "/threads")

    def thread(self, thread_id: str) -> Record:
        return self._record("GET", f"/threads/{_part(thread_id)}")

    def latest_thread(self) -> Record:
        threads = self.threads()
        if not threads:
            raise NotFound("no threads yet: `memchat new` starts one")
        return threads[0]

    def usage_totals(self, thread_id: str | None = None) -> dict[str, dict[str, Any]]:
        records = [self.thread(thread_id)] if thread_id is not None else self.threads()
        with self._reading():
            return {record.id: dict(record.usage) for record in records if any(record.usage.values())}

    def new_thread(
        self, settings: ThreadSettings | None = None, *, messages: Sequence[tuple[str, str]] = (), **given: Any
    ) -> Record:
        settings = settings_with(settings, given)
        _local_only("api_base", settings.api_base, "a thread's endpoint is the server's to choose")
        if messages:
            raise InvalidInput("a thread is started with messages on the database itself, not through a server")
        return self._record("POST", "/threads", settings.model_dump(mode="json", exclude_none=True))

    def configure(self, thread_id: str, settings: ThreadSettings | None = None, **changes: Any) -> Record:
        settings = settings_with(settings, changes)
        _local_only("api_base", settings.api_base, "a thread's endpoint is the server's to choose")
        return self._record("PATCH", f"/threads/{_part(thread_id)}", settings.model_dump(mode="json", exclude_unset=True))

    def rename(self, thread_id: str, title: str) -> Record:
        return self._record("PATCH", f"/threads/{_part(thread_id)}", {"title": title})

    def delete(self, thread_id: str) -> str:
        with self._reading():
            return self._json("DELETE", f"/threads/{_part(thread_id)}")["id"]

    def messages(self, thread_id: str, *, last: int | None = None) -> list[Record]:
        query = f"?{urlencode({'last': last})}" if last is not None else ""
        return self._records("GET", f"/threads/{_part(thread_id)}/messages{query}")

    def turn_in_progress(self, thread_id: str) -> bool:
        with self._reading():
            return self._json("GET", f"/threads/{_part(thread_id)}/turn")["in_progress"]

    def say(self, thread_id: str, text: str | None, options: TurnOptions | None = None, **turn: Any) -> RemoteReply:
        body = {"message": text} if text is not None else {}
        return self._turn("retry" if text is None else "say", thread_id, body, options, turn)

    def retry(self, thread_id: str, options: TurnOptions | None = None, **turn: Any) -> RemoteReply:
        return self.say(thread_id, None, options, **turn)

    def edit(self, thread_id: str, position: int, text: str, options: TurnOptions | None = None, **turn: Any) -> RemoteReply:
        return self._turn("edit", thread_id, {"position": position, "message": text}, options, turn)

    def accept(self, thread_id: str) -> Record:
        return self._record("POST", f"/threads/{_part(thread_id)}/accept", {})

    def undo(self, thread_id: str) -> list[Record]:
        return self._records("POST", f"/threads/{_part(thread_id)}/undo", {})

    def fork(self, thread_id: str, *, at: int | None = None, wait: float | None = None) -> Record:
        _local_only("wait", wait, SERVERS_WAIT)
        return self._record("POST", f"/threads/{_part(thread_id)}/fork", {"at": at})

    def context(self, thread_id: str, text: str | None = None, options: TurnOptions | None = None, **settings: Any) -> Context:
        body = {"message": text, **options_with(options, settings).model_dump(mode="json", exclude_none=True)}
        with self._reading():
            return _context(self._json("POST", f"/threads/{_part(thread_id)}/context", body))

    def summaries(self, thread_id: str) -> list[Record]:
        return self._records("GET", f"/threads/{_part(thread_id)}/summaries")

    def summary(self, thread_id: str) -> Record | None:
        made = self.summaries(thread_id)
        return made[-1] if made else None

    def rebuild_summary(self, thread_id: str, *, on_note: Callable[[str], None] | None = None, **options: Any) -> Record:
        for name, value in options.items():
            _local_only(name, value, "the server summarizes with the thread's own settings")
        return self._record("POST", f"/threads/{_part(thread_id)}/summaries/rebuild", {})

    def embed(self, thread_id: str) -> int:
        with self._reading():
            return self._json("POST", f"/threads/{_part(thread_id)}/embed")["embedded"]

    def stats(
        self, thread_id: str | None = None, *, by: str | None = None, since: datetime | None = None
    ) -> dict[str, list[dict]]:
        values = {
            name: value
            for name, value in (("thread", thread_id), ("by", by), ("since", since.isoformat() if since else None))
            if value is not None
        }
        return self._json("GET", "/stats" + (f"?{urlencode(values)}" if values else ""), shape=dict)

    def search(self, query: str, *, thread_id: str | None = None, limit: int = 20) -> list[RemoteHit]:
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
                message = {
                    "thread_id": row["thread"], "position": row["position"], "role": row["role"],
                    "status": row["status"], "created_at": row["created_at"],
                }
                hits.append(RemoteHit(Record(message, self.url), row["title"], "".join(snippet), row["score"]))
        return hits

    def write_export(self, out: TextIO, thread_id: str | None = None, *, format: str = "json") -> None:
        path = "/export" if thread_id is None else f"/threads/{_part(thread_id)}/export"
        if format == "markdown":
            exported = self._json("GET", path)
            with self._reading():
                for thread in exported if isinstance(exported, list) else [exported]:
                    markdown.write_thread(thread, thread["messages"], thread["summaries"], out)
            return
        with self._request("GET", path) as response:
            try:
                while chunk := response.read(READ_CHUNK):
                    out.write(chunk.decode("utf-8"))
            except (http.client.HTTPException, OSError) as exc:
                raise StorageError(f"the export from {self.url} stopped part-way ({exc or type(exc).__name__})") from None

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

    def __getattr__(self, name: str) -> Any:
        """The operator's calls (keys, the schema, another tenant's view) work on the database itself."""
        if name.startswith("_"):
            raise AttributeError(name)
        raise InvalidInput(
            f"this command works on the database itself, not through a server (--server / MEMCHAT_SERVER: {self.url})"
        )

    # ---- HTTP -----------------------------------------------------------------------------

    def _turn(
        self, kind: str, thread_id: str, body: dict[str, Any], options: TurnOptions | None, turn: dict[str, Any]
    ) -> RemoteReply:
        """A turn over memchat's own event stream: pieces to `on_text` as they arrive, notes to
        `on_note`; a failure after the user's message was stored raised as it would be locally.
        The reply always streams from the server (`stream` only says whether `on_text` hears it)."""
        on_text, on_note = turn.pop("on_text", None), turn.pop("on_note", None)
        on_start = turn.pop("on_start", None)
        turn.pop("stream", None)
        _local_only("earlier", turn.pop("earlier", None) or None, "memchat's own API stores one message a turn")
        options = options_with(options, turn)
        for name in ("api_base", "timeout"):
            _local_only(name, getattr(options, name), "the server's own settings apply to its model calls")
        _local_only("wait", options.wait, SERVERS_WAIT)
        body = {**body, **options.model_dump(mode="json", exclude_none=True), "stream": True}
        received: list[str] = []
        started: str | None = None
        user_message: Record | None = None
        try:
            with self._request("POST", f"/threads/{_part(thread_id)}/{kind}", body) as response:
                for event, data in self._events(response):
                    if event == "start":
                        with self._reading():
                            started = data["thread_id"]
                        user_message = Record(data, self.url)
                        if on_start:
                            on_start(user_message)
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
                            return _reply(data, self.url)
                    elif event == "error":
                        with self._reading():
                            failure = _failure(data["status"], data)
                            unanswered_in = data.get("unanswered_in")
                        raise failure if unanswered_in is None else Unanswered(unanswered_in, user_message, failure)
        except KeyboardInterrupt as interrupt:
            # Leaving closes the stream: the server stops the turn there and keeps what it sent
            # as a partial reply, as a local turn does on Ctrl-C.
            cause: BaseException = interrupt
            if received:
                cause = ReplyCutOff(
                    "interrupted; the partial reply is kept", "".join(received),
                    interrupted=True, signal_number=getattr(interrupt, "signal_number", None),
                )
            if started is not None:
                raise Unanswered(started, user_message, cause) from None
            if cause is interrupt:
                raise
            raise cause from None
        except UnreadableAnswer as failure:
            if started is not None:
                raise Unanswered(started, user_message, failure) from None
            raise
        except (http.client.HTTPException, ConnectionResetError, TimeoutError) as exc:
            failure = StorageError(f"the memchat server at {self.url} broke off the turn ({exc or type(exc).__name__})")
            if started is not None:
                raise Unanswered(started, user_message, failure) from None
            raise failure from None
        raise StorageError(f"the server at {self.url} ended the turn's stream without its reply")

    def _json(self, method: str, path: str, body: Any = None, *, shape: type | None = None) -> Any:
        with self._request(method, path, body) as response:
            try:
                answer = json.loads(response.read())
            except (http.client.HTTPException, OSError, ValueError, RecursionError) as exc:
                reason = exc or type(exc).__name__
                raise StorageError(f"the memchat server at {self.url} sent no readable answer ({reason})") from None
        if shape is not None and not isinstance(answer, shape):
            raise UnreadableAnswer(self.url, f"{'an array' if shape is list else 'an object'} expected, not JSON's {type(answer).__name__}")
        return answer

    def _record(self, method: str, path: str, body: Any = None) -> Record:
        return Record(self._json(method, path, body, shape=dict), self.url)

    def _records(self, method: str, path: str, body: Any = None) -> list[Record]:
        return [Record(data, self.url) for data in self._json(method, path, body, shape=list)]

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


def _part(value: str) -> str:
    return quote(value, safe="")


SERVERS_WAIT = "the server waits for a busy thread as long as its --busy-wait says"


def _local_only(name: str, value: Any, why: str) -> None:
    if value is not None:
        option = "--" + name.replace("_", "-")
        raise InvalidInput(f"{option} is not taken through a server: {why}")


def _reply(data: dict[str, Any], url: str) -> RemoteReply:
    summary = Record(data["summary"], url) if data.get("summary") else None
    return RemoteReply(
        text=data["text"], thread_id=data["thread"], message=Record(data["message"], url),
        user_message=Record(data["user_message"], url), context=Record(data["context"], url), summary=summary,
    )


def _context(data: dict[str, Any]) -> Context:
    entries = [
        ContextEntry(
            role=entry["role"], content=entry["content"], kind=entry["kind"], tokens=entry["tokens"], kept=entry["kept"],
            position=entry["position"], span=tuple(entry["span"]) if entry["span"] else None,
            recalled=tuple(entry["recalled"]),
        )
        for entry in data["entries"]
    ]
    return Context(
        entries=entries, budget=data["budget"], room=data["room"], prompt_tokens=data["prompt_tokens"],
        framing_tokens=data["framing_tokens"], model=data["model"], tokenizer=data["tokenizer"], policy=data["policy"],
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
