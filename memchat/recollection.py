"""Recall with an embedding model: the store's recall by words, its best matches re-ranked by
their similarity in meaning to the new message (`fulltext.rank_recalled`, SIMILAR_SHARE).

A thread names the model (`recall_embeddings`, any litellm embedding model). Vectors are made
lazily, in batches: a recall embeds the new message together with those of its candidates that
have none yet (at most a few hundred, once each: they are kept, `message_vectors`), and
`Memory.embed` (`memchat embed`) makes a thread's ahead of time. A turn without recall, or on a
thread without an embedding model, makes no embedding call. Should the embedding call fail, the
turn's recall goes by words alone (logged): recall is an aid, never the reason a turn fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from memchat import llm, vectors
from memchat.errors import ProviderError
from memchat.records import MessagePublic
from memchat.schemas import DEFAULT_TIMEOUT
from memchat.storage.repository import LAST_POSSIBLE_POSITION, Recallable, Store

EMBED_BATCH = 128
"""Texts sent in one embedding request."""
EMBED_MAX_CHARACTERS = 8000
"""What of a message is embedded: its start (about 2,000 tokens), within what embedding models
take (8,191 tokens for OpenAI's, 512 or fewer for many local ones, which cut it shorter
themselves), so one long message cannot make every request fail."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embeddings:
    """The embedding model a thread's recall uses, and where its requests go."""

    model: str
    api_base: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def beside(cls, model: str, turn_model: str, api_base: str | None, timeout: float = DEFAULT_TIMEOUT) -> Embeddings:
        """`model`'s requests go to the turn's endpoint (`--api-base`, the thread's) when it is
        the turn model's provider, else to its provider's own (or its variables')."""
        same_provider = llm.provider_of(model) == llm.provider_of(turn_model)
        return cls(model, api_base if same_provider else None, timeout)

    def embed(self, texts: list[str]) -> list[bytes]:
        """Each text's vector, packed; a blank text is similar to nothing and costs no request
        (providers refuse empty input)."""
        wanted = [i for i, t in enumerate(texts) if t.strip()]
        packed = [vectors.packed([0.0]) for _ in texts]
        for start in range(0, len(wanted), EMBED_BATCH):
            batch = wanted[start : start + EMBED_BATCH]
            made = llm.embed(
                model=self.model,
                texts=[texts[i][:EMBED_MAX_CHARACTERS] for i in batch],
                api_base=self.api_base,
                timeout=self.timeout,
            )
            for i, vector in zip(batch, made, strict=True):
                packed[i] = vectors.packed(vector)
        return packed


def recall(
    store: Store,
    thread_id: str,
    about: str,
    embeddings: Embeddings | None,
    *,
    before: int,
    limit: int,
    context: str = "",
) -> list[MessagePublic]:
    """The messages recall brings for `about`, best first (see `Store.recall`), re-ranked by
    meaning when the thread has an embedding model."""
    if embeddings is None:
        return store.recall(thread_id, about, before=before, limit=limit, context=context)
    query = f"{about}\n{context}" if context else about
    try:
        return store.recall(
            thread_id, about, before=before, limit=limit, context=context, similar=_Similarity(store, embeddings, query)
        )
    except ProviderError as error:
        log.warning("recall went by words alone: the embedding model failed (%s)", error)
        return store.recall(thread_id, about, before=before, limit=limit, context=context)


def embed_thread(store: Store, thread_id: str, embeddings: Embeddings) -> int:
    """Vectors for every recallable message of the thread that has none by the model (its own
    and what it inherits), in batches, newest first; how many were made."""
    made, before = 0, LAST_POSSIBLE_POSITION
    while True:
        missing = store.unembedded(thread_id, embeddings.model, before=before, limit=EMBED_BATCH)
        if not missing:
            return made
        store.save_vectors(
            embeddings.model, dict(zip((m.id for m in missing), embeddings.embed([m.content for m in missing])))
        )
        made += len(missing)
        before = missing[-1].position


class _Similarity:
    """Similarity to the new message of the messages recall's words found, by position; the
    new message is embedded in the same request as the first candidates that need it."""

    def __init__(self, store: Store, embeddings: Embeddings, query: str) -> None:
        self._store = store
        self._embeddings = embeddings
        self._query = query

    def __call__(self, messages: list[Recallable]) -> dict[int, float]:
        model = self._embeddings.model
        kept = self._store.vectors(model, (m.id for m in messages))
        missing = list({m.id: m for m in messages if m.id not in kept}.values())
        made = self._embeddings.embed([self._query, *(m.content for m in missing)])
        new = dict(zip((m.id for m in missing), made[1:]))
        self._store.save_vectors(model, new)
        query = vectors.unpacked(made[0])
        held = {**kept, **new}
        return {m.position: vectors.similarity(query, vectors.unpacked(held[m.id])) for m in messages}
