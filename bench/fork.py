"""`memchat fork` of a long thread (issue 11's target: a 100,000-message thread in well under a
second), on SQLite and, when one answers, PostgreSQL. Since revision 0012 a fork reads the messages
it inherits from its origin: it writes its thread row and a copy of the summaries inside its span,
whatever the thread's length. Beside it, the fork's next context (its history read through the
origin) against the origin's own, the copy an undo of an inherited turn makes, and what deleting
the origin costs (the fork copies what it reads first).

    python bench/fork.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from common import export_file, fresh_postgres_database, table

BUDGET = 4000

SIZES = (1_000, 100_000)
CONTEXT_RUNS = 15


def _median_ms(runs: int, action) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def _forks(url: str, folder: Path, backend: str) -> list[list]:
    from memchat import Memory

    rows = []
    with Memory(url) as memory:
        for size in SIZES:
            [thread] = memory.import_(export_file(folder / f"{backend}-{size}.json", size).read_bytes()).threads
            started = time.perf_counter()
            fork = memory.fork(thread)
            elapsed = time.perf_counter() - started
            assert memory.thread(fork.id).message_count == size

            def context(of: str) -> None:
                memory.context(of, "one more question", budget=BUDGET, with_dropped=False)

            context(fork.id)
            in_fork, in_origin = _median_ms(CONTEXT_RUNS, lambda: context(fork.id)), _median_ms(
                CONTEXT_RUNS, lambda: context(thread)
            )
            started = time.perf_counter()
            memory.undo(fork.id)  # an inherited turn: copied into the fork, then marked
            undo = time.perf_counter() - started
            started = time.perf_counter()
            memory.delete(thread)  # what the fork still reads is copied into it first
            delete = time.perf_counter() - started
            assert memory.thread(fork.id).message_count == size
            rows.append([
                backend, f"{size:,}", f"{elapsed * 1000:.1f}", f"{in_fork:.1f}", f"{in_origin:.1f}",
                f"{undo * 1000:.1f}", f"{delete * 1000:.0f}",
            ])
    return rows


def main() -> str:
    with tempfile.TemporaryDirectory() as folder:
        rows = _forks(str(Path(folder) / "fork.db"), Path(folder), "SQLite")
        postgres = fresh_postgres_database("fork")
        if postgres:
            rows += _forks(postgres, Path(folder), "PostgreSQL")
    return table(
        "`memchat fork`: a thread forked whole, its next context, an inherited turn undone, its origin deleted (ms)",
        ["backend", "messages", "fork", "context in the fork", "context in the origin", "undo in the fork",
         "origin deleted"],
        rows,
    ) + (
        f"\n- target: a 100,000-message thread forked in well under a second; context: budget {BUDGET}, "
        f"median of {CONTEXT_RUNS}\n"
    )


if __name__ == "__main__":
    print(main())
