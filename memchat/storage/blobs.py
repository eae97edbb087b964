"""Images' and files' bytes, stored once per content (the `blobs` table, keyed by SHA-256): a
message part refers to its blob by hash, so the same image sent a hundred times is kept once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Text, cast, delete
from sqlalchemy import select as select_columns
from sqlmodel import Session

from memchat import items
from memchat.errors import NotFound
from memchat.storage.core import StoreCore
from memchat.storage.models import Blob, Message
from memchat.storage.statements import insert_ignoring_duplicates
from memchat.times import utcnow

blobs_table = Blob.__table__
messages_table = Message.__table__


def stored_parts(session: Session, parts: Sequence[dict] | None) -> list[dict] | None:
    """`parts` as a row keeps them (`items.stored_parts`), the bytes of each written as a blob
    unless that blob is there already."""
    if not parts:
        return None if parts is None else list(parts)
    kept, data = items.stored_parts(parts)
    if data:
        known = set(
            session.execute(select_columns(blobs_table.c.sha256).where(blobs_table.c.sha256.in_(list(data)))).scalars()
        )
        types = {part["blob"]: part.get("media_type") for part in kept if part.get("blob") in data}
        now = utcnow()
        new = [
            {
                "sha256": sha,
                "media_type": types[sha] or "application/octet-stream",
                "size": len(payload),
                "data": payload,
                "created_at": now,
            }
            for sha, payload in data.items()
            if sha not in known
        ]
        if new:
            session.execute(insert_ignoring_duplicates(session, Blob), new)
    return kept


def blob_hashes(parts: Iterable[dict] | None) -> set[str]:
    return {part["blob"] for part in parts or () if part.get("blob")}


def blob_hashes_of(session: Session, thread_id: str) -> set[str]:
    """The blobs the thread's own messages refer to."""
    query = select_columns(messages_table.c.parts).where(
        messages_table.c.thread_id == thread_id, messages_table.c.parts.isnot(None)
    )
    return {sha for parts in session.execute(query).scalars() for sha in blob_hashes(parts)}


def drop_unreferenced_blobs(session: Session, hashes: Iterable[str]) -> None:
    """Delete those of `hashes` no message refers to any more (a deleted conversation's images
    are private data: they go with it, unless another message holds the same bytes)."""
    for sha in hashes:
        referenced = session.execute(
            select_columns(messages_table.c.id)
            .where(messages_table.c.parts.isnot(None), cast(messages_table.c.parts, Text).contains(sha))
            .limit(1)
        ).first()
        if referenced is None:
            session.execute(delete(blobs_table).where(blobs_table.c.sha256 == sha))


class Blobs(StoreCore):
    """Reading the bytes a message's parts refer to."""

    def blobs(self, hashes: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        """The media type and bytes of each blob asked for, by hash (NotFound if one is missing)."""
        wanted = sorted(set(hashes))
        if not wanted:
            return {}
        query = select_columns(blobs_table.c.sha256, blobs_table.c.media_type, blobs_table.c.data).where(
            blobs_table.c.sha256.in_(wanted)
        )
        with self._core_reading() as connection:
            found = {row.sha256: (row.media_type, bytes(row.data)) for row in connection.execute(query)}
        missing = [sha for sha in wanted if sha not in found]
        if missing:
            raise NotFound(f"no stored blob {missing[0]}")
        return found
