"""Per-thread turn leases: turns on one thread run one at a time, so each sees every turn
completed before it.

A lease is short and kept alive by a heartbeat while its holder works, so a turn may last as
long as its `--timeout` allows and a holder that dies (or is frozen) loses the lease within
`lease_seconds()`. A holder on this machine, in this PID namespace, whose process is gone is
passed over at once; anywhere else (another host, another container sharing the hostname) only
the lapse of its heartbeat counts. A holder that has lost its lease finds out before it stores
anything (`Store.finish_turn` checks), so two turns never interleave.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

from memchat.config import lease_seconds
from memchat.errors import LeaseLost, ThreadBusy
from memchat.storage.repository import Store

HEARTBEATS_PER_LEASE = 3


@lru_cache(maxsize=1)
def _machine() -> str:
    """This process's machine and PID namespace: a PID means something only within both."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            boot = handle.read().strip()[:8]
    except OSError:
        boot = "-"
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = "-"
    return f"{socket.gethostname()[:64]}/{boot}/{namespace}"


def identity() -> str:
    """Who holds a lease (or writes an import): machine, PID and a nonce."""
    return f"{_machine()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_gone(holder: str) -> bool:
    """True only when the holder's process is certainly gone: same machine, boot and PID
    namespace as this process, and no process with its PID. Otherwise the lease lapses."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != _machine() or "-" in parts[0].split("/")[1:] or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def turn_in_progress(store: Store, thread_id: str) -> bool:
    holder = store.live_lease_holder(thread_id)
    return holder is not None and not holder_is_gone(holder)


@dataclass
class Lease:
    """A held lease: `check()` raises LeaseLost once the heartbeat found another holder."""

    store: Store
    thread_id: str
    holder: str
    seconds: float
    lost: threading.Event = field(default_factory=threading.Event)
    released: bool = False
    """Set once the turn gave the lease up in its own last commit (`Store.finish_turn`)."""

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(self.thread_id)


@contextmanager
def turn_lease(
    store: Store,
    thread_id: str,
    wait: float,
    take: Callable[[str, float], bool] | None = None,
    *,
    refusal: str | None = None,
) -> Iterator[Lease]:
    """Hold the thread's lease while the block runs, waiting up to `wait` seconds (plus one
    lease's lapse) for another holder to finish; a heartbeat keeps it while the block works.
    `take(holder, seconds)` takes the lease in the caller's own transaction (a turn stores its
    user message in the same commit); False: another turn has it, wait. With `refusal`, a
    lease another holder has is not waited for: ThreadBusy(`refusal`) at once."""
    seconds = lease_seconds()
    lease = Lease(store, thread_id, identity(), seconds)
    if take is None:

        def take(holder: str, seconds: float) -> bool:
            return store.acquire_lease(thread_id, holder, seconds, holder_is_gone)

    give_up = time.monotonic() + wait + seconds
    while not take(lease.holder, seconds):
        if refusal is not None:
            raise ThreadBusy(refusal)
        if time.monotonic() > give_up:
            raise ThreadBusy(f"thread {thread_id} is busy with another turn; try again when it ends")
        time.sleep(0.02 + random.random() * 0.08)
    done = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(lease, done), name="memchat-lease", daemon=True)
    beat.start()
    try:
        yield lease
    finally:
        done.set()
        beat.join()
        if not lease.lost.is_set() and not lease.released:
            store.release_lease(thread_id, lease.holder)


def _heartbeat(lease: Lease, done: threading.Event) -> None:
    while not done.wait(lease.seconds / HEARTBEATS_PER_LEASE):
        try:
            if not lease.store.acquire_lease(
                lease.thread_id, lease.holder, lease.seconds, holder_is_gone, renewing=True
            ):
                lease.lost.set()
                return
        except Exception:
            continue
