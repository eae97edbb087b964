"""The adapter to litellm: the only module that imports it.

Everything model-specific goes through here: token counting, model limits, the call itself
(streamed or not) and the translation of provider failures into memchat errors. litellm is
imported on first use, so commands that call no model do not pay for it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from memchat.config import (
    debug_enabled,
    provider_endpoint_from_environment,
    retry_backoff_seconds,
    use_bundled_model_costs,
)
from memchat.context import Counter, MessageCost
from memchat.echo import ECHO_MODEL, echo_reply
from memchat.errors import ContextTooLong, InvalidInput, ProviderError, ReplyCutOff
from memchat.redact import mask_url_passwords, redact
from memchat.schemas import DEFAULT_TIMEOUT, storable
from memchat.tokens import Tokenizer

MAX_ATTEMPTS = 6

OFFLINE_HINT = "try `--model memchat/echo`, which works offline with no key"
ECHO_PROVIDER = "memchat"
"""The provider part of `memchat/echo`, registered with litellm as a custom provider."""


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None
    latency_ms: int
    replaced: int = 0
    """Characters of the reply no database stores (NUL, lone surrogates), replaced by U+FFFD."""
    finish_reason: str | None = None
    """Why the reply ended, as the provider said: `stop`, `tool_calls`, or `length` when it
    reached max_tokens."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The tools the model asks the caller to run (several: parallel calls), in its order."""
    reasoning: Reasoning | None = None
    """What a reasoning model returned besides its answer, if the provider passed it on."""


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str
    """JSON text, exactly as the model wrote it."""


@dataclass(frozen=True)
class Reasoning:
    text: str
    """litellm's `reasoning_content`: the reasoning (or its summary) as text."""
    thinking_blocks: tuple[dict, ...] = ()
    """Anthropic's thinking blocks, signatures included, verbatim: sent back with the turn that
    used a tool, and only to the provider family that signed them."""
    family: str | None = None
    """The provider (litellm's name) whose model made it."""


def load():
    """Load litellm now rather than at the first model call (seconds of imports): an interactive
    session does it while its user types the first message. Returns the module."""
    return _litellm()


@lru_cache(maxsize=1)
def _litellm():
    use_bundled_model_costs()
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    litellm.drop_params = True
    # litellm would download Hugging Face tokenizers for llama/cohere model names, retrying for
    # tens of seconds offline; memchat never touches the network except for the model call.
    litellm.disable_hf_tokenizer_download = True
    if not debug_enabled():
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    litellm.custom_provider_map = [
        item for item in litellm.custom_provider_map if item.get("provider") != ECHO_PROVIDER
    ] + [{"provider": ECHO_PROVIDER, "custom_handler": _echo_handler(litellm)}]
    litellm.utils.custom_llm_setup()
    return litellm


def _echo_handler(litellm):
    from litellm import CustomLLM
    from litellm.types.utils import GenericStreamingChunk

    def respond(messages: list[dict], optional_params: dict | None) -> tuple[str, dict, str]:
        prompt_tokens = litellm.token_counter(model=ECHO_MODEL, messages=messages)
        text = echo_reply(messages, prompt_tokens)
        limit = (optional_params or {}).get("max_tokens") or (optional_params or {}).get("max_completion_tokens")
        finish = "stop"
        if limit and _echo_tokens(litellm, text) > limit:
            text, finish = _cut_to(litellm, text, int(limit)), "length"
        completion_tokens = _echo_tokens(litellm, text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        return text, usage, finish

    class EchoLLM(CustomLLM):
        """`memchat/echo`: an offline model reached through litellm's custom-provider mechanism;
        like a real model it stops at `max_tokens`."""

        def completion(self, model, messages, *args, optional_params=None, **kwargs):
            text, usage, finish = respond(messages, optional_params)
            return litellm.ModelResponse(
                model=ECHO_MODEL,
                choices=[{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}],
                usage=usage,
            )

        def streaming(self, model, messages, *args, optional_params=None, **kwargs) -> Iterator[GenericStreamingChunk]:
            text, usage, finish = respond(messages, optional_params)
            words = text.split(" ")
            for i, word in enumerate(words):
                piece = word if i == len(words) - 1 else word + " "
                yield GenericStreamingChunk(text=piece, is_finished=False, finish_reason="", usage=None, index=0)
            yield GenericStreamingChunk(text="", is_finished=True, finish_reason=finish, usage=usage, index=0)

    return EchoLLM()


def _echo_tokens(litellm, text: str) -> int:
    return litellm.token_counter(model=ECHO_MODEL, text=text, count_response_tokens=True)


def _cut_to(litellm, text: str, limit: int) -> str:
    """The longest run of `text`'s opening words within `limit` tokens."""
    words = text.split(" ")
    low, high = 0, len(words)
    while low < high:
        middle = (low + high + 1) // 2
        if _echo_tokens(litellm, " ".join(words[:middle])) <= limit:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low])


