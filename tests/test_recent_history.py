"""A warm process keeps threads' recent history in memory (what `memchat serve` does between
turns) and must send exactly what a cold one would, whatever other processes did meanwhile."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, text

from memchat import InvalidInput, Memory, NotFound, ReplyCutOff, Unanswered

OTHER_STEPS = ["say elsewhere", "undo elsewhere", "drop an item elsewhere", "cut off elsewhere", "accept elsewhere",
               "add elsewhere", "say here", "retry here"]


def statements_of(memory: Memory) -> list[str]:
    seen: list[str] = []
    for engine in {memory.store.engine, memory.store._write_engine}:
        event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(" ".join(statement.split())))
    return seen


def test_a_warm_turn_reads_only_what_the_last_turn_added(memory, server):
    thread = memory.new_thread(model="openai/gpt-4o", budget=4000)
    for n in range(3):
        memory.say(thread.id, f"question {n}")
    seen = statements_of(memory)
    memory.say(thread.id, "question 3")
    reads = [s for s in seen if s.startswith("SELECT") and "FROM messages" in s]
    # One short read of the two messages the last turn stored; no page of history, no contents.
    assert len([s for s in reads if "ORDER BY messages.position DESC" in s and "LIMIT" not in s]) == 1
    assert not [s for s in reads if "LIMIT" in s and "position DESC" in s and "status = 'complete'" in s]
    assert not [s for s in reads if s.startswith("SELECT messages.id, messages.content")]
    assert server.last_messages[-3:] == [
        {"role": "user", "content": "question 2"},
        {"role": "assistant", "content": "reply 3"},
        {"role": "user", "content": "question 3"},
    ]


def test_every_status_change_raises_the_history_version_in_the_database(memory, db_url):
    thread = memory.new_thread()
    memory.add_messages(thread.id, [("user", "hello")])
    before = memory.store.history_version(thread.id)
    with memory.store.engine.begin() as connection:
        connection.execute(text("UPDATE messages SET status = 'undone' WHERE thread_id = :t"), {"t": thread.id})
    assert memory.store.history_version(thread.id) == before + 1
    with memory.store.engine.begin() as connection:  # the same status again changes nothing
        connection.execute(text("UPDATE messages SET status = 'undone' WHERE thread_id = :t"), {"t": thread.id})
    assert memory.store.history_version(thread.id) == before + 1


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.sampled_from(OTHER_STEPS), min_size=1, max_size=10))
def test_a_warm_process_sends_what_a_cold_one_would_whatever_others_did(db_url, server, steps):
    server.echo = True
    with Memory(db_url) as warm, Memory(db_url) as elsewhere:
        thread = warm.new_thread(model="openai/gpt-4o", budget=400)
        for n in range(4):
            warm.say(thread.id, f"opening {n} " + "words " * 20)
        for index, step in enumerate(steps):
            try:
                if step == "say elsewhere":
                    elsewhere.say(thread.id, f"elsewhere {index}")
                elif step == "undo elsewhere":
                    elsewhere.undo(thread.id)
                elif step == "drop an item elsewhere":
                    elsewhere.undo_message(thread.id, max(0, len(elsewhere.messages(thread.id)) - 3))
                elif step == "cut off elsewhere":
                    server.echo = False
                    server.reply("this reply is cut off part of the way")
                    server.drop_after(2)
                    with pytest.raises(Unanswered) as caught:
                        elsewhere.say(thread.id, f"cut {index}", stream=True, on_text=lambda _: None)
                    assert isinstance(caught.value.cause, ReplyCutOff)
                elif step == "accept elsewhere":
                    elsewhere.accept(thread.id)
                elif step == "add elsewhere":
                    elsewhere.add_messages(thread.id, [("user", f"added {index}"), ("assistant", f"noted {index}")])
                elif step == "retry here":
                    warm.retry(thread.id)
                else:
                    warm.say(thread.id, f"here {index}")
            except (InvalidInput, NotFound):
                pass  # nothing to undo, accept or retry, or that item is gone already: nothing changed
            finally:
                server.echo = True
            with Memory(db_url) as cold:
                expected = cold.context(thread.id, f"check {index}").messages
            warm.say(thread.id, f"check {index}")
            assert server.last_messages == expected
