"""What the faces call on a memory, as `typing.Protocol`s: one interface, two implementations.

`ConversationMemory` is everything the CLI's commands and memchat's own HTTP API (`/memchat/v1`)
ask of a memory. `memchat.api.Memory` answers it on a database; `memchat.remote.RemoteMemory`
answers it through a running `memchat serve`, with the same return types (the records as
`ThreadPublic`, `MessagePublic`, `SummaryPublic`; a turn as `Reply`; a preview as `Context`; hits
as `SearchHit`; an import as `ImportResult`) and the same error classes. Each argument means the
same on both sides: one the server cannot honour is refused with `InvalidInput`, never dropped.

The other Protocols are what only a memory on the database itself can do, so the client has none
of them: `OperatorMemory` (API keys, the schema, where the database is, another tenant's view),
which the CLI refuses up front in client mode, and `ItemMemory` (a conversation's messages one at
a time), which the server's OpenAI-shaped endpoints call.

tests/test_conformance.py checks that `Memory` and `RemoteMemory` have exactly these methods with
these signatures, and runs one set of tests against both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from memchat.context import Context
    from memchat.records import ApiKeyPublic, MessageCreate, MessagePublic, SummaryPublic, ThreadPublic
    from memchat.results import ImportResult, Reply, SearchHit
    from memchat.schemas import KeyCheck, ThreadSettings, TurnOptions


class ConversationMemory(Protocol):
    """Threads, their messages and turns, long-term memory, usage and transfer: what a face may
    ask of a memory wherever it is (see the module's docstring)."""

    # ---- threads ---------------------------------------------------------------------------

    def new_thread(
        self, settings: ThreadSettings | None = None, *, messages: Sequence[tuple[str, str]] = (), **given: Any
    ) -> ThreadPublic: ...

    def threads(self, *, last: int | None = None) -> list[ThreadPublic]: ...

    def thread(self, thread_id: str) -> ThreadPublic: ...

    def latest_thread(self) -> ThreadPublic: ...

    def configure(self, thread_id: str, settings: ThreadSettings | None = None, **changes: Any) -> ThreadPublic: ...

    def rename(self, thread_id: str, title: str) -> ThreadPublic: ...

    def delete(self, thread_id: str) -> str: ...

    def fork(self, thread_id: str, *, at: int | None = None, wait: float | None = None) -> ThreadPublic: ...

    # ---- messages and turns ----------------------------------------------------------------

    def messages(self, thread_id: str, *, last: int | None = None) -> list[MessagePublic]: ...

    def turn_in_progress(self, thread_id: str) -> bool: ...

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
        earlier: Sequence[tuple[str, str] | MessageCreate] = (),
        items: Sequence[MessageCreate] = (),
        **settings: Any,
    ) -> Reply: ...

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
    ) -> Reply: ...

    def retry(self, thread_id: str, options: TurnOptions | None = None, **turn: Any) -> Reply: ...

    def edit(
        self,
        thread_id: str,
        position: int,
        text: str,
        options: TurnOptions | None = None,
        *,
        on_note: Callable[[str], None] | None = None,
        **turn: Any,
    ) -> Reply: ...

    def accept(self, thread_id: str) -> MessagePublic: ...

    def undo(self, thread_id: str) -> list[MessagePublic]: ...

    def context(
        self,
        thread_id: str,
        text: str | None = None,
        options: TurnOptions | None = None,
        *,
        with_dropped: bool = True,
        **settings: Any,
    ) -> Context: ...

    # ---- long-term memory ------------------------------------------------------------------

    def summary(self, thread_id: str) -> SummaryPublic | None: ...

    def summaries(self, thread_id: str) -> list[SummaryPublic]: ...

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
    ) -> SummaryPublic: ...

    def embed(self, thread_id: str) -> int: ...

    def search(self, query: str, *, thread_id: str | None = None, limit: int = 20) -> list[SearchHit]: ...

    # ---- usage -----------------------------------------------------------------------------

    def usage_totals(self, thread_id: str | None = None) -> dict[str, dict[str, Any]]: ...

    def stats(
        self, thread_id: str | None = None, *, by: str | None = None, since: datetime | None = None
    ) -> dict[str, list[dict]]: ...

    # ---- transfer --------------------------------------------------------------------------

    def export(self, thread_id: str) -> dict[str, Any]: ...

    def export_all(self) -> list[dict[str, Any]]: ...

    def write_export(self, out: TextIO, thread_id: str | None = None, *, format: str = "json") -> None: ...

    def import_(self, data: str | bytes | Any) -> ImportResult: ...

    def close(self) -> None: ...


class ItemMemory(ConversationMemory, Protocol):
    """A conversation's messages one at a time, as the OpenAI-shaped endpoints (conversations,
    responses) read and change them; memchat's own API and so the client have no form of these."""

    def message(self, thread_id: str, position: int) -> MessagePublic: ...

    def message_page(
        self, thread_id: str, *, after: int | None = None, limit: int = 20, newest_first: bool = False
    ) -> tuple[list[MessagePublic], bool]: ...

    def sourced_thread(self, source: str, settings: ThreadSettings | None = None, **given: Any) -> ThreadPublic: ...

    def add_messages(
        self, thread_id: str, messages: Sequence[tuple[str, str]], *, wait: float | None = None
    ) -> list[MessagePublic]: ...

    def undo_message(self, thread_id: str, position: int, *, wait: float | None = None) -> MessagePublic: ...

    def add_items(
        self, thread_id: str, items: Sequence[MessageCreate], *, wait: float | None = None
    ) -> list[MessagePublic]: ...

    def waiting_calls(self, thread_id: str) -> list[MessagePublic]: ...

    def blobs(self, hashes: Sequence[str]) -> dict[str, tuple[str, bytes]]: ...


class OperatorMemory(ConversationMemory, Protocol):
    """The operator's calls, on the database itself and never through a server: API keys, the
    schema, where the database is, and one tenant's view of it (`memchat list --tenant`)."""

    @property
    def tenant(self) -> str | None: ...

    def as_tenant(self, name: str) -> OperatorMemory: ...

    def prepare(self) -> OperatorMemory: ...

    def create_key(self, name: str) -> str: ...

    def keys(self) -> list[ApiKeyPublic]: ...

    def revoke_key(self, name: str) -> ApiKeyPublic: ...

    def key_holder(self, key: str | None) -> KeyCheck: ...

    def upgrade_schema(self) -> str | None: ...

    def schema_revision(self) -> tuple[str | None, str | None]: ...

    def schema_state(self) -> str: ...

    def database_location(self) -> str: ...
