"""Taking turns back without losing them: `undo` marks messages, never deletes or rewrites them."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memchat import InvalidInput, Memory


def said(memory, thread_id):
    return [(m.position, m.role, m.content, m.status) for m in memory.messages(thread_id)]


def test_undo_takes_the_last_turn_out_of_every_later_context_and_keeps_it(memory, server):
    thread = memory.new_thread(model="openai/gpt-4o", system="Be brief.")
    server.reply("Blue.", "Green.", "Red, then.")
    memory.say(thread.id, "Favourite colour?")
    memory.say(thread.id, "Another one?")
    taken = memory.undo(thread.id)
    assert [(m.position, m.status) for m in taken] == [(2, "undone"), (3, "undone")]
    assert said(memory, thread.id) == [
        (0, "user", "Favourite colour?", "complete"),
        (1, "assistant", "Blue.", "complete"),
        (2, "user", "Another one?", "undone"),
        (3, "assistant", "Green.", "undone"),
    ]
    preview = memory.context(thread.id, "And a third?")
    assert [entry.content for entry in preview.entries][1:] == ["Favourite colour?", "Blue.", "And a third?"]
    memory.say(thread.id, "And a third?")
    assert server.last_messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Favourite colour?"},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "And a third?"},
    ]
    assert memory.search("Green")  # still found by a search of what was said
    memory.undo(thread.id)
    memory.undo(thread.id)
    with pytest.raises(InvalidInput, match="nothing to undo"):
        memory.undo(thread.id)
    assert [m.status for m in memory.messages(thread.id)] == ["undone"] * 6
    with pytest.raises(InvalidInput, match="nothing to retry"):
        memory.retry(thread.id)

    # Export and import carry the marks.
    exported = memory.export(thread.id)
    assert [m.get("status", "complete") for m in exported["messages"][1:]] == ["undone"] * 6
    again = memory.import_(json.dumps(exported)).threads[0]
    assert said(memory, again) == said(memory, thread.id)


def test_undo_after_a_failed_turn_takes_the_unanswered_message_back(memory, server):
    thread = memory.new_thread(model="openai/gpt-4o")
    server.reply("Hello.")
    memory.say(thread.id, "Hi")
    server.fail(400, "bad request")
    with pytest.raises(Exception):
        memory.say(thread.id, "this fails")
    assert memory.undo(thread.id)[0].content == "this fails"
    with pytest.raises(InvalidInput, match="nothing to retry"):
        memory.retry(thread.id)
    assert [m.status for m in memory.messages(thread.id)] == ["complete", "complete", "undone"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.sampled_from(["say", "undo"]), min_size=1, max_size=8))
def test_undo_never_changes_or_loses_a_message_and_contexts_never_hold_undone_ones(tmp_path_factory, server, steps):
    server.echo = True
    with Memory(str(tmp_path_factory.mktemp("undo") / "m.db")) as memory:
        thread = memory.new_thread(model="openai/gpt-4o")
        before: list[tuple] = []
        for index, step in enumerate(steps):
            if step == "say":
                memory.say(thread.id, f"message {index}")
            else:
                try:
                    memory.undo(thread.id)
                except InvalidInput:
                    pass
            now = memory.messages(thread.id)
            # Every message stays, with its role, content and position; only a mark can change.
            assert [(m.position, m.role, m.content) for m in now[: len(before)]] == [b[:3] for b in before]
            assert all(b[3] == "undone" or m.status in (b[3], "undone") for b, m in zip(before, now))
            before = [(m.position, m.role, m.content, m.status) for m in now]
            sent = [e.content for e in memory.context(thread.id, "next").entries]
            undone = {m.content for m in now if m.status == "undone"}
            assert not undone & set(sent[:-1])


def everything(memory, thread_id):
    """Every stored field of every message, and the summaries: what must never change."""
    return (
        [m.model_dump() for m in memory.messages(thread_id)],
        [s.model_dump() for s in memory.summaries(thread_id)],
    )


def test_fork_copies_history_settings_counts_and_summaries_and_leaves_the_original(memory, server):
    thread = memory.new_thread(model="openai/gpt-4o", system="Be brief.", budget=300, recall=2, labels={"k": "v"})
    server.echo = True
    for n in range(4):
        memory.say(thread.id, f"turn {n} " + "word " * 30)
    server.echo = False
    server.reply("They talked about words.")
    made = memory.rebuild_summary(thread.id)  # what the next turn would leave out
    before = everything(memory, thread.id)
    fork = memory.fork(thread.id, at=3)
    assert (fork.forked_from, fork.forked_at, fork.message_count) == (thread.id, 3, 4)
    assert (fork.system, fork.model, fork.budget, fork.recall, fork.labels) == ("Be brief.", "openai/gpt-4o", 300, 2, {"k": "v"})
    copied = memory.messages(fork.id)
    original = memory.messages(thread.id)
    assert [(m.position, m.role, m.content, m.status, m.created_at, m.model) for m in copied] == [
        (m.position, m.role, m.content, m.status, m.created_at, m.model) for m in original[:4]
    ]
    tokens = [m["tokens"] for m in memory.export(thread.id)["messages"] if m["role"] != "system"]
    assert [m["tokens"] for m in memory.export(fork.id)["messages"] if m["role"] != "system"] == tokens[:4]
    assert all(tokens[:4])  # stored counts came along: nothing is counted again
    assert everything(memory, thread.id) == before
    # Summaries come along when their span lies inside the copy; a full fork has them all.
    inside = [(s.first_position, s.last_position, s.content) for s in memory.summaries(thread.id) if s.last_position <= 3]
    assert [(s.first_position, s.last_position, s.content) for s in memory.summaries(fork.id)] == inside
    assert made.last_position <= 3 or made.content not in [c for *_, c in inside]
    whole = memory.fork(thread.id)
    assert [s.content for s in memory.summaries(whole.id)] == [s.content for s in memory.summaries(thread.id)]
    assert whole.message_count == len(original)

    server.reply("from the fork")
    memory.say(fork.id, "and now?")
    assert [m["content"] for m in server.last_messages][1:-1] == [m.content for m in original[:4]]
    assert everything(memory, thread.id) == before

    empty = memory.fork(thread.id, at=-1)
    assert empty.message_count == 0 and empty.system == "Be brief."
    with pytest.raises(InvalidInput, match="#0 to #7"):
        memory.fork(thread.id, at=8)

    exported = memory.export(fork.id)
    assert exported["forked_from"] == {"thread": thread.id, "at": 3}
    again = memory.thread(memory.import_(json.dumps(exported)).threads[0])
    assert (again.forked_from, again.forked_at) == (thread.id, 3)
    assert memory.thread(thread.id).forked_from is None and memory.export(thread.id)["forked_from"] is None


def test_edit_asks_again_in_a_fork_before_the_message(memory, server):
    thread = memory.new_thread(model="openai/gpt-4o")
    server.reply("Paris.", "Rome.", "Berlin.")
    memory.say(thread.id, "A city?")
    memory.say(thread.id, "Another?")
    before = everything(memory, thread.id)
    notes = []
    reply = memory.edit(thread.id, 2, "A big one?", on_note=notes.append)
    assert reply.text == "Berlin." and reply.thread_id != thread.id and reply.thread_id in notes[0]
    assert [(m.role, m.content) for m in memory.messages(reply.thread_id)] == [
        ("user", "A city?"), ("assistant", "Paris."), ("user", "A big one?"), ("assistant", "Berlin."),
    ]
    assert memory.thread(reply.thread_id).forked_at == 1
    assert everything(memory, thread.id) == before
    with pytest.raises(InvalidInput, match="the assistant's"):
        memory.edit(thread.id, 1, "x")
    with pytest.raises(InvalidInput):
        memory.edit(thread.id, 0, "   ")
    assert len(memory.threads()) == 2


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=st.integers(min_value=0, max_value=4), data=st.data())
def test_forks_and_edits_never_change_or_lose_a_message_of_the_original(tmp_path_factory, server, turns, data):
    server.echo = True
    with Memory(str(tmp_path_factory.mktemp("fork") / "m.db")) as memory:
        thread = memory.new_thread(model="openai/gpt-4o")
        for n in range(turns):
            memory.say(thread.id, f"message {n}")
        before = everything(memory, thread.id)
        at = data.draw(st.integers(min_value=-1, max_value=2 * turns - 1))
        fork = memory.fork(thread.id, at=at)
        assert [m.content for m in memory.messages(fork.id)] == [m["content"] for m in before[0][: at + 1]]
        if turns:
            asked = data.draw(st.sampled_from(range(0, 2 * turns, 2)))
            memory.edit(thread.id, asked, "asked again")
        memory.say(fork.id, "in the fork")
        assert everything(memory, thread.id) == before


def _search(memory, query, thread_id=None):
    return sorted((hit.message.thread_id, hit.message.position) for hit in memory.search(query, thread_id=thread_id))


def _index_entries(memory) -> int | None:
    """Rows in SQLite's full-text index (None on PostgreSQL, whose GIN index has no row count)."""
    from sqlalchemy import text

    with memory.store.engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            return None
        return connection.execute(text("SELECT count(*) FROM messages_fts_docsize")).scalar()


