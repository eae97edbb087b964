"""What the store reports back to callers on every side, in the standard library alone: a CLI
working through a server (`memchat.remote`) builds these too, and loads no SQLAlchemy."""

from __future__ import annotations

from dataclasses import dataclass, field


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