@lru_cache(maxsize=32)
def counter(model: str, tokenizer: Tokenizer | None = None) -> Counter:
    """litellm.token_counter over a whole list, with memchat's tokenizer where it is not tiktoken
    (so litellm never looks for one on the network).

    litellm counts a list as its framing plus a sum over its messages (the arithmetic its own
    `messages_reach_token_count` relies on), so each message's share is counted once and kept:
    a turn re-sends mostly the messages the last one sent, and counting them again was the
    largest part of its time. Checked on a probe list first; where the sum would not be exact,
    every list is counted whole."""
    litellm = _litellm()
    loaded = tokenizer.huggingface() if tokenizer is not None else None
    custom = {"type": "huggingface_tokenizer", "tokenizer": loaded} if loaded is not None else None

    def whole(messages: list[dict]) -> int:
        return litellm.token_counter(model=model, messages=messages, custom_tokenizer=custom)

    shares = _MessageShares(whole)
    probe = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there, how are you?"},
        {"role": "assistant", "content": "Fine, thanks: and you?"},
    ]
    if shares.total(probe) != whole(probe):
        return whole
    return shares.total


def tool_tokens(model: str, tokenizer: Tokenizer | None, tools: list[dict]) -> int:
    """What sending these tool definitions adds to a prompt, as litellm counts it for the model
    (it counts them only beside messages: the difference over a one-message list)."""
    return _tool_tokens(model, tokenizer, json.dumps(tools, sort_keys=True))


@lru_cache(maxsize=64)
def _tool_tokens(model: str, tokenizer: Tokenizer | None, tools: str) -> int:
    litellm = _litellm()
    loaded = tokenizer.huggingface() if tokenizer is not None else None
    custom = {"type": "huggingface_tokenizer", "tokenizer": loaded} if loaded is not None else None
    probe = [{"role": "user", "content": "x"}]
    with_tools = litellm.token_counter(model=model, messages=probe, tools=json.loads(tools), custom_tokenizer=custom)
    return max(with_tools - litellm.token_counter(model=model, messages=probe, custom_tokenizer=custom), 0)


class _MessageShares:
    """What each message adds to a list's count, kept for messages seen lately (bounded by the
    characters held, oldest dropped first)."""

    HELD_CHARACTERS = 8_000_000

    def __init__(self, whole: Counter):
        self._whole = whole
        self._framing = whole([])
        self._shares: dict[tuple[str, str], int] = {}
        self._held = 0

    def total(self, messages: list[dict]) -> int:
        return self._framing + sum(self._share(message) for message in messages)

    def _share(self, message: dict) -> int:
        if len(message) != 2 or not isinstance(message.get("content"), str) or "role" not in message:
            # an agent's message (tool calls, a tool output, parts): kept by a digest of its JSON
            digest = hashlib.blake2b(json.dumps(message, sort_keys=True).encode(), digest_size=16).hexdigest()
            key = ("\x00item", digest)
        else:
            key = (message["role"], message["content"])
        share = self._shares.pop(key, None)
        if share is None:
            share = self._whole([message]) - self._framing
            self._held += len(key[1])
            while self._held > self.HELD_CHARACTERS and self._shares:
                oldest = next(iter(self._shares))
                del self._shares[oldest]
                self._held -= len(oldest[1])
        self._shares[key] = share
        return share