def test_a_fork_is_searched_and_recalled_through_its_originals_index_entries(memory, server):
    chat = [
        {"role": "user", "content": "My locker code is 4417, remember it."},
        {"role": "assistant", "content": "Noted: locker 4417."},
        {"role": "user", "content": "The ferry leaves from pier nine."},
        {"role": "assistant", "content": "Pier nine, got it."},
    ]
    (origin,) = memory.import_({"title": "origin", "model": "openai/gpt-4o", "messages": chat}).threads
    entries = _index_entries(memory)
    fork = memory.fork(origin, at=1)
    assert _index_entries(memory) == entries  # the copies wrote no index entries
    deeper = memory.fork(fork.id)
    memory.add_messages(fork.id, [("user", "The locker is at the station.")])
    # across threads a message is found once, in the thread that holds it; forks read theirs
    assert _search(memory, "locker") == sorted([(origin, 0), (origin, 1), (fork.id, 2)])
    assert _search(memory, "locker", fork.id) == [(fork.id, 0), (fork.id, 1), (fork.id, 2)]
    assert _search(memory, "pier", fork.id) == []  # past the fork point: not the fork's
    assert _search(memory, "locker", deeper.id) == [(deeper.id, 0), (deeper.id, 1)]
    hit = memory.search("4417", thread_id=deeper.id)[0]
    assert "4417" in hit.snippet and hit.message.content == chat[hit.message.position]["content"]

    memory.configure(fork.id, recall=2, budget=400)
    for n in range(8):
        memory.add_messages(fork.id, [("user", f"filler {n} " + "words " * 50), ("assistant", "ok " * 50)])
    preview = memory.context(fork.id, "what was the locker code?")
    recalled = [entry for entry in preview.entries if entry.kind == "recall"]
    assert recalled and "4417" in recalled[0].content

    memory.delete(origin)  # the originals go: their copies are indexed in their place
    assert _search(memory, "locker", fork.id) == [(fork.id, 0), (fork.id, 1), (fork.id, 2)]
    assert _search(memory, "locker", deeper.id) == [(deeper.id, 0), (deeper.id, 1)]
    memory.delete(fork.id)
    assert _search(memory, "locker") == [(deeper.id, 0), (deeper.id, 1)]


