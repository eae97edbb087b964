"""OpenAI's Conversations API over memchat threads: a conversation is a thread (same id, so
`memchat say` and `memchat show` work on it), an item one of its items of any kind (messages
with text, images and files, function calls, their outputs, reasoning), in OpenAI's shapes."""

from __future__ import annotations

import contextlib
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from memchat.errors import InvalidInput, MemchatError, NotFound
from memchat.interface import ItemMemory
from memchat.server import shapes
from memchat.server.access import memory_of
from memchat.server.requests import (
    ConversationCreate,
    ConversationUpdate,
    ItemsCreate,
    bad,
    check_include,
    check_pairing,
    metadata_of,
    problem_of,
    read_items,
    settings_of,
    system_first,
)
from memchat.server.turns import busy_wait

router = APIRouter(prefix="/v1/conversations", tags=["Conversations"])
Scoped = Annotated[ItemMemory, Depends(memory_of)]


@router.post("")
def create_conversation(body: ConversationCreate, memory: Scoped):
    """A new conversation (thread): `items` are its first items, of any kind (a leading system
    item is its system prompt, sent first on every turn), `metadata` up to 16 string pairs,
    `memchat` its settings (model, budget, policy, recall, ...)."""
    body.refuse_unknown()
    settings = settings_of(body.memchat)
    system, records = system_first(read_items(body.items or [], "items"), "items")
    if system is not None:
        if settings.get("system") is not None:
            raise bad("give the system prompt once: as a system item or as memchat.system", "items[0]")
        settings["system"] = system
    check_pairing([], records, "items", closed=False)
    settings = {name: value for name, value in settings.items() if value is not None}
    thread = memory.new_thread(labels=metadata_of(body.metadata), **settings)
    if records:
        try:
            memory.add_items(thread.id, records)
        except BaseException:
            with contextlib.suppress(MemchatError):
                memory.delete(thread.id)
            raise
        thread = memory.thread(thread.id)
    return shapes.conversation(thread)


@router.get("/{conversation_id}")
def get_conversation(conversation_id: str, memory: Scoped):
    return shapes.conversation(memory.thread(conversation_id))


@router.post("/{conversation_id}")
def update_conversation(conversation_id: str, body: ConversationUpdate, memory: Scoped):
    """Replace the metadata and/or change settings (a null setting returns it to its default)."""
    body.refuse_unknown()
    changes = settings_of(body.memchat)
    if "metadata" in body.model_fields_set:
        changes["labels"] = metadata_of(body.metadata)
    thread = memory.thread(conversation_id)
    if changes:
        thread = memory.configure(thread.id, **changes)
    return shapes.conversation(thread)


@router.delete("/{conversation_id}")
def delete_conversation(conversation_id: str, memory: Scoped):
    deleted = memory.delete(memory.thread(conversation_id).id)
    return {"id": deleted, "object": "conversation.deleted", "deleted": True}


def included(
    include: Annotated[list[str] | None, Query()] = None,
    include_brackets: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> frozenset[str]:
    """The items endpoints' `include`, as OpenAI's reference writes it (`include=...`) and as the
    openai client sends it (`include[]=...`): a 400 unless memchat honours every value."""
    return check_include([*(include or ()), *(include_brackets or ())])


Included = Annotated[frozenset[str], Depends(included)]


@router.get("/{conversation_id}/items")
def list_items(
    conversation_id: str,
    memory: Scoped,
    include: Included,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
):
    """OpenAI's pagination: newest first by default; `after` an item id from the last page."""
    anchor = _position_in(conversation_id, after, memory) if after else None
    messages, more = memory.message_page(conversation_id, after=anchor, limit=limit, newest_first=order == "desc")
    return shapes.item_list(messages, more, shapes.blob_reader(memory.blobs), include)


@router.post("/{conversation_id}/items")
def add_items(conversation_id: str, body: ItemsCreate, memory: Scoped, include: Included):
    """Items of any kind added as they are, without a model call (waits for a turn in progress
    to end): an output must answer a call waiting in the conversation or made earlier in the
    same list; a call may wait for its output to come."""
    body.refuse_unknown()
    records = read_items(body.items, "items")
    if not records:
        raise bad("give at least one item", "items")
    for index, record in enumerate(records):
        if record.kind == "message" and record.role in ("system", "developer"):
            raise bad("a system prompt is a setting: POST the conversation with memchat.system", f"items[{index}].role")
    check_pairing(memory.waiting_calls(conversation_id), records, "items", closed=False)
    try:
        added = memory.add_items(conversation_id, records, wait=busy_wait())
    except InvalidInput as refused:
        raise problem_of(refused, "items") from None
    return shapes.item_list(added, False, shapes.blob_reader(memory.blobs), include)


@router.get("/{conversation_id}/items/{item_id}")
def get_item(conversation_id: str, item_id: str, memory: Scoped, include: Included):
    message = memory.message(conversation_id, _position_in(conversation_id, item_id, memory))
    if message.status == "undone":
        raise NotFound(f"no item {item_id!r} in conversation {conversation_id}: it was deleted")
    return shapes.item(message, shapes.blob_reader(memory.blobs), include)


def _position_in(conversation_id: str, item_id: str, memory: ItemMemory) -> int:
    """The position an item id names, which must be in this conversation: an id a client gave
    the item, else one memchat made of its place (`shapes.item_id`)."""
    thread = memory.thread(conversation_id).id
    place = shapes.item_place(item_id)
    if place is not None and place[0] == thread:
        with contextlib.suppress(NotFound):
            if memory.message(thread, place[1]).item_id is None:
                return place[1]
    after = None
    while True:
        page, more = memory.message_page(thread, after=after, limit=100)
        for message in page:
            if message.item_id == item_id:
                return message.position
        if not more:
            break
        after = page[-1].position
    raise NotFound(f"no item {item_id!r} in conversation {conversation_id}")


@router.delete("/{conversation_id}/items/{item_id}")
def delete_item(conversation_id: str, item_id: str, memory: Scoped):
    """The item leaves the conversation (its list, its later contexts) as in OpenAI's API; memchat
    keeps it, marked undone, as `memchat undo` does (waits for a turn in progress to end)."""
    position = _position_in(conversation_id, item_id, memory)
    try:
        memory.undo_message(conversation_id, position, wait=busy_wait())
    except NotFound:
        raise NotFound(f"no item {item_id!r} in conversation {conversation_id}") from None
    return shapes.conversation(memory.thread(conversation_id))