@lru_cache(maxsize=32)
def text_counter(model: str, tokenizer: Tokenizer) -> Callable[[list[str]], list[int]]:
    """Content counts by `tokenizer`, through litellm's own encoder once litellm is loaded (a
    turn loads it anyway), so a process loads each vocabulary once. These are the counts
    `Tokenizer.count_batch` gives where litellm is not loaded, except on texts long enough for
    litellm to count in chunks, where litellm's are a little higher; the exact check of the
    list sent makes either safe."""
    litellm = _litellm()
    loaded = tokenizer.huggingface()
    if loaded is not None:
        return tokenizer.count_batch
    encoding_model = {"o200k_base": "gpt-4o", "cl100k_base": "gpt-4"}.get(tokenizer.name)
    if encoding_model is None:
        return tokenizer.count_batch

    def count_texts(texts: list[str]) -> list[int]:
        return [litellm.token_counter(model=encoding_model, text=text) if text else 0 for text in texts]

    return count_texts


@lru_cache(maxsize=32)
def message_cost(count: Counter) -> MessageCost:
    """A message's cost from its content's tokens: the framing litellm adds for its role
    (measured once per role) plus the content."""
    framing = count([])
    overheads: dict[str, int] = {}

    def cost(role: str, content_tokens: int) -> int:
        if role not in overheads:
            overheads[role] = count([{"role": role, "content": ""}]) - framing
        return overheads[role] + content_tokens

    return cost


def max_input_tokens(model: str) -> int | None:
    """The model's context size as litellm's model map knows it, or None for unknown models."""
    litellm = _litellm()
    try:
        info = litellm.get_model_info(model)
    except Exception:
        return None
    return info.get("max_input_tokens") or info.get("max_tokens")


MODEL_EXAMPLES = {
    False: "openai/gpt-4o or anthropic/claude-sonnet-4-5",
    True: "openai/text-embedding-3-small or ollama/nomic-embed-text",
}
"""How a chat model (False) and an embedding model (True) are named, for the errors that say how."""


def check_model(model: str, *, api_base: str | None = None, embedding: bool = False) -> None:
    """Fail before anything is stored, and before any request, when the call cannot work:
    unknown provider, missing key (without a key the provider client fails each attempt as if
    the provider had, and every retry would be spent on it). An embedding model gets the same
    check, with its own examples and no offer of the offline chat model."""
    litellm = _litellm()
    examples = MODEL_EXAMPLES[embedding]
    use, offline = (f"{model} for recall by meaning", "") if embedding else (model, OFFLINE_HINT)
    try:
        litellm.get_llm_provider(model, api_base=api_base)
    except Exception:
        raise ProviderError(
            f"unknown model {model!r}: name it as provider/model, e.g. {examples}"
            + (f"; {offline}" if offline else ""),
            kind="setup",
        ) from None
    missing = _missing_keys(litellm, model)
    if missing and not api_base:
        raise ProviderError(
            f"{missing[0]} is not set: export {missing[0]}=... to use {use}" + (f", or {offline}" if offline else ""),
            kind="setup",
        )


