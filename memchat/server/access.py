"""Who may use the server, and which memory a request sees.

With live API keys in the database (`memchat key create`), every request to the API needs
`Authorization: Bearer KEY`, and sees only the conversations made with that key (its tenant):
another tenant's ids answer 404. A database that never had a key is answered without keys, and
only on a loopback address (`memchat serve` refuses any other without keys). Once it has had a
key, revoking the last one does not open the server again: requests without a key are refused
unless the operator chose otherwise (`memchat serve --without-keys`, loopback only). Keys are
checked against the database on every request, so a revoked key is refused from the next
request on, by every worker and replica. The key itself is never logged, stored or echoed.
"""

from __future__ import annotations

from fastapi import Request

from memchat.api import Memory
from memchat.server.errors import HTTPProblem

CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def memory_of(request: Request) -> Memory:
    """The Memory this request works on: the key's tenant, or (without keys) the whole memory."""
    memory: Memory = request.app.state.memory
    key = _bearer(request.headers.get("authorization"))
    check = memory.key_holder(key)
    if check.holder is not None:
        return memory.as_tenant(check.holder)
    state = request.app.state
    if not check.any_live and not state.keys_required and (not check.ever_made or state.without_keys):
        return memory
    if key is None:
        raise HTTPProblem(
            401,
            "this server needs an API key: send Authorization: Bearer KEY",
            code="missing_api_key",
            headers=CHALLENGE,
        )
    raise HTTPProblem(401, "the API key is not valid (unknown or revoked)", code="invalid_api_key", headers=CHALLENGE)
