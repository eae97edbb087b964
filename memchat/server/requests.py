"""Request bodies of the OpenAI face: what memchat reads from them, and the one-line 400 for
anything it cannot honour (tools OpenAI runs itself, background runs, structured output, ...),
never silently ignored, naming the field. Items of every kind are read by `memchat.items`; what
is taken without effect changes no reply: `prompt_cache_key`, a caching hint."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictBool

from memchat import items as agent_items
from memchat import turn
from memchat.errors import InvalidInput
from memchat.records import MessageCreate, MessagePublic
from memchat.schemas import ModelName, ReasoningEffort, ReplyTokens, SafeText, Temperature, TopP, check_text
from memchat.server.errors import HTTPProblem
from memchat.server.shapes import SETTINGS

TEXT_PARTS = {"input_text", "output_text", "text"}


class Loose(BaseModel):
    """A body whose other fields are checked by hand, to name what is unsupported."""

    model_config = ConfigDict(extra="allow")

    def refuse_unknown(self, accepted_defaults: dict[str, Any] | None = None) -> None:
        """A 400 for any field memchat does not implement, unless it holds the value that means
        what memchat does anyway (`store: true`, `tool_choice: "none"`, ...)."""
        for name, value in (self.model_extra or {}).items():
            if value is None or (accepted_defaults and name in accepted_defaults and value == accepted_defaults[name]):
                continue
            raise HTTPProblem(
                400, f"`{name}` is not supported by memchat serve", param=name, code="unsupported_parameter"
            )


def bad(message: str, param: str) -> HTTPProblem:
    return HTTPProblem(400, message, param=param, code="invalid_value")


def storable_text(text: str, param: str) -> str:
    """`text`, or a 400 naming the field when it holds what memchat never stores (NUL, invalid Unicode)."""
    try:
        return check_text(text)
    except ValueError as exc:
        raise bad(f"{param} {exc}", param) from None


def text_of(content: Any, param: str) -> str:
    """A message's text: a string, or a list of text parts (joined); other parts are refused."""
    if isinstance(content, str):
        return storable_text(content, param)
    if not isinstance(content, list) or not content:
        raise bad("content must be a string or a list of text parts", param)
    pieces = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise bad("a content part must be an object", where)
        kind = part.get("type")
        if kind not in TEXT_PARTS:
            raise HTTPProblem(
                400,
                f"content parts of type {kind!r} are not supported by memchat serve (text only)",
                param=f"{where}.type",
                code="unsupported_content",
            )
        if not isinstance(part.get("text"), str):
            raise bad("a text part needs `text` (a string)", f"{where}.text")
        pieces.append(storable_text(part["text"], f"{where}.text"))
    return "".join(pieces)


def message_items(value: Any, param: str) -> list[tuple[str, str]]:
    """(role, text) of each message item; roles user, assistant, system and developer."""
    if isinstance(value, str):
        return [("user", storable_text(value, param))]
    if not isinstance(value, list):
        raise bad("must be a string or a list of message items", param)
    found = []
    for index, entry in enumerate(value):
        where = f"{param}[{index}]"
        if not isinstance(entry, dict):
            raise bad("an item must be an object", where)
        kind = entry.get("type", "message")
        if kind != "message":
            raise HTTPProblem(
                400,
                f"items of type {kind!r} are not supported by memchat serve (messages only)",
                param=f"{where}.type",
                code="unsupported_item",
            )
        role = entry.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise bad(f"role must be user, assistant, system or developer, not {role!r}", f"{where}.role")
        found.append((role, text_of(entry.get("content"), f"{where}.content")))
    return found


def leading_system(items: list[tuple[str, str]], param: str) -> tuple[str | None, list[tuple[str, str]]]:
    """A system (or developer) message at the start, and the messages after it; one anywhere
    else is refused (memchat keeps one system prompt, sent first)."""
    system = None
    if items and items[0][0] in ("system", "developer"):
        system, items = items[0][1], items[1:]
    for index, (role, _) in enumerate(items):
        if role in ("system", "developer"):
            raise bad(
                "a system message can only come first (memchat sends one system prompt, first)",
                f"{param}[{index + (system is not None)}].role",
            )
    return system, items


