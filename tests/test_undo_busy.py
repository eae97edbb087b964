"""An undo asked while a turn's reply streams is refused as busy (exit 7, 409): it never waits and
then takes back the turn that was still arriving when it was asked."""

import threading
import time

import httpx
import pytest
from serving import Served

from memchat import ThreadBusy

SLOW_REPLY = " ".join(f"word{i}" for i in range(40))


def _streaming_second_turn(memory, server):
    """A thread with one finished turn, and a second turn whose reply is streaming (slowly, until
    the caller sets `server.piece_delay` to 0) in a background thread."""
    thread = memory.new_thread(model="openai/gpt-4o")
    server.reply("First answer.")
    memory.say(thread.id, "First question?")
    server.reply(SLOW_REPLY)
    server.piece_delay = 0.5
    turn = threading.Thread(target=memory.say, args=(thread.id, "Second question?"), kwargs={"stream": True})
    turn.start()
    give_up = time.monotonic() + 30
    while server.pieces_sent == 0:
        assert time.monotonic() < give_up, "the reply never started streaming"
        time.sleep(0.02)
    return thread.id, turn


def _finish(server, turn, memory, thread_id):
    server.piece_delay = 0
    turn.join(timeout=30)
    assert not turn.is_alive()
    assert [(m.content, m.status) for m in memory.messages(thread_id)] == [
        ("First question?", "complete"),
        ("First answer.", "complete"),
        ("Second question?", "complete"),
        (SLOW_REPLY, "complete"),
    ]
    # Once the turn is over, undo takes back the turn now last: the one it could see.
    assert [m.position for m in memory.undo(thread_id)] == [2, 3]


@pytest.mark.fault
def test_undo_while_a_reply_streams_is_refused_as_busy_by_memory_and_the_cli(memory, server, memchat):
    thread_id, turn = _streaming_second_turn(memory, server)
    try:
        started = time.monotonic()
        with pytest.raises(ThreadBusy, match="turn in progress"):
            memory.undo(thread_id)
        assert time.monotonic() - started < 2
        refused = memchat("undo", thread_id, timeout=60)
        assert refused.returncode == 7
        assert len(refused.stderr.strip().splitlines()) == 1 and "turn in progress" in refused.stderr
        assert turn.is_alive()
    finally:
        _finish(server, turn, memory, thread_id)


@pytest.mark.fault
@pytest.mark.slow
def test_undo_while_a_reply_streams_is_a_409_from_the_server(memory, server):
    served = Served()
    try:
        thread_id, turn = _streaming_second_turn(memory, server)
        try:
            refused = httpx.post(f"{served.url}/memchat/v1/threads/{thread_id}/undo", timeout=30)
            assert refused.status_code == 409
            error = refused.json()["error"]
            assert error["code"] == "conversation_busy" and "turn in progress" in error["message"]
            assert turn.is_alive()
        finally:
            _finish(server, turn, memory, thread_id)
    finally:
        served.stop()
