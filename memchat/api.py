"""The public Python API. Every CLI command is a thin layer over one of these methods."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from pydantic import ValidationError

from memchat import lease, llm
from memchat.config import database_url
from memchat.context import Context
from memchat.errors import InvalidInput, describe_validation_error
from memchat.prompt import embeddings_for
from memchat.recollection import embed_thread
from memchat.records import ApiKeyPublic, MessageCreate, MessagePublic, SummaryPublic, ThreadPublic
from memchat.results import SearchHit
from memchat.schemas import (
    DEFAULT_TIMEOUT,
    KeyCheck,
    ThreadSettings,
    TurnOptions,
    check_text,
    options_with,
    settings_with,
)
from memchat.storage import database
from memchat.storage.repository import Store
from memchat.times import as_utc
from memchat.transfer import ImportResult, native
from memchat.turn import (
    Reply,
    build_context,
    check_pairing,
    first_title,
    named_outputs,
    rebuild_summary,
    take_turn,
    validate_text,
)

KEY_PREFIX = "mc-"
SAY_CALLBACKS = ("stream", "on_text", "on_start", "earlier")
"""What `say` takes besides its options and `on_note`: how the reply is delivered, and what is
stored before the message."""
STATS_GROUPS = (None, "model", "day", "thread")
KEY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class Memory:
    """Persistent conversation memory.

    >>> memory = Memory("chat.db")
    >>> thread = memory.new_thread(title="demo", model="memchat/echo")
    >>> memory.say(thread.id, "My name is Ada.").text
    """

    def __init__(self, db: str | None = None):
        self.store = Store(database_url(db))

    def as_tenant(self, name: str) -> Memory:
        """This memory as the tenant `name` (an API key's name) sees it: only the threads made as
        that tenant, and new threads are its own. Shares this Memory's connections."""
        view = object.__new__(Memory)
        view.store = self.store.for_tenant(name)
        return view

    @property
    def tenant(self) -> str | None:
        return self.store.tenant

    def create_key(self, name: str) -> str:
        """A new API key for `memchat serve`, returned once (only its hash is kept); its name is
        the tenant whose conversations it sees."""
        if not KEY_NAME.fullmatch(name):
            raise InvalidInput(f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        self.store.add_key(name, _key_hash(key), key[: len(KEY_PREFIX) + 6])
        return key

    def keys(self) -> list[ApiKeyPublic]:
        """Every key made, revoked ones included (their names are never reused)."""
        return self.store.keys()

    def revoke_key(self, name: str) -> ApiKeyPublic:
        """Refuse the key from the next request on; its conversations stay in the database."""
        return self.store.revoke_key(name)

    def key_holder(self, key: str | None) -> KeyCheck:
        """Whose live key `key` is (None: nobody's), whether any key is live, and whether this
        database has ever had a key."""
        return self.store.key_holder(_key_hash(key or ""))

    def close(self) -> None:
        self.store.close()

    def prepare(self) -> Memory:
        """Open the database and bring its schema up to date now (memchat otherwise does it on
        first use): a server does this at start-up, so a bad database fails before it listens."""
        self.store.prepare()
        return self

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def new_thread(
        self, settings: ThreadSettings | None = None, *, messages: Sequence[tuple[str, str]] = (), **given: Any
    ) -> ThreadPublic:
        """A new thread with `settings` (a ThreadSettings) or its fields as keywords: `labels` are
        up to 16 key/value strings kept with the thread for the caller; `api_base` sends the
        thread's turns to that endpoint (a local OpenAI-compatible server); `policy` "summary"
        condenses history that leaves the window into a stored summary; `recall` adds that many
        older messages matching each new one as excerpts, re-ranked by meaning with
        `recall_embeddings` (an embedding model, `memchat.recollection`). `messages` are (role,
        text) pairs, user or assistant, the thread starts with (made in one transaction with it).
        A model named under a provider litellm does not know is refused (`llm.check_provider`). A
        thread given no title takes one from its first user message (`title_from_message`), here or
        at the turn or `add_messages` that stores it."""
        checked, said = settings_with(settings, given), _said(messages)
        _check_providers(checked, checked.api_base)
        titled = None if checked.title else first_title(said)
        return self.store.create_thread(checked.model_copy(update={"title": titled}) if titled else checked, said)

    def add_messages(
        self, thread_id: str, messages: Sequence[tuple[str, str]], *, wait: float | None = None
    ) -> list[MessagePublic]:
        """Append (role, text) pairs, user or assistant, as said without a model call (the items a
        client adds to an OpenAI conversation); they wait for a turn in progress to end, up to
        `wait` seconds, so they never land inside it."""
        created = _said(messages)
        title = first_title(created)
        return self._under_lease(
            thread_id,
            wait,
            lambda thread, holder: self.store.append_messages(thread, created, lease_holder=holder, first_title=title),
        )

    def add_items(
        self, thread_id: str, items: Sequence[MessageCreate], *, wait: float | None = None
    ) -> list[MessagePublic]:
        """Append items of any kind as they are, without a model call (what a client adds to an
        OpenAI conversation, or an agent's session stores): each output must answer a call
        waiting in the thread or made earlier in `items`; calls may be left waiting for outputs
        to come. Like `add_messages`, they wait for a turn in progress to end."""
        created = list(items)
        title = first_title(created)

        def append(thread: str, holder: str) -> list[MessagePublic]:
            waiting = self.store.open_calls(thread)[0]
            check_pairing(waiting, created, closed=False)
            named = named_outputs(waiting, created)
            return self.store.append_messages(thread, named, lease_holder=holder, first_title=title)

        return self._under_lease(thread_id, wait, append)

    def blobs(self, hashes: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        """The media type and bytes of the images and files these hashes name (a message's parts
        refer to them by `blob`), by hash."""
        return self.store.blobs(hashes)

    def _under_lease(self, thread_id: str, wait: float | None, change: Callable[[str, str], Any]) -> Any:
        """`change(thread id, lease holder)` while this process holds the thread's turn lease,
        waiting up to `wait` seconds (default: as long as a turn may take) for a turn in progress."""
        thread = self.store.thread(thread_id)
        with lease.turn_lease(self.store, thread.id, DEFAULT_TIMEOUT if wait is None else wait) as held:
            return change(thread.id, held.holder)

    def fork(self, thread_id: str, *, at: int | None = None, wait: float | None = None) -> ThreadPublic:
        """A new thread holding this one's history up to message #`at` (default: all of it; -1:
        none) and its settings; it records where it came from (`forked_from`, `forked_at`). The
        original is left as it is. Waits for a turn in progress to end, up to `wait` seconds."""
        return self._under_lease(
            thread_id, wait, lambda thread, holder: self.store.fork_thread(thread, at, lease_holder=holder)
        )

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
        """Ask user message #`position` again, differently: a fork just before it, where `text`
        is said (with `say`'s options and callbacks; `on_note` hears the new thread's id before
        the reply). The reply's `thread_id` is the fork's; the original thread is untouched."""
        options, callbacks = _turn_options(options, turn)
        asked = self.message(thread_id, position)
        if asked.role != "user":
            raise InvalidInput(
                f"message #{position} of thread {asked.thread_id} is the {asked.role}'s: edit a user message"
            )
        validate_text(text)
        fork = self.fork(asked.thread_id, at=position - 1)
        if on_note:
            on_note(
                f"asking again in a new thread {fork.id} (thread {asked.thread_id} up to #{position - 1}); "
                "the original is unchanged"
            )
        return self.say(fork.id, text, options, on_note=on_note, **callbacks)

    def undo(self, thread_id: str) -> list[MessagePublic]:
        """Take the thread's last turn (its user message and what followed) out of its memory,
        without deleting anything: the messages are marked undone, shown by `show` and kept by
        export, but sent in no later context, recall or summary. Again: the turn before.

        Refused (ThreadBusy) while a turn is in progress on the thread: waiting for it would undo
        a reply the caller has not seen, not the last turn there was when undo was asked."""
        thread = self.store.thread(thread_id)
        busy = f"thread {thread.id} has a turn in progress; undo takes back a finished turn: try again when it ends"
        with lease.turn_lease(self.store, thread.id, 0, refusal=busy) as held:
            return self.store.undo_last_turn(thread.id, lease_holder=held.holder)

    def undo_message(self, thread_id: str, position: int, *, wait: float | None = None) -> MessagePublic:
        """Take one message out of the thread's memory, as `undo` does a turn (an item deleted
        from an OpenAI conversation)."""
        return self._under_lease(
            thread_id, wait, lambda thread, holder: self.store.undo_message(thread, position, lease_holder=holder)
        )

    def message(self, thread_id: str, position: int) -> MessagePublic:
        """The thread's message at `position` (#N in `memchat show`)."""
        return self.store.message_at(self.store.thread(thread_id).id, position)

    def configure(self, thread_id: str, settings: ThreadSettings | None = None, **changes: Any) -> ThreadPublic:
        """Change a thread's settings: those set in `settings`, or given as keywords (any of
        new_thread's); a None value returns a setting to its default."""
        checked = settings_with(settings, changes)
        if any(getattr(checked, field) for field in MODEL_SETTINGS):
            api_base = (
                checked.api_base if "api_base" in checked.model_fields_set else self.store.thread(thread_id).api_base
            )
            _check_providers(checked, api_base)
        return self.store.update_thread(thread_id, checked)

    def embed(self, thread_id: str) -> int:
        """Make now the vectors that the thread's recall by meaning (`recall_embeddings`) would
        otherwise make as turns need them: one for each message that has none, in batches; how
        many were made. Run again, it makes only what is new."""
        thread = self.store.thread(thread_id)
        embeddings = embeddings_for(thread, TurnOptions())
        if embeddings is None:
            raise InvalidInput(
                f"thread {thread.id} has no embedding model: set one with `memchat set {thread.id} --recall-embeddings MODEL`"
            )
        return embed_thread(self.store, thread.id, embeddings)

    def threads(self, *, last: int | None = None) -> list[ThreadPublic]:
        """Most recent activity first; with `last`, only the `last` most recent."""
        if last is not None and last < 1:
            raise InvalidInput(f"threads: `last` is how many threads to list, at least 1, not {last}")
        return self.store.threads(last=last)

    def thread(self, thread_id: str) -> ThreadPublic:
        return self.store.thread(thread_id)

    def usage_totals(self, thread_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Per thread (every thread, or the one given): the provider-reported prompt and
        completion tokens and the cost of every reply and summary so far (threads with none are
        left out)."""
        return self.store.usage_totals(self.store.thread(thread_id).id if thread_id else None)

    def stats(
        self, thread_id: str | None = None, *, by: str | None = None, since: datetime | None = None
    ) -> dict[str, list[dict]]:
        """Usage and cost, aggregated in the database: `turns` (model calls: how many, failed
        and cut off, prompt and completion tokens, cost, latency p50/p95) and `summaries` (the
        summary calls, counted apart), each a list of rows grouped `by` "model", "day" or
        "thread" (None: one row), over every thread or one, from `since` on. A cost litellm had
        no price for is unknown, never 0: `cost` sums the known ones and `unknown_cost` counts
        the others (all unknown: `cost` is None). What a fork inherits is not counted again."""
        if by not in STATS_GROUPS:
            raise InvalidInput(f"stats: group --by one of {', '.join(g for g in STATS_GROUPS if g)}, not {by!r}")
        resolved = self.store.thread(thread_id).id if thread_id else None
        return self.store.usage_stats(thread_id=resolved, by=by, since=as_utc(since) if since else None)

    def latest_thread(self) -> ThreadPublic:
        """The thread with the most recent activity (`memchat say --continue`)."""
        return self.store.latest_thread()

    def messages(self, thread_id: str, *, last: int | None = None) -> list[MessagePublic]:
        """The thread's messages in order (with `last`, only the newest that many)."""
        if last is not None and last < 1:
            raise InvalidInput(f"--last must be positive, not {last}")
        return self.store.messages(thread_id, last=last)

    def message_page(
        self, thread_id: str, *, after: int | None = None, limit: int = 20, newest_first: bool = False
    ) -> tuple[list[MessagePublic], bool]:
        """A page of the thread's messages after position `after` (None: the first page), and
        whether more follow: the items of an OpenAI conversation, for any length of thread."""
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"the limit must be between 1 and 1000, not {limit}")
        return self.store.message_page(
            self.store.thread(thread_id).id, after=after, limit=limit, newest_first=newest_first
        )

    def turn_in_progress(self, thread_id: str) -> bool:
        """Whether a turn holds the thread now: a `pending` message without one was interrupted
        (its process was killed) and `retry` sends it again."""
        return lease.turn_in_progress(self.store, self.store.thread(thread_id).id)

    def rename(self, thread_id: str, title: str) -> ThreadPublic:
        if not title.strip():
            raise InvalidInput("the title is empty: give the new title (a thread may also have none: `memchat set`)")
        _validated(ThreadSettings, title=title)
        return self.store.rename(thread_id, title)

    def delete(self, thread_id: str) -> str:
        return self.store.delete_thread(thread_id)

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
        """Send `text` with the thread's memory and store the reply.

        `options` (a TurnOptions), or its fields as keywords, override the thread's settings for
        this turn and bound it (`timeout` each model call, retries included; `wait` the wait for
        another turn on the thread to end, ThreadBusy after it). With `stream=True`, `on_text`
        receives the reply piece by piece as it arrives. `on_note` hears of what memchat did on
        the user's behalf (a summary made or skipped, a retry with a tighter budget). `on_start`
        receives the user's message once it is stored, before the model is called. `earlier`
        (role, text) pairs, user or assistant, are stored just before `text`, in the turn
        (another turn cannot land between them), and stay if the model call then fails, as the
        user's message does.

        An agent's turn: `tools` (function tools in Chat Completions' shape), `tool_choice` and
        `parallel_tool_calls` are options like the others; the reply may then be tool calls
        (`Reply.tool_calls`), which the caller runs and answers with `send_tool_outputs`.
        `items`: the turn's new items before `text` (tool outputs, a message with images or
        files, as `MessageCreate`s; `memchat.items` makes them from OpenAI's shapes).
        """
        options = options_with(options, settings)
        said_before = _said(earlier)
        return take_turn(
            self.store,
            thread_id,
            text,
            options,
            stream=stream,
            on_text=on_text,
            on_note=on_note,
            on_start=on_start,
            earlier=said_before,
            items=items,
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
        """Answer the calls of the model's last reply (`outputs`: each call id and what its tool
        gave back, every call answered) and take the next turn, with `text` after them if
        given. Refused, nothing stored, when a call is left unanswered or an id names no call
        that waits."""
        if not outputs:
            raise InvalidInput("no tool outputs given: answer each call of the last reply by its call_id")
        items = [
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
            items=items,
            **settings,
        )

    def retry(self, thread_id: str, options: TurnOptions | None = None, **turn: Any) -> Reply:
        """Send the thread's last unanswered message again (after a failure or a cut-off reply);
        takes the same options and callbacks as `say`."""
        return self.say(thread_id, None, options, **turn)

    def accept(self, thread_id: str) -> MessagePublic:
        """Keep the thread's cut-off last reply as if complete (it is then sent as history)."""
        return self.store.accept_partial(self.store.thread(thread_id).id)

    def context(
        self,
        thread_id: str,
        text: str | None = None,
        options: TurnOptions | None = None,
        *,
        with_dropped: bool = True,
        **settings: Any,
    ) -> Context:
        """What the next turn would send, without calling the model (so without making a
        summary that is due: `Context.summary_due` says which messages it would fold).

        With `with_dropped`, `entries` also lists the history the budget leaves out, which means
        reading all of it; without, only what is sent is read, as a turn does. `options` (or its
        fields as keywords) are the next turn's, as `say` takes them."""
        if text is not None:
            validate_text(text)
        options = options_with(options, settings)
        return build_context(self.store, thread_id, text, options, with_dropped=with_dropped)

    def summary(self, thread_id: str) -> SummaryPublic | None:
        """The thread's current summary (the newest; it folds the earlier ones), if any."""
        return self.store.current_summary(self.store.thread(thread_id).id)

    def summaries(self, thread_id: str) -> list[SummaryPublic]:
        """Every summary made for the thread, oldest first."""
        return self.store.summaries(self.store.thread(thread_id).id)

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
        """Summarize the thread again from its first message; earlier summaries are kept."""
        options = options_with(
            None,
            {
                "model": model,
                "budget": budget,
                "summary_model": summary_model,
                "timeout": timeout,
                "api_base": api_base,
            },
        )
        return rebuild_summary(self.store, thread_id, options, on_note=on_note)

    def search(self, query: str, *, thread_id: str | None = None, limit: int = 20) -> list[SearchHit]:
        """Stored messages matching `query`, best first: words (all must match), "phrases",
        OR, -word. Each hit's `snippet` marks matches; `fulltext.highlights` splits them out."""
        if limit < 1:
            raise InvalidInput(f"the limit must be positive, not {limit}")
        try:
            check_text(query)
        except ValueError as exc:
            raise InvalidInput(f"the query {exc}") from None
        thread = self.store.thread(thread_id).id if thread_id else None
        return self.store.search(query, thread_id=thread, limit=limit)

    def export(self, thread_id: str) -> dict[str, Any]:
        with self.store.snapshot():
            return native.export_thread(self.store, thread_id)

    def export_all(self) -> list[dict[str, Any]]:
        with self.store.snapshot():
            return native.export_all(self.store)

    def write_export(self, out: TextIO, thread_id: str | None = None, *, format: str = "json") -> None:
        """Stream one thread (or, with no id, every thread: a JSON array, or transcripts one
        after another) as JSON or memchat's Markdown to `out`, a page of messages at a time:
        memory stays flat however long the thread. It is all read in one snapshot of the database,
        so a change made meanwhile (a fork's origin deleted) is either all in it or not at all."""
        with self.store.snapshot():
            if format == "markdown":
                native.write_markdown(self.store, thread_id, out)
            elif thread_id is None:
                native.write_all(self.store, out)
            else:
                native.write_thread(self.store, thread_id, out)

    def import_(self, data: str | bytes | Any) -> ImportResult:
        """Create new threads from exported JSON (text or decoded); all of them or none. A thread
        whose `source` an earlier import brought in is not made again (`ImportResult.existing`):
        the readers of other histories (`memchat.transfer`) give each conversation its source."""
        return native.import_threads(self.store, data)

    def upgrade_schema(self) -> str | None:
        database.upgrade(self.store.engine)
        return database.current_revision(self.store.engine)

    def schema_revision(self) -> tuple[str | None, str | None]:
        """(the database's revision, the newest this memchat knows)."""
        return database.current_revision(self.store.engine), database.head_revision()

    def database_location(self) -> str:
        """The database file's path, or its URL with any password masked."""
        url = self.store.engine.url
        if url.get_backend_name() == "sqlite" and url.database:
            return url.database
        return url.render_as_string(hide_password=True)

    def schema_state(self) -> str:
        """The database's schema in words, with what to do about it."""
        revision, head = self.schema_revision()
        if revision == head:
            return f"{revision} (head {head}, up to date)"
        if revision is not None and revision not in database.known_revisions():
            return f"{revision} ({database.newer_memchat_needed(self.store.engine, revision)})"
        return f"{revision or 'empty'} (head {head}, needs `memchat db upgrade`)"


def _validated(schema, **values):
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from None


def _turn_options(options: TurnOptions | None, turn: dict[str, Any]) -> tuple[TurnOptions, dict[str, Any]]:
    """A turn's keywords parted into its options, checked, and the rest (`say`'s callbacks), for
    a method that checks its options before it changes anything and then calls `say`."""
    callbacks = {name: value for name, value in turn.items() if name in SAY_CALLBACKS}
    settings = {name: value for name, value in turn.items() if name not in SAY_CALLBACKS}
    return options_with(options, settings), callbacks


def _checked(what: str, text: str) -> str:
    try:
        return check_text(text)
    except ValueError as exc:
        raise InvalidInput(f"{what} {exc}") from None


MODEL_SETTINGS = {"model": "model", "summary_model": "summary model", "recall_embeddings": "embedding model"}
"""A thread's settings that name a model, and how an error names each (the last an embedding model)."""


def _check_providers(settings: ThreadSettings, api_base: str | None) -> None:
    """Each model the settings name must be under a provider litellm knows (see
    `llm.check_provider`); `api_base` is where the thread's turns go, which litellm may know."""
    for field, what in MODEL_SETTINGS.items():
        model = getattr(settings, field)
        if model:
            llm.check_provider(model, api_base=api_base, what=what, embedding=field == "recall_embeddings")


def _said(messages: Sequence[tuple[str, str]]) -> list[MessageCreate]:
    """Messages added as said (no model call): user or assistant, with text."""
    created = []
    for index, (role, text) in enumerate(messages):
        if role not in ("user", "assistant"):
            raise InvalidInput(
                f"messages[{index}]: role {role!r} cannot be added; user and assistant messages can "
                "(the system prompt is a thread setting)"
            )
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput(f"messages[{index}]: the text is empty")
        created.append(MessageCreate(role=role, content=_checked(f"messages[{index}]:", text)))
    return created