def check_sampling(model: str, **given: object) -> None:
    """Refuse as bad input, before anything is stored, a sampling option the model does not
    take (`top_p` for gpt-5, `reasoning_effort` for gpt-4o): litellm would refuse the call
    itself, after the user's message was stored. Which options a model takes is litellm's
    list for it; litellm checks no list for a custom provider (memchat/echo takes any), nor do we."""
    asked = [name for name, value in given.items() if value is not None]
    if not asked:
        return
    litellm = _litellm()
    try:
        name, provider, _, _ = litellm.get_llm_provider(model)
        supported = litellm.get_supported_openai_params(model=name, custom_llm_provider=provider)
    except Exception:
        return
    if supported is None or provider in {entry["provider"] for entry in litellm.custom_provider_map}:
        return
    for option in asked:
        if option not in supported:
            raise InvalidInput(f"{option}: {model} does not take it (litellm's parameters for that model)")


PROVIDERS_PAGE = "https://docs.litellm.ai/docs/providers"


def check_provider(model: str, *, api_base: str | None = None, what: str = "model", embedding: bool = False) -> None:
    """Refuse as bad input, before a thread or the settings keep it, a model named under a
    provider litellm does not know (`nonsense/xyz`): otherwise the mistake shows only at the
    first turn. A bare name (`gpt-4o`) and an unknown model under a known provider pass, as they
    always have: providers add models before litellm's map has them, and a turn checks again.

    Naming a model must not load litellm (seconds), so the provider is first looked up in the
    names litellm's installed files declare (`_provider_names`: a few milliseconds); only a
    prefix not among them is put to litellm's own `get_llm_provider` (the check a turn makes,
    which also knows endpoints and custom providers), so a refusal is always litellm's."""
    provider, slash, _ = model.partition("/")
    if not slash or provider in _provider_names():
        return
    try:
        _litellm().get_llm_provider(model, api_base=api_base)
    except Exception:
        offline = "" if embedding else ", or memchat/echo, which works offline with no key"
        raise InvalidInput(
            f"{what} {model!r}: litellm knows no provider {provider!r}; name it as provider/model, "
            f"e.g. {MODEL_EXAMPLES[embedding]} (every provider: {PROVIDERS_PAGE}){offline}"
        ) from None