def test_a_fork_of_a_fork_whose_middle_is_gone_is_still_searched(memory, server):
    (origin,) = memory.import_({"model": "openai/gpt-4o", "messages": [
        {"role": "user", "content": "The password hint is marmalade."},
        {"role": "assistant", "content": "Marmalade, noted."},
    ]}).threads
    middle = memory.fork(origin)
    memory.add_messages(middle.id, [("user", "And the marmalade jar is blue."), ("assistant", "Blue jar.")])
    last = memory.fork(middle.id)
    memory.delete(middle.id)
    assert _search(memory, "marmalade", last.id) == [(last.id, 0), (last.id, 1), (last.id, 2)]
    memory.undo(last.id)
    assert _search(memory, "marmalade", last.id) == [(last.id, 0), (last.id, 1), (last.id, 2)]
    for n in range(8):
        memory.add_messages(last.id, [("user", f"filler {n} " + "words " * 50), ("assistant", "ok " * 50)])
    preview = memory.context(last.id, "what is the marmalade hint?", recall=3, budget=400)
    recalled = [p for entry in preview.entries if entry.kind == "recall" for p in entry.recalled]
    assert 0 in recalled and 2 not in recalled  # #2 was undone in this fork: never recalled here


def test_search_in_a_fork_of_a_fork_whose_middle_was_deleted_finds_what_it_inherits(memory):
    """The middle fork's delete copies what the lower fork reads into it, pointing at the
    origin's indexed message; a fork of that lower fork searches through the same entries."""
    (origin,) = memory.import_({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "about zebra 0"}]}).threads
    middle = memory.fork(origin, at=0).id
    lower = memory.fork(middle, at=0).id
    memory.delete(middle)
    lowest = memory.fork(lower, at=0).id
    for thread in (origin, lower, lowest):
        assert _search(memory, "zebra", thread) == [(thread, 0)], thread


