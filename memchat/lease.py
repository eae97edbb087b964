"""Per-thread turn leases: turns on one thread run one at a time, so each sees every turn
completed before it; a lease left by a process that died lapses, so a crash never wedges a thread."""

from __future__ import annotations

import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from memchat.errors import ThreadBusy
from memchat.storage.repository import Store

LEASE_MARGIN_SECONDS = 60.0


@contextmanager
def turn_lease(store: Store, thread_id: str, timeout: float) -> Iterator[Callable[[], None]]:
    """Hold the thread's lease for the turn: turns on one thread run one at a time, so each sees
    every turn completed before it. The lease outlives the longest turn (the model call's
    timeout plus a margin) and is taken over early from a holder on this machine that has died."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    seconds = timeout + LEASE_MARGIN_SECONDS
    give_up = time.monotonic() + seconds
    while not store.acquire_lease(thread_id, holder, seconds, _holder_is_gone):
        if time.monotonic() > give_up:
            raise ThreadBusy(f"thread {thread_id} is busy with another turn; try again when it ends")
        time.sleep(0.02 + random.random() * 0.08)

    def renew() -> None:
        """Extend the lease by as long again, for work that makes several model calls."""
        store.acquire_lease(thread_id, holder, seconds, _holder_is_gone)

    try:
        yield renew
    finally:
        store.release_lease(thread_id, holder)


def _holder_is_gone(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