def settings_of(value: Any, param: str = "memchat") -> dict[str, Any]:
    """The `memchat` extension field: thread settings by name (null: back to the default)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad("must be an object of thread settings", param)
    unknown = sorted(set(value) - set(SETTINGS))
    if unknown:
        raise bad(f"unknown setting {unknown[0]!r}; the settings are {', '.join(SETTINGS)}", f"{param}.{unknown[0]}")
    return dict(value)


def metadata_of(value: Any, param: str = "metadata") -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad("must be an object of string pairs", param)
    return value


class ConversationCreate(Loose):
    items: list[Any] | None = None
    metadata: dict[str, Any] | None = None
    memchat: dict[str, Any] | None = None


class ConversationUpdate(Loose):
    metadata: dict[str, Any] | None = None
    memchat: dict[str, Any] | None = None


class ItemsCreate(Loose):
    items: list[Any]


INCLUDE_HONOURED = (agent_items.ENCRYPTED_CONTENT, agent_items.INPUT_IMAGE_URL)
"""`include` values memchat gives what they ask for: a reasoning item's `encrypted_content`, an
input image's URL (both left out of items read back otherwise, as OpenAI leaves them out)."""

OPENAI_TOOLS_ONLY = "memchat runs no tools of OpenAI's; it passes function tools to the model"

INCLUDE_REFUSED = {
    "message.output_text.logprobs": "memchat does not ask the provider for log probabilities",
    "file_search_call.results": OPENAI_TOOLS_ONLY,
    "web_search_call.results": OPENAI_TOOLS_ONLY,
    "web_search_call.action.sources": OPENAI_TOOLS_ONLY,
    "computer_call_output.output.image_url": OPENAI_TOOLS_ONLY,
    "code_interpreter_call.outputs": OPENAI_TOOLS_ONLY,
}
"""The other values of OpenAI's `include`, each with why memchat cannot give what it asks for."""


def check_include(value: Any, param: str = "include") -> frozenset[str]:
    """The values of `include`, or a 400 unless memchat honours every one. The Agents SDK sends
    `include: []` with every request, which asks for nothing extra."""
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise bad("must be a list of strings", param)
    for entry in value:
        if not isinstance(entry, str):
            raise bad("must be a list of strings", param)
        if entry in INCLUDE_HONOURED:
            continue
        if entry in INCLUDE_REFUSED:
            raise HTTPProblem(
                400,
                f"`include` value {entry!r} is not supported by memchat serve ({INCLUDE_REFUSED[entry]})",
                param=param,
                code="unsupported_value",
            )
        known = ", ".join((*INCLUDE_HONOURED, *INCLUDE_REFUSED))
        raise bad(f"unknown `include` value {entry!r}; OpenAI's are {known}", param)
    return frozenset(value)


FIELD_PATH = re.compile(r"[A-Za-z_]\w*(?:\[\d+\]|\.\w+)*")


def problem_of(refused: InvalidInput, param: str) -> HTTPProblem:
    """A 400 for what `memchat.items` or a turn's pairing check refused, naming the field: the
    path its message starts with (`input[2].arguments: ...`), else `param` (OpenAI names `input`
    for a call left without its output, or an output no call waits for)."""
    message = str(refused)
    path, separator, _ = message.partition(": ")
    if separator and FIELD_PATH.fullmatch(path):
        return HTTPProblem(400, message, param=path, code="invalid_value")
    return HTTPProblem(400, message, param=param)


def read_items(value: Any, param: str) -> list[MessageCreate]:
    """The records of a Responses `input` or a Conversations `items` list (`memchat.items`), or a
    400 naming the field."""
    try:
        return agent_items.from_responses_input(value, field=param)
    except InvalidInput as refused:
        raise problem_of(refused, param) from None


def check_pairing(waiting: Sequence[MessagePublic], said: Sequence[MessageCreate], param: str, *, closed: bool) -> None:
    """The turn's own pairing check (`memchat.turn.check_pairing`), made before anything is
    stored so that its refusal names the field."""
    try:
        turn.check_pairing(waiting, said, closed=closed)
    except InvalidInput as refused:
        raise problem_of(refused, param) from None


def system_first(records: list[MessageCreate], param: str) -> tuple[str | None, list[MessageCreate]]:
    """A leading system (or developer) message of text as the turn's or thread's system prompt,
    and the items after it; a system message anywhere else is refused (memchat keeps one system
    prompt, sent first)."""
    system = None
    if records and records[0].kind == "message" and records[0].role in ("system", "developer"):
        if records[0].parts is not None:
            raise bad("a system message holds text only", f"{param}[0].content")
        system, records = records[0].content, records[1:]
    for index, record in enumerate(records):
        if record.kind == "message" and record.role in ("system", "developer"):
            raise bad(
                "a system message can only come first (memchat sends one system prompt, first)",
                f"{param}[{index + (system is not None)}].role",
            )
    return system, records


def unsupported_value(message: str, param: str) -> HTTPProblem:
    return HTTPProblem(400, message, param=param, code="unsupported_value")


