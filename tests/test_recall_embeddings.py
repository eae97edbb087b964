"""Recall by meaning (`recall_embeddings`): vectors from an embedding model, through litellm to
the tests' local server speaking /v1/embeddings, re-rank what recall's words found."""

import json
import logging

import pytest
from fake_openai import Fault

from memchat import InvalidInput
from memchat.errors import ProviderError

EMBEDDINGS = "openai/text-embedding-3-small"
FILLER = [(role, f"small talk {i} " + "about nothing much " * 12) for i in range(12) for role in ("user", "assistant")]
CHAT = [
    ("user", "For the trip I finally bought a vehicle: a red Volvo estate."),
    ("assistant", "Congratulations!"),
    *FILLER[:6],
    ("user", "The trip photos are on my laptop somewhere."),
    ("assistant", "Back them up."),
    *FILLER[6:],
]
QUESTION = "Which automobile did I get for the trip?"


@pytest.fixture
def car_thread(memory, server):
    server.meanings = {"automobile": "car", "vehicle": "car", "volvo": "car"}
    [thread] = memory.import_(
        {"model": "openai/gpt-4o", "budget": 600, "messages": [{"role": r, "content": c} for r, c in CHAT]}
    ).threads
    return thread


def excerpts(server):
    return next(m["content"] for m in server.last_messages if m["content"].startswith("Excerpts recalled"))


def recalled(memory, thread, k=1):
    entry = next(e for e in memory.context(thread, QUESTION, recall=k).entries if e.kind == "recall")
    return entry.recalled


def test_words_alone_make_no_embedding_call(memory, server, car_thread):
    assert recalled(memory, car_thread) == (8,), "by words, the two 'trip' messages tie and the newer wins"
    memory.configure(car_thread, recall=1)
    memory.say(car_thread, QUESTION)
    assert server.embedding_requests == []


def test_an_embedding_model_brings_the_message_that_means_what_was_asked(memory, server, car_thread):
    memory.configure(car_thread, recall=1, recall_embeddings=EMBEDDINGS)
    assert recalled(memory, car_thread) == (0,)
    [first] = server.embedding_requests
    assert first["model"] == "text-embedding-3-small"
    assert first["input"][0] == QUESTION, "the new message goes in the same request as the candidates"
    assert CHAT[0][1] in first["input"] and CHAT[8][1] in first["input"]
    server.embedding_requests.clear()
    memory.say(car_thread, QUESTION)
    assert [r["input"] for r in server.embedding_requests] == [[QUESTION]], "the candidates' vectors were kept"
    assert "red Volvo estate" in excerpts(server)


def test_a_failing_embedding_model_leaves_recall_to_words_and_the_turn_answers(memory, server, car_thread, caplog):
    memory.configure(car_thread, recall=1, recall_embeddings=EMBEDDINGS)
    server.embedding_faults.append(Fault(400, "no such embedding model"))
    with caplog.at_level(logging.WARNING, logger="memchat.recollection"):
        reply = memory.say(car_thread, QUESTION)
    assert reply.text and "The trip photos" in excerpts(server)
    assert "recall went by words alone" in caplog.text and "no such embedding model" in caplog.text


@pytest.mark.fault
@pytest.mark.parametrize("vector", [["a", "b"], [None, 1.0], "not a list", [[0.1]]])
def test_an_embedding_that_is_not_numbers_leaves_recall_to_words(memory, server, car_thread, vector):
    memory.configure(car_thread, recall=1, recall_embeddings=EMBEDDINGS)
    server.answered_vector = vector
    reply = memory.say(car_thread, QUESTION)
    assert reply.text and "The trip photos" in excerpts(server)
    with pytest.raises(ProviderError) as refused:
        memory.embed(car_thread)
    assert "embedding" in str(refused.value)


def test_memchat_embed_makes_every_vector_once_in_batches(memory, server, memchat):
    many = [{"role": ("user", "assistant")[i % 2], "content": f"message {i} about topic {i % 7}"} for i in range(300)]
    [thread] = memory.import_({"model": "openai/gpt-4o", "messages": many}).threads
    refused = memchat("embed", thread)
    assert refused.returncode == 2 and "--recall-embeddings" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert server.embedding_requests == []
    memory.configure(thread, recall_embeddings=EMBEDDINGS)
    made = memchat("embed", thread, check=True)
    assert made.stdout.strip() == "embedded 300 messages"
    sizes = [len(r["input"]) for r in server.embedding_requests]
    assert sum(sizes) == 300 and max(sizes) <= 128
    again = memchat("embed", thread, "--json", check=True)
    assert json.loads(again.stdout) == {"thread": thread, "embedded": 0}
    fork = memory.fork(thread)
    memory.add_messages(fork.id, [("user", "one more in the fork")])
    assert memory.embed(fork.id) == 1, "a fork shares its origin's vectors and makes only its own"
    assert memory.embed(thread) == 0, "and its origin makes none of the fork's"
    memory.undo(fork.id)
    memory.undo(fork.id)
    assert memory.embed(fork.id) == 0, "what a fork copied when a message it inherited changed keeps its vectors"


