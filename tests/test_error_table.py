"""The error table (memchat/errors.py): each class's exit code, HTTP status and OpenAI code, as the
CLI, the server and a client of the server read them, and as the README documents them."""

import signal
from pathlib import Path

import pytest

from memchat.errors import (
    PROVIDER_KINDS,
    AccessDenied,
    BudgetExceeded,
    ContextTooLong,
    Interrupted,
    InvalidInput,
    LeaseLost,
    MemchatError,
    NotFound,
    ProviderError,
    ReplyCutOff,
    StorageError,
    ThreadBusy,
    Unanswered,
    error_from_body,
)
from memchat.server.errors import body, message_of, status_of

README = Path(__file__).parent.parent / "README.md"

FAILURES = [
    InvalidInput("the message is empty"),
    NotFound("no thread 'x'"),
    BudgetExceeded(100, 50),
    BudgetExceeded(100, 50, 40),
    ThreadBusy("thread t: another turn is in progress"),
    LeaseLost("t"),
    StorageError("cannot open the database"),
    ContextTooLong("m: the provider says the prompt is too long", kind="too_long"),
    *[ProviderError(f"m: {kind}", kind=kind) for kind in PROVIDER_KINDS],
]


def _sent_and_read_back(failure: BaseException) -> MemchatError:
    """The failure as the server answers it, read back as a client of the server reads it."""
    status, code, headers = status_of(failure)
    wait = float(headers["Retry-After"]) if "Retry-After" in headers else None
    return error_from_body(status, body(status, message_of(failure), code=code), retry_after=wait)


@pytest.mark.parametrize("failure", FAILURES, ids=lambda failure: f"{type(failure).__name__}-{getattr(failure, 'kind', '')}")
def test_a_client_of_the_server_rebuilds_each_failure_with_its_exit_code_and_message(failure):
    rebuilt = _sent_and_read_back(failure)
    assert rebuilt.exit_code == failure.exit_code
    assert (rebuilt.status, rebuilt.code) == (failure.status, failure.code)
    if isinstance(failure, StorageError):
        assert str(rebuilt) == f"the memchat server failed (HTTP 503): {failure}"
    else:
        assert str(rebuilt) == str(failure)
    if isinstance(failure, ProviderError):
        assert isinstance(rebuilt, type(failure)) and rebuilt.kind == failure.kind
        assert isinstance(rebuilt, ReplyCutOff) == (failure.kind == "cut_off")
        assert isinstance(rebuilt, ContextTooLong) == (failure.kind == "too_long")
    elif isinstance(failure, LeaseLost):
        assert type(rebuilt) is ThreadBusy
    else:
        assert type(rebuilt) is type(failure)


def test_a_rebuilt_budget_failure_carries_its_numbers():
    for failure in (BudgetExceeded(100, 50), BudgetExceeded(1234, 1000, 800)):
        rebuilt = _sent_and_read_back(failure)
        assert (rebuilt.needed, rebuilt.budget, rebuilt.room) == (failure.needed, failure.budget, failure.room)


def test_a_rate_limit_says_when_to_try_again_and_the_client_reads_it():
    failure = ProviderError("m: rate limited", kind="rate_limited", retry_after=2.2)
    assert status_of(failure) == (429, "rate_limited", {"Retry-After": "3"})
    assert status_of(ProviderError("m: rate limited", kind="rate_limited"))[2] == {"Retry-After": "1"}
    assert _sent_and_read_back(failure).retry_after == 3.0


def test_statuses_only_the_http_layer_answers_are_read_as_their_failures():
    assert type(error_from_body(401, body(401, "the API key is not valid", code="invalid_api_key"))) is AccessDenied
    assert type(error_from_body(401, body(401, "this server needs an API key", code="missing_api_key"))) is AccessDenied
    assert type(error_from_body(403, body(403, "no"))) is AccessDenied
    assert type(error_from_body(400, body(400, "bad", code="invalid_value"))) is InvalidInput
    assert type(error_from_body(413, body(413, "too large"))) is InvalidInput
    assert type(error_from_body(422, body(422, "malformed"))) is InvalidInput
    assert type(error_from_body(404, {})) is NotFound
    internal = error_from_body(500, body(500, "internal error (KeyError)", code="internal_error"))
    assert type(internal) is StorageError and str(internal) == "the memchat server failed (HTTP 500): internal error (KeyError)"
    assert str(error_from_body(502, "<html>")) == "the memchat server answered HTTP 502"


def test_an_unanswered_turn_shows_as_its_cause_with_the_message_kept():
    cut = ReplyCutOff("m: the connection dropped", "Once upon")
    unanswered = Unanswered("thread-1", None, cut)
    assert (unanswered.thread_id, unanswered.cause, unanswered.partial) == ("thread-1", cut, "Once upon")
    assert (unanswered.exit_code, unanswered.status, unanswered.code) == (5, 502, "provider_cut_off")
    assert str(unanswered) == str(cut) and status_of(unanswered) == status_of(cut)
    assert Unanswered("t", None, ThreadBusy("busy")).exit_code == 7
    assert Unanswered("t", None, RuntimeError("bug")).exit_code == 1
    assert status_of(Unanswered("t", None, RuntimeError("bug")))[0] == 500
    interrupted = Unanswered("t", None, KeyboardInterrupt())
    assert (interrupted.exit_code, interrupted.interrupted, interrupted.partial, str(interrupted)) == (130, True, None, "interrupted")
    assert Unanswered("t", None, Interrupted(signal.SIGTERM)).exit_code == 143
    signalled = ReplyCutOff("m: interrupted", "Once", interrupted=True, signal_number=signal.SIGHUP)
    assert Unanswered("t", None, signalled).exit_code == 129


def _documented() -> dict[tuple[str, str], tuple[str, str, str]]:
    """The README's error table: (class, kind) -> (exit code, HTTP status, code)."""
    section = README.read_text(encoding="utf-8").split("| error | when | exit code | HTTP status | OpenAI code |", 1)[1]
    rows = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        error, _, exit_code, status, code = [cell.strip() for cell in line.strip("|").split("|")]
        name, _, kind = error.partition(" ")
        rows[(name.strip("`"), kind.strip("`"))] = (exit_code, status.split()[0], code.strip("`") or "—")
    return rows


def test_the_readme_documents_the_table():
    expected = {}
    for cls in (InvalidInput, NotFound, BudgetExceeded, StorageError, ThreadBusy, AccessDenied):
        expected[(cls.__name__, "")] = (str(cls.exit_code), str(cls.status), cls.code or "—")
    for kind, shown in PROVIDER_KINDS.items():
        expected[("ProviderError", kind)] = (str(ProviderError.exit_code), str(shown.status), shown.code)
    expected[("MemchatError", "")] = ("1", str(MemchatError.status), MemchatError.code)
    documented = _documented()
    assert {key: documented.get(key) for key in expected} == expected