class ReasoningRequest(BaseModel):
    """`reasoning` of a response request: the effort is sent to the provider as litellm's
    `reasoning_effort`; a summary asks for reasoning items in the output, which memchat does not
    store yet (issue 26), so it is refused by `ResponseCreate.refuse_unsupported`."""

    model_config = ConfigDict(extra="forbid")

    effort: ReasoningEffort | None = None
    summary: Any = None
    generate_summary: Any = None


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str


class TextRequest(BaseModel):
    """`text` of a response request: the format of the reply. memchat replies in plain text,
    so `{"type": "text"}` is what it does anyway; structured output (`json_schema`,
    `json_object`: memchat neither asks the provider for it nor checks the reply against a schema)
    and `verbosity` (not passed to the provider) are refused by `ResponseCreate.refuse_unsupported`."""

    model_config = ConfigDict(extra="forbid")

    format: TextFormat | None = None
    verbosity: Any = None


class ResponseCreate(Loose):
    """The fields a turn stores or sends are checked here, with OpenAI's bounds (`TurnOptions`
    holds the same ones for every face), so a refused request reaches neither store nor model.
    The fields an agent framework sends (the OpenAI Agents SDK: `include`, function `tools`,
    `tool_choice`, `parallel_tool_calls`) are accepted with the values memchat honours;
    `refuse_unsupported` refuses the rest."""

    model: ModelName | None = None
    input: Any = None
    conversation: Any = None
    previous_response_id: str | None = None
    instructions: SafeText | None = None
    max_output_tokens: ReplyTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    reasoning: ReasoningRequest | None = None
    text: TextRequest | None = None
    stream: StrictBool | None = None
    include: Any = None
    store: StrictBool | None = None
    truncation: Literal["auto", "disabled"] | None = None
    metadata: dict[str, str] | None = None
    tool_choice: Any = None
    parallel_tool_calls: StrictBool | None = None
    tools: Any = None
    """Function tools in the Responses API's flat shape (`memchat.items.check_tools`)."""
    prompt_cache_key: str | None = None
    """A hint for OpenAI's prompt cache: it changes no reply, and memchat's calls to the provider
    do not carry it."""

    def refuse_unsupported(self) -> None:
        """A 400 naming the first field memchat cannot honour."""
        self.refuse_unknown(RESPONSE_DEFAULTS)
        check_include(self.include)
        if self.store is False:
            raise unsupported_value("`store: false` is not supported by memchat serve: it stores every turn", "store")
        if self.truncation == "disabled":
            raise unsupported_value(
                "`truncation: disabled` is not supported by memchat serve: it always fits the conversation to its "
                "budget, as `auto` does (the thread's policy drops or summarises the oldest messages)",
                "truncation",
            )
        if self.metadata:
            raise unsupported_value(
                "memchat serve keeps no metadata on a response: give it to the conversation "
                "(`metadata` of POST /v1/conversations or /v1/conversations/{id})",
                "metadata",
            )
        self.refuse_unsupported_output()

    def refuse_unsupported_output(self) -> None:
        """A 400 for what asks the reply to be other than one stored text message."""
        for name in ("summary", "generate_summary"):
            if self.reasoning is not None and getattr(self.reasoning, name) is not None:
                raise unsupported_value(
                    f"`reasoning.{name}` is not supported by memchat serve: it asks for reasoning items in the "
                    "output, which memchat does not store (give `reasoning.effort` alone)",
                    f"reasoning.{name}",
                )
        if self.text is None:
            return
        if self.text.format is not None and self.text.format.type != "text":
            raise unsupported_value(
                f"`text.format` of type {self.text.format.type!r} is not supported by memchat serve: "
                "it replies in plain text (`text`)",
                "text.format.type",
            )
        if self.text.verbosity is not None:
            raise unsupported_value(
                "`text.verbosity` is not supported by memchat serve: memchat does not pass it to the provider",
                "text.verbosity",
            )

    @property
    def reasoning_effort(self) -> str | None:
        return self.reasoning.effort if self.reasoning is not None else None


RESPONSE_DEFAULTS = {"background": False}


class ChatCompletionCreate(Loose):
    model: ModelName
    messages: list[Any]
    max_tokens: ReplyTokens | None = None
    max_completion_tokens: ReplyTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    reasoning_effort: ReasoningEffort | None = None
    stream: StrictBool | None = None
    stream_options: dict[str, Any] | None = None
    tools: Any = None
    """Function tools, checked by `memchat.items.check_tools` (the face names what is wrong)."""
    tool_choice: Any = None
    parallel_tool_calls: StrictBool | None = None
    """Whether the model may call several tools at once: without tools it changes nothing."""


CHAT_DEFAULTS = {"n": 1, "store": True}