WORDS = ("zebra", "quartz", "lemon", "violin", "tundra")
"""Words every tokenizer memchat searches with keeps as they are (no stemming, no stop word)."""

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("fork"), st.integers(0, 9), st.integers(-1, 9)),
        st.tuples(st.just("say"), st.integers(0, 9), st.sampled_from(WORDS)),
        st.tuples(st.just("undo"), st.integers(0, 9), st.none()),
        st.tuples(st.just("delete"), st.integers(0, 9), st.none()),
    ),
    max_size=12,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(st.sampled_from(WORDS), min_size=1, max_size=6), operations=OPERATIONS)
def test_search_through_shared_index_entries_finds_exactly_what_each_thread_holds(memory, server, first, operations):
    """Whatever forks are made, said into, undone and deleted, in any order, searching a thread
    finds exactly its messages holding the word, as if every copy were indexed on its own."""
    chat = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"about {word} {i}"} for i, word in enumerate(first)]
    (origin,) = memory.import_({"model": "openai/gpt-4o", "messages": chat}).threads
    alive = [origin]
    for action, which, value in operations:
        thread = alive[which % len(alive)] if alive else None
        if thread is None:
            break
        if action == "fork":
            last = memory.thread(thread).message_count - 1
            alive.append(memory.fork(thread, at=min(value, last)).id)
        elif action == "say":
            memory.add_messages(thread, [("user", f"now {value}")])
        elif action == "undo" and any(m.role == "user" and m.status != "undone" for m in memory.messages(thread)):
            memory.undo(thread)
        elif action == "delete" and len(alive) > 1:
            memory.delete(thread)
            alive.remove(thread)
    for thread in alive:
        stored = memory.messages(thread)
        for word in WORDS:
            expected = sorted((thread, m.position) for m in stored if word in m.content.split())
            assert _search(memory, word, thread) == expected, (thread, word)
    # across threads each stored message is found once, where it is stored (a fork reads the
    # messages it inherits under their origin's ids)
    held = {(m.id, t, m.position) for t in alive for m in memory.messages(t) if "zebra" in m.content.split()}
    hits = [hit.message for hit in memory.search("zebra", limit=100_000) if hit.message.thread_id in alive]
    assert len({m.id for m in hits}) == len(hits)
    assert {m.id for m in hits} == {i for i, _, _ in held}
    assert all((m.id, m.thread_id, m.position) in held for m in hits)


def _token_rows(memory) -> int:
    from sqlalchemy import text

    with memory.store.engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM message_tokens")).scalar()


def test_a_fork_shares_its_originals_token_counts_and_counts_them_again_only_once_they_are_gone(memory, server):
    chat = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "word " * 20} for i in range(40)]
    (origin,) = memory.import_({"model": "openai/gpt-4o", "budget": 200, "messages": chat}).threads
    rows = _token_rows(memory)
    fork = memory.fork(origin)
    assert _token_rows(memory) == rows  # nothing copied, nothing counted
    sent = memory.context(fork.id, "and now?", with_dropped=False)
    assert _token_rows(memory) == rows and sent.prompt_tokens <= 200
    assert sent.messages == memory.context(origin, "and now?", with_dropped=False).messages
    memory.delete(origin)
    again = memory.context(fork.id, "and now?", with_dropped=False)
    assert again.messages == sent.messages  # counted again from the copies' own text
    assert 0 < _token_rows(memory) < rows


def _message_rows(memory) -> int:
    from sqlalchemy import text

    with memory.store.engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM messages")).scalar()


MODEL_OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("fork"), st.integers(0, 9), st.integers(-1, 12)),
        st.tuples(st.just("say"), st.integers(0, 9), st.sampled_from(WORDS)),
        st.tuples(st.just("undo"), st.integers(0, 9), st.none()),
        st.tuples(st.just("undo_at"), st.integers(0, 9), st.integers(0, 12)),
        st.tuples(st.just("delete"), st.integers(0, 9), st.none()),
    ),
    max_size=14,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(length=st.integers(0, 8), operations=MODEL_OPERATIONS)
