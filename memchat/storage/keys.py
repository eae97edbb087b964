"""API keys of `memchat serve`: stored as hashes, revoked but never reused."""

from __future__ import annotations

import hmac

from sqlalchemy import select as select_columns
from sqlmodel import col, select

from memchat.errors import InvalidInput, NotFound
from memchat.records import ApiKeyPublic
from memchat.schemas import KeyCheck
from memchat.storage.core import StoreCore
from memchat.storage.models import ApiKey
from memchat.times import utcnow

_keys = ApiKey.__table__
_EVERY_KEY = select_columns(_keys.c.name, _keys.c.key_hash, _keys.c.revoked_at)


class Keys(StoreCore):
    """The server's API keys: made, listed, revoked, and checked on every request."""

    def add_key(self, name: str, key_hash: str, shown: str) -> ApiKeyPublic:
        with self._writing() as session:
            if session.get(ApiKey, name) is not None:
                raise InvalidInput(
                    f"a key named {name!r} exists (or existed: a revoked key's name is not reused); choose another name"
                )
            key = ApiKey(name=name, key_hash=key_hash, shown=shown)
            session.add(key)
            session.flush()
            return ApiKeyPublic.model_validate(key)

    def keys(self) -> list[ApiKeyPublic]:
        with self._reading() as session:
            return [
                ApiKeyPublic.model_validate(k)
                for k in session.exec(select(ApiKey).order_by(col(ApiKey.created_at))).all()
            ]

    def revoke_key(self, name: str) -> ApiKeyPublic:
        with self._writing() as session:
            key = session.get(ApiKey, name)
            if key is None:
                raise NotFound(f"no key named {name!r}; `memchat key list` shows them")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                session.add(key)
                session.flush()
            return ApiKeyPublic.model_validate(key)

    def key_holder(self, key_hash: str) -> KeyCheck:
        """The live key with this hash, and whether any key is live or was ever made: what a
        server checks on every request, in one query."""
        with self._core_reading() as connection:
            every = connection.execute(_EVERY_KEY).all()
        live = [(name, stored) for name, stored, revoked_at in every if revoked_at is None]
        holder = None
        for name, stored in live:
            if hmac.compare_digest(stored, key_hash):
                holder = name
        return KeyCheck(holder, any_live=bool(live), ever_made=bool(every))