@lru_cache(maxsize=1)
def _provider_names() -> frozenset[str]:
    """The providers litellm's installed files declare (its `LlmProviders` enum and the
    OpenAI-compatible providers of `providers.json`), and memchat's own: read as text, since
    importing any module of litellm imports all of it. Fewer names (none, should a litellm
    release keep them elsewhere) only send more names to litellm itself."""
    names = {ECHO_PROVIDER}
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return frozenset(names)
    root = Path(next(iter(spec.submodule_search_locations)))
    try:
        source = (root / "types" / "utils.py").read_text(encoding="utf-8")
    except OSError:
        source = ""
    members = re.search(r"^class LlmProviders\(str, Enum\):\n((?:[ \t]+.*\n|[ \t]*\n)*)", source, re.MULTILINE)
    if members:
        names.update(re.findall(r'^[ \t]+[A-Z0-9_]+[ \t]*=[ \t]*"([^"]+)"', members.group(1), re.MULTILINE))
    try:
        declared = json.loads((root / "llms" / "openai_like" / "providers.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        declared = {}
    if isinstance(declared, dict):
        names.update(declared)
    return frozenset(names)


def _missing_keys(litellm, model: str) -> list[str]:
    return [
        key
        for key in litellm.validate_environment(model).get("missing_keys", [])
        if key.endswith(("_API_KEY", "_TOKEN"))
    ]


NO_KEY = "memchat-no-key"
"""Sent to an endpoint given with --api-base when the provider's key is not set: local servers
usually want none, but the client libraries insist on one."""


def complete(
    *,
    model: str,
    messages: list[dict],
    max_tokens: int,
    temperature: float | None = None,
    top_p: float | None = None,
    reasoning_effort: str | None = None,
    api_base: str | None = None,
    stream: bool = False,
    on_text: Callable[[str], None] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    tools: list[dict] | None = None,
    tool_choice: str | dict | None = None,
    parallel_tool_calls: bool | None = None,
) -> Completion:
    """One reply, within `timeout` seconds in all (a streamed reply included). Transient failures
    (429, 5xx, connection errors, time-outs) are retried with backoff, or after the provider's
    Retry-After, while the time lasts; others fail at once, and so does a refused connection
    (nothing listens at the endpoint: waiting would not change that). A stream that breaks after text has
    arrived is never retried (the text has been shown): it ends in ReplyCutOff. An empty or
    unreadable reply is a provider failure, never an empty success (a reply of tool calls alone
    has no text, and is not empty). Characters no database stores are replaced
    (`Completion.replaced`), so a reply that was paid for is never lost. `tools` (Chat
    Completions' function tools), `tool_choice` and `parallel_tool_calls` go to the provider as
    litellm translates them; the tool calls of the reply come back in `Completion.tool_calls`."""
    litellm = _litellm()
    params: dict = {"model": model, "messages": messages, "max_tokens": max_tokens, "num_retries": 0, "max_retries": 0}
    sampling = {"temperature": temperature, "top_p": top_p, "reasoning_effort": reasoning_effort}
    params.update({name: value for name, value in sampling.items() if value is not None})
    if tools:
        params["tools"] = tools
        if tool_choice is not None:
            params["tool_choice"] = tool_choice
        if parallel_tool_calls is not None:
            params["parallel_tool_calls"] = parallel_tool_calls
    params.update(_endpoint_params(litellm, model, api_base))
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    for attempt in range(MAX_ATTEMPTS):
        received: list[str] = []
        # litellm keeps one client (and its kept-alive connections) per set of client settings,
        # the time-out among them: the first attempt asks for `timeout` itself, the same on every
        # turn, so turns reuse the provider's connection instead of opening (and TLS-handshaking)
        # a new one each time; only a retry asks for what time is left.
        params["timeout"] = timeout if attempt == 0 else max(deadline - time.monotonic(), 0.1)
        try:
            if stream:
                response = _streamed(litellm, params, on_text, received, deadline)
            else:
                response = litellm.completion(**params)
            text, replaced = storable(_reply_text(response, model))
            if on_text and not stream and text:
                on_text(text)
            break
        except KeyboardInterrupt as interrupt:
            if received:
                raise ReplyCutOff(
                    f"{model}: interrupted",
                    "".join(received),
                    interrupted=True,
                    signal_number=getattr(interrupt, "signal_number", None),
                ) from None
            raise
        except ProviderError:
            raise
        except Exception as exc:
            if received:
                raise ReplyCutOff(
                    f"{model}: the connection dropped part-way through the reply", "".join(received)
                ) from None
            time.sleep(_pause_before_retry(litellm, exc, model, api_base, attempt, deadline))
    latency_ms = round((time.perf_counter() - started) * 1000)
    usage = getattr(response, "usage", None)
    return Completion(
        text=text,
        model=model,
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        cost=_cost(litellm, response, model),
        latency_ms=latency_ms,
        replaced=replaced,
        finish_reason=getattr(response.choices[0], "finish_reason", None),
        tool_calls=_tool_calls(response),
        reasoning=_reasoning(response, model),
    )


def embed(
    *, model: str, texts: list[str], api_base: str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> list[list[float]]:
    """One vector for each of `texts`, in order, from the embedding model (one request; a
    transient failure is retried like a reply, while `timeout` lasts); a missing key fails at
    once, as a turn's does."""
    litellm = _litellm()
    check_model(model, api_base=api_base, embedding=True)
    params: dict = {"model": model, "input": texts, "num_retries": 0, "max_retries": 0}
    params.update(_endpoint_params(litellm, model, api_base))
    deadline = time.monotonic() + timeout
    for attempt in range(MAX_ATTEMPTS):
        params["timeout"] = timeout if attempt == 0 else max(deadline - time.monotonic(), 0.1)
        try:
            response = litellm.embedding(**params)
            break
        except Exception as exc:
            time.sleep(_pause_before_retry(litellm, exc, model, api_base, attempt, deadline))
    data = getattr(response, "data", None) or []
    vectors = sorted(
        (
            (item["index"], item["embedding"]) if isinstance(item, dict) else (item.index, item.embedding)
            for item in data
        ),
        key=lambda pair: pair[0],
    )
    if len(vectors) != len(texts) or not all(_is_vector(vector) for _, vector in vectors):
        raise ProviderError(
            f"{model}: the provider's answer did not hold one embedding (a list of numbers) for each text", kind="empty"
        )
    return [vector for _, vector in vectors]


def _is_vector(value) -> bool:
    """A non-empty list of numbers (a provider has answered strings, nulls and nested lists)."""
    return isinstance(value, list) and bool(value) and all(isinstance(number, (int, float)) for number in value)


def _endpoint_params(litellm, model: str, api_base: str | None) -> dict:
    """`--api-base`, and a stand-in key where the provider's own is not set (a local server
    wants none, and litellm refuses to call without one)."""
    if not api_base:
        return {}
    return {"api_base": api_base, **({"api_key": NO_KEY} if _missing_keys(litellm, model) else {})}


def _pause_before_retry(
    litellm, exc: Exception, model: str, api_base: str | None, attempt: int, deadline: float
) -> float:
    """How long to wait before the next attempt after `exc` (backoff, or the provider's
    Retry-After); its translation is raised instead when it is not transient, or when no time or
    attempt is left."""
    pause = max(retry_backoff_seconds() * 2**attempt * (0.5 + random.random()), _retry_after(exc))
    last = time.monotonic() + pause >= deadline or attempt + 1 == MAX_ATTEMPTS
    if not _transient(litellm, exc) or _refused(exc) or last:
        raise _translate(litellm, exc, model, api_base) from None
    return pause


def _reply_text(response, model: str) -> str:
    """The reply's text ("" for a reply of tool calls alone)."""
    choices = getattr(response, "choices", None)
    if not choices:
        raise ProviderError(f"{model}: the provider's answer held no reply (no choices)", kind="empty")
    message = getattr(choices[0], "message", None)
    text = getattr(message, "content", None)
    if getattr(message, "tool_calls", None) and not text:
        return ""
    if not isinstance(text, str) or not text:
        raise ProviderError(f"{model}: the provider sent an empty reply", kind="empty")
    return text


def _tool_calls(response) -> tuple[ToolCall, ...]:
    message = getattr(response.choices[0], "message", None)
    calls = []
    for call in getattr(message, "tool_calls", None) or ():
        function = getattr(call, "function", None)
        name = getattr(function, "name", None)
        if not getattr(call, "id", None) or not name:
            raise ProviderError("the provider sent a tool call without its id or name", kind="empty")
        arguments, _ = storable(getattr(function, "arguments", None) or "{}")
        calls.append(ToolCall(call.id, name, arguments))
    return tuple(calls)


def _reasoning(response, model: str) -> Reasoning | None:
    """The reply's reasoning as litellm standardises it (`reasoning_content`, and the
    `thinking_blocks` of the message itself: a streamed reply's `provider_specific_fields` hold
    only the last partial block)."""
    message = getattr(response.choices[0], "message", None)
    text = getattr(message, "reasoning_content", None) or ""
    blocks = tuple(dict(block) for block in getattr(message, "thinking_blocks", None) or ())
    if not text and not blocks:
        return None
    return Reasoning(storable(text)[0], blocks, provider_of(model))


def _retry_after(exc: Exception) -> float:
    """Seconds the provider asked us to wait (Retry-After or retry-after-ms), or 0."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or getattr(exc, "litellm_response_headers", None)
    if not headers:
        return 0.0
    try:
        if headers.get("retry-after-ms"):
            return max(float(headers["retry-after-ms"]) / 1000, 0.0)
        value = headers.get("retry-after")
        if not value:
            return 0.0
        try:
            seconds = float(value)
        except ValueError:
            from email.utils import parsedate_to_datetime

            seconds = parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return seconds if 0 <= seconds < float("inf") else 0.0


def _transient(litellm, exc: Exception) -> bool:
    errors = litellm.exceptions
    if isinstance(
        exc,
        (
            errors.RateLimitError,
            errors.InternalServerError,
            errors.ServiceUnavailableError,
            errors.BadGatewayError,
            errors.APIConnectionError,
            errors.Timeout,
        ),
    ):
        return True
    return getattr(exc, "status_code", None) in (408, 409, 429, 500, 502, 503, 504) or _is_connection_failure(exc)


def _streamed(litellm, params: dict, on_text: Callable[[str], None] | None, received: list[str], deadline: float):
    """The streamed reply, built into one response; the whole stream must end by `deadline`, and
    one that ends without saying it is finished was cut off."""
    stream = litellm.completion(**params, stream=True, stream_options={"include_usage": True})
    try:
        return _read_stream(litellm, stream, params, on_text, received, deadline)
    finally:
        # A stream left part-read (interrupted, cut off, timed out) would hold its connection
        # out of the kept-alive pool that later turns share.
        stream.close()


def _read_stream(
    litellm, stream, params: dict, on_text: Callable[[str], None] | None, received: list[str], deadline: float
):
    chunks = []
    finished = False
    for chunk in stream:
        chunks.append(chunk)
        choice = chunk.choices[0] if chunk.choices else None
        piece = choice.delta.content if choice is not None else None
        if piece:
            piece, _ = storable(piece)
            received.append(piece)
            if on_text:
                on_text(piece)
        finished = finished or bool(choice is not None and choice.finish_reason)
        if time.monotonic() > deadline:
            if received:
                raise ReplyCutOff(f"{params['model']}: the reply did not finish within --timeout", "".join(received))
            raise litellm.exceptions.Timeout(
                message="the reply did not finish within --timeout", model=params["model"], llm_provider=""
            )
    if received and not finished:
        raise ReplyCutOff(f"{params['model']}: the stream ended before the reply finished", "".join(received))
    if not chunks:
        raise ProviderError(f"{params['model']}: the provider sent an empty stream; try again", kind="empty")
    return litellm.stream_chunk_builder(chunks, messages=params["messages"])


COST_DIGITS = 10
"""Significant digits a cost is kept to: prices are per million tokens, so the float products
carry noise (1.2899999999999998e-05) that no provider bills."""


def _cost(litellm, response, model: str) -> float | None:
    """litellm's price for the reply: what it worked out while answering when it did (the same
    computation), else computed here (a streamed reply rebuilt from its chunks). memchat's own
    offline model is known to cost nothing (litellm has no price for it)."""
    if model == ECHO_MODEL:
        return 0.0
    known = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
    try:
        cost = float(known if known is not None else litellm.completion_cost(completion_response=response, model=model))
    except Exception:
        return None
    return float(f"{cost:.{COST_DIGITS}g}")


def _refused(exc: BaseException) -> bool:
    """Whether the connection was refused: nothing listens at the endpoint (a wrong port, a local
    server not started), which no retry within a turn's time-out would change, unlike a dropped
    connection or a time-out."""
    return any(isinstance(cause, ConnectionRefusedError) for cause in _causes(exc))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from or while handling, outermost first."""
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        yield seen
        seen = seen.__cause__ or seen.__context__


def _is_connection_failure(exc: BaseException) -> bool:
    """litellm reports some refused connections as a 500 whose cause is the client's ConnectError."""
    if any(
        "ConnectError" in type(seen).__name__ or "APIConnectionError" in type(seen).__name__ for seen in _causes(exc)
    ):
        return True
    return "Connection error" in str(exc)


_LITELLM_PREFIX = re.compile(r"^(litellm\.\w+: )?(\w+Error: )?(\w+Exception - )?(error - )?")


def _translate(litellm, exc: Exception, model: str, api_base: str | None) -> ProviderError:
    error = _explain(litellm, exc, model, api_base)
    return type(error)(
        redact(str(error), _api_key(litellm, model)), kind=error.kind, retry_after=_retry_after(exc) or None
    )


def _api_key(litellm, model: str) -> str | None:
    """The key litellm sends for `model`, so that an error echoing it can be cleaned."""
    try:
        return litellm.get_api_key(llm_provider=litellm.get_llm_provider(model)[1], dynamic_api_key=None)
    except Exception:
        return None


PROVIDER_BASE_VARIABLES = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "anthropic": ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE"),
    "ollama": ("OLLAMA_API_BASE",),
}
DEFAULT_ENDPOINTS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "ollama": "http://localhost:11434",
}