def test_forks_read_their_origins_and_no_change_anywhere_reaches_another_thread(memory, server, length, operations):
    """Forks inherit their origins' messages rather than copying them: whatever is forked, said,
    undone (a turn, or one message as an item deleted over HTTP) and deleted, in any order, every
    thread holds exactly what a thread with its own copy of everything would."""
    chat = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i} zebra"} for i in range(length)]
    (origin,) = memory.import_({"model": "openai/gpt-4o", "messages": chat}).threads
    expected = {origin: [(m["role"], m["content"], "complete") for m in chat]}
    for action, which, value in operations:
        alive = list(expected)
        if not alive:
            break
        thread = alive[which % len(alive)]
        history = expected[thread]
        if action == "fork" and value < len(history):
            rows = _message_rows(memory)
            fork = memory.fork(thread, at=value)
            assert _message_rows(memory) == rows  # nothing copied
            expected[fork.id] = list(history[: value + 1])
        elif action == "say":
            memory.add_messages(thread, [("user", f"now {value}")])
            history.append(("user", f"now {value}", "complete"))
        elif action == "undo":
            users = [i for i, (role, _, status) in enumerate(history) if role == "user" and status != "undone"]
            if users:
                memory.undo(thread)
                for i in range(users[-1], len(history)):
                    history[i] = (*history[i][:2], "undone")
        elif action == "undo_at" and value < len(history) and history[value][2] != "undone":
            memory.undo_message(thread, value)
            history[value] = (*history[value][:2], "undone")
        elif action == "delete" and len(alive) > 1:
            memory.delete(thread)
            del expected[thread]
        for each, held in expected.items():
            assert [(m.role, m.content, m.status) for m in memory.messages(each)] == held, each
            assert memory.thread(each).message_count == len(held)
    for each, held in expected.items():
        assert [m.position for m in memory.messages(each)] == list(range(len(held)))
        page, more = memory.message_page(each, after=None, limit=3, newest_first=True)
        live = [i for i, (_, _, status) in enumerate(held) if status != "undone"]
        assert [m.position for m in page] == live[::-1][:3] and more == (len(live) > 3)
        assert all(m.thread_id == each for m in page)
        exported = memory.export(each)
        assert [m["content"] for m in exported["messages"]] == [content for _, content, _ in held]


def test_a_fork_of_a_long_thread_writes_one_row_and_its_turns_read_the_origin(memory, server):
    chat = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "word " * 10} for i in range(300)]
    (origin,) = memory.import_({"model": "openai/gpt-4o", "budget": 300, "messages": chat}).threads
    rows = _message_rows(memory)
    fork = memory.fork(origin, at=199)
    assert _message_rows(memory) == rows and fork.message_count == 200
    server.reply("Forked answer.")
    memory.say(fork.id, "and in the fork?")
    assert server.last_messages[-2]["role"] == "assistant" and server.last_messages[-2]["content"].startswith("message 199")
    assert server.last_messages[-1] == {"role": "user", "content": "and in the fork?"}
    assert _message_rows(memory) == rows + 2  # the fork's own turn only
    assert [m.position for m in memory.messages(fork.id, last=3)] == [199, 200, 201]
    assert memory.messages(origin, last=1)[0].position == 299


def test_a_change_to_an_origin_reaches_none_of_its_forks(memory, server):
    thread = memory.new_thread(model="openai/gpt-4o")
    server.reply("One.", "Two.")
    memory.say(thread.id, "first?")
    memory.say(thread.id, "second?")
    fork = memory.fork(thread.id)
    deeper = memory.fork(fork.id, at=1)
    before = said(memory, fork.id)
    memory.undo(thread.id)  # the origin's last turn: the fork keeps it
    assert said(memory, fork.id) == before
    assert [status for *_, status in said(memory, thread.id)] == ["complete", "complete", "undone", "undone"]
    memory.undo(fork.id)
    memory.undo(fork.id)  # both of the fork's inherited turns: the origin and the deeper fork keep theirs
    assert [status for *_, status in said(memory, fork.id)] == ["undone"] * 4
    assert [status for *_, status in said(memory, thread.id)] == ["complete", "complete", "undone", "undone"]
    assert said(memory, deeper.id) == before[:2]
    memory.delete(thread.id)
    memory.delete(fork.id)
    assert said(memory, deeper.id) == before[:2]
    assert memory.search("first", thread_id=deeper.id)[0].message.thread_id == deeper.id


def test_a_fork_retries_and_accepts_what_it_inherits_without_touching_its_origin(memory, server):
    thread = memory.new_thread(model="openai/gpt-4o")
    server.fail(400, "bad request")
    with pytest.raises(Exception):
        memory.say(thread.id, "will this fail?")
    fork = memory.fork(thread.id)
    assert [t.unfinished_count for t in memory.threads() if t.id == fork.id] == [1]
    server.reply("It worked in the fork.")
    memory.retry(fork.id)
    assert [(m.role, m.status) for m in memory.messages(fork.id)] == [("user", "complete"), ("assistant", "complete")]
    assert [(m.role, m.status) for m in memory.messages(thread.id)] == [("user", "failed")]
