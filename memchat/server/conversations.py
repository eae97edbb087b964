"""OpenAI's Conversations API over memchat threads: a conversation is a thread (same id, so
`memchat say` and `memchat show` work on it), an item one of its messages."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from memchat.errors import NotFound
from memchat.interface import ItemMemory
from memchat.server import shapes
from memchat.server.access import memory_of
from memchat.server.requests import (
    ConversationCreate,
    ConversationUpdate,
    ItemsCreate,
    bad,
    check_include,
    leading_system,
    message_items,
    metadata_of,
    settings_of,
)
from memchat.server.turns import busy_wait

router = APIRouter(prefix="/v1/conversations", tags=["Conversations"])
Scoped = Annotated[ItemMemory, Depends(memory_of)]


@router.post("")
def create_conversation(body: ConversationCreate, memory: Scoped):
    """A new conversation (thread): `items` are its first messages (a leading system item is its
    system prompt, sent first on every turn), `metadata` up to 16 string pairs, `memchat` its
    settings (model, budget, policy, recall, ...)."""
    body.refuse_unknown()
    settings = settings_of(body.memchat)
    system, items = leading_system(message_items(body.items or [], "items"), "items")
    if system is not None:
        if settings.get("system") is not None:
            raise bad("give the system prompt once: as a system item or as memchat.system", "items[0]")
        settings["system"] = system
    settings = {name: value for name, value in settings.items() if value is not None}
    thread = memory.new_thread(labels=metadata_of(body.metadata), messages=items, **settings)
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
) -> None:
    """The items endpoints' `include`, as OpenAI's reference writes it (`include=...`) and as the
    openai client sends it (`include[]=...`): a 400 unless memchat honours every value."""
    check_include([*(include or ()), *(include_brackets or ())])


Included = Depends(included)


@router.get("/{conversation_id}/items", dependencies=[Included])
def list_items(
    conversation_id: str,
    memory: Scoped,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
):
    """OpenAI's pagination: newest first by default; `after` an item id from the last page."""
    anchor = _position_in(conversation_id, after, memory) if after else None
    messages, more = memory.message_page(conversation_id, after=anchor, limit=limit, newest_first=order == "desc")
    return shapes.item_list(messages, more)


@router.post("/{conversation_id}/items", dependencies=[Included])
def add_items(conversation_id: str, body: ItemsCreate, memory: Scoped):
    """Messages added as said, without a model call (waits for a turn in progress to end)."""
    body.refuse_unknown()
    items = message_items(body.items, "items")
    if not items:
        raise bad("give at least one item", "items")
    for index, (role, _) in enumerate(items):
        if role in ("system", "developer"):
            raise bad("a system prompt is a setting: POST the conversation with memchat.system", f"items[{index}].role")
    added = memory.add_messages(conversation_id, items)
    return shapes.item_list(added, False)


@router.get("/{conversation_id}/items/{item_id}", dependencies=[Included])
def get_item(conversation_id: str, item_id: str, memory: Scoped):
    message = memory.message(conversation_id, _position_in(conversation_id, item_id, memory))
    if message.status == "undone":
        raise NotFound(f"no item {item_id!r} in conversation {conversation_id}: it was deleted")
    return shapes.item(message)


def _position_in(conversation_id: str, item_id: str, memory: ItemMemory) -> int:
    """The position an item id names, which must be in this conversation."""
    thread, position = shapes.message_named(item_id, shapes.ITEM_PREFIX, "item")
    if thread != memory.thread(conversation_id).id:
        raise NotFound(f"no item {item_id!r} in conversation {conversation_id}")
    return position


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