def test_embedding_without_the_provider_key_says_so_at_once(memory, server, memchat, car_thread, monkeypatch):
    memory.configure(car_thread, recall_embeddings=EMBEDDINGS)
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ProviderError, match="OPENAI_API_KEY is not set: export OPENAI_API_KEY=... to use ") as refused:
        memory.embed(car_thread)
    assert refused.value.kind == "setup" and "memchat/echo" not in str(refused.value)
    failed = memchat("embed", car_thread)
    assert failed.returncode == 5 and failed.stdout == ""
    assert failed.stderr == (
        f"memchat: OPENAI_API_KEY is not set: export OPENAI_API_KEY=... to use {EMBEDDINGS} for recall by meaning\n"
    )
    assert server.embedding_requests == []


def test_the_setting_is_shown_exported_and_changed_back(memory, server, memchat, tmp_path):
    thread = memory.new_thread(title="t", recall=3, recall_embeddings=EMBEDDINGS)
    shown = memchat("show", thread.id, check=True).stdout
    assert f"embeddings {EMBEDDINGS}" in shown
    exported = json.loads(memchat("export", thread.id, check=True).stdout)
    assert exported["recall_embeddings"] == EMBEDDINGS
    [copy] = memory.import_(exported).threads
    assert memory.thread(copy).recall_embeddings == EMBEDDINGS
    memchat("set", thread.id, "--recall-embeddings", "", check=True)
    assert memory.thread(thread.id).recall_embeddings is None
    with pytest.raises(InvalidInput):
        memory.embed(thread.id)


def test_vectors_are_kept_as_unit_float32_and_compared_by_dot_product():
    from memchat import vectors

    a, b = vectors.packed([3.0, 4.0]), vectors.packed([4.0, 3.0])
    assert len(a) == 8 and list(vectors.unpacked(a)) == pytest.approx([0.6, 0.8])
    assert vectors.similarity(vectors.unpacked(a), vectors.unpacked(b)) == pytest.approx(0.96)
    assert vectors.similarity(vectors.unpacked(a), vectors.unpacked(vectors.packed([1.0, 0.0, 0.0]))) == 0.0
    assert list(vectors.unpacked(vectors.packed([0.0, 0.0]))) == [0.0, 0.0], "zeros are similar to nothing"


def test_only_the_most_similar_matches_gain_and_by_how_far_above_the_line():
    from memchat.storage.fulltext import WordMatches, rank_recalled

    matches = [WordMatches([p * 10 for p in range(40)], [p * 1000.0 for p in range(40)], True)]
    similar = {p * 10: 0.1 for p in range(40)} | {30: 0.7, 50: 0.9, 70: 0.5, 90: 0.3, 110: 0.3}
    by_words = rank_recalled(matches, 400, keep=5)
    by_meaning = rank_recalled(matches, 400, keep=5, similar=lambda positions: {p: similar[p] for p in positions})
    assert by_words[:2] == [390, 380], "equal by words: the newest first"
    assert by_meaning == [50, 30, 70, 390, 380], "above the tenth most similar, the more similar first"


def test_deleting_a_thread_deletes_its_vectors(memory, server, car_thread):
    memory.configure(car_thread, recall_embeddings=EMBEDDINGS)
    assert memory.embed(car_thread) == len(CHAT)
    ids = [m.id for m in memory.messages(car_thread)]
    assert len(memory.store.vectors(EMBEDDINGS, ids)) == len(CHAT)
    memory.delete(car_thread)
    assert memory.store.vectors(EMBEDDINGS, ids) == {}


def test_a_long_message_is_embedded_by_its_start_and_a_blank_one_not_at_all(memory, server):
    from memchat.recollection import EMBED_MAX_CHARACTERS, Embeddings
    from memchat.vectors import similarity, unpacked

    long = "word " * 5000
    blank, made = Embeddings(EMBEDDINGS).embed(["  ", long])
    assert [[len(text) for text in r["input"]] for r in server.embedding_requests] == [[EMBED_MAX_CHARACTERS]]
    assert similarity(unpacked(blank), unpacked(made)) == 0.0 and len(unpacked(made)) == server.EMBEDDING_DIMENSIONS


@pytest.mark.sqlite_only
def test_similarity_only_reorders_what_the_words_found(db_url):
    """Whatever the similarities: positions older than `before`, each once, as many as the words
    alone bring (at most `keep`); similarities all equal change nothing."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from memchat.storage.fulltext import WordMatches, rank_recalled

    word = st.lists(st.integers(0, 199), min_size=1, max_size=40, unique=True).map(
        lambda positions: WordMatches(sorted(positions), [p * 600.0 for p in sorted(positions)], True)
    )

    @settings(max_examples=200, deadline=None)
    @given(st.lists(word, min_size=1, max_size=5), st.integers(1, 40), st.floats(-1, 1), st.randoms())
    def check(matches, keep, level, rng):
        by_words = rank_recalled(matches, 200, keep=keep)
        flat = rank_recalled(matches, 200, keep=keep, similar=lambda positions: dict.fromkeys(positions, level))
        assert flat == by_words
        ranked = rank_recalled(matches, 200, keep=keep, similar=lambda ps: {p: rng.uniform(-1, 1) for p in ps})
        assert len(ranked) == len(set(ranked)) <= keep and all(0 <= p < 200 for p in ranked)
        assert len(ranked) == len(by_words)

    check()