def provider_of(model: str) -> str:
    """The provider part of `provider/model` (a bare model name is OpenAI's, as litellm reads it)."""
    return model.split("/", 1)[0] if "/" in model else "openai"


def endpoint_from_environment(model: str) -> str | None:
    """The endpoint the provider's own variable names for `model` (OPENAI_BASE_URL, ...), if any."""
    names = PROVIDER_BASE_VARIABLES.get(provider_of(model), ())
    return provider_endpoint_from_environment(names)


def _endpoint(model: str, api_base: str | None) -> str:
    """The URL a call to `model` went to: --api-base, else the provider's variable, else its default."""
    provider = provider_of(model)
    return api_base or endpoint_from_environment(model) or DEFAULT_ENDPOINTS.get(provider, f"the {provider} endpoint")


def _explain(litellm, exc: Exception, model: str, api_base: str | None) -> ProviderError:
    errors = litellm.exceptions
    detail = _LITELLM_PREFIX.sub("", " ".join(str(getattr(exc, "message", exc)).split()))
    if "Expecting value" in detail or "Unterminated string" in detail or "Empty or invalid response" in detail:
        detail = f"its answer was not valid JSON: {detail}"
    if len(detail) > 300:
        detail = detail[:299] + "…"
    status = getattr(exc, "status_code", None)
    if isinstance(exc, errors.AuthenticationError) or status == 401:
        return ProviderError(
            f"{model}: authentication failed ({detail}); check the API key, or {OFFLINE_HINT}", kind="auth"
        )
    if isinstance(exc, errors.PermissionDeniedError) or status == 403:
        return ProviderError(f"{model}: permission denied ({detail}); check the API key's access", kind="permission")
    if isinstance(exc, errors.ContextWindowExceededError) or "context_length_exceeded" in detail:
        return ContextTooLong(
            f"{model}: the provider says the prompt is too long ({detail}); lower --budget", kind="too_long"
        )
    if isinstance(exc, errors.NotFoundError):
        return ProviderError(
            f"{model}: model not found by the provider ({detail}); check the model name", kind="not_found"
        )
    if isinstance(exc, errors.RateLimitError):
        return ProviderError(
            f"{model}: rate limited by the provider ({detail}); wait and try again", kind="rate_limited"
        )
    if isinstance(exc, errors.Timeout):
        return ProviderError(
            f"{model}: the provider did not answer in time; try again later or raise --timeout", kind="timeout"
        )
    if isinstance(exc, errors.APIConnectionError) or _is_connection_failure(exc):
        where = mask_url_passwords(_endpoint(model, api_base))
        if _refused(exc):
            detail = "connection refused: nothing listens there"
        return ProviderError(
            f"{model}: cannot reach {where} ({detail}); check the network or --api-base", kind="unreachable"
        )
    if isinstance(exc, errors.BadRequestError):
        return ProviderError(f"{model}: the provider rejected the request ({detail})", kind="rejected")
    prefix = f"{model}: provider error" + (f" {status}" if status else "")
    return ProviderError(f"{prefix} ({detail}); try again later", kind="error")
