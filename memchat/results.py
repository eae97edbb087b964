"""What a turn, a search and an import return: plain dataclasses over the public records.

They live apart from the code that makes them (`memchat.turn`, the store's search) so that a
face holding one, the client of `memchat serve` included, loads neither the database layer nor
litellm to do so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memchat.context import Context
    from memchat.records import MessagePublic, SummaryPublic


@dataclass(frozen=True)
class Reply:
    text: str
    thread_id: str
    message: MessagePublic
    user_message: MessagePublic
    context: Context
    summary: SummaryPublic | None = None
    """The summary this turn made, if it made one."""
    finish_reason: str | None = None
    """`length`: the reply stopped at the turn's max_tokens (stored as complete all the same,
    with its `finish_reason`); `tool_calls`: the model asks for tools to be run."""
    items: tuple[MessagePublic, ...] = ()
    """Everything the reply stored, in order: reasoning, the text (`message`), the tool calls."""
    said: tuple[MessagePublic, ...] = ()
    """The turn's own items as stored: tool outputs, the user's message."""

    @property
    def tool_calls(self) -> list[MessagePublic]:
        """The calls the model made (`call_id`, `name`, `arguments`): run them, then send their
        outputs (`Memory.send_tool_outputs`)."""
        return [item for item in self.items if item.kind == "function_call"]


@dataclass(frozen=True)
class SearchHit:
    message: MessagePublic
    thread_title: str
    snippet: str
    """Text around the match, matched words between fulltext.HIGHLIGHT_START and _END."""
    score: float
    """Relevance by the backend's ranking (FTS5 bm25, PostgreSQL ts_rank_cd): higher is better."""


@dataclass(frozen=True)
class ImportResult:
    """What an import did."""

    threads: list[str]
    """The threads made, in the order of the import."""
    existing: list[tuple[str, str]]
    """(source, thread id) for each conversation an earlier import already brought in: that
    thread is left as it is, and nothing is made for it."""
    unlinked: list[tuple[str, str]] = field(default_factory=list)
    """(thread made, the thread id its `forked_from` named) for each fork whose origin is no
    thread the importer may see (another tenant's, or none here): imported as a thread of its
    own, without the link."""
