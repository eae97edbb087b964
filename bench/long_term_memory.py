"""Long-term memory on long threads: the summary policy, recall and search at 10 to 100,000 messages.

A turn under the summary policy reads one summary row more than the window policy does, so its
cost must stay flat like the window's. Recall and search go through the database's full-text
index (FTS5 here); their cost grows with the number of messages that match, so two queries are
timed: one whose words are in nearly every message (the synthetic chat draws from 80 words: a
worst case) and one that names a single message. The last row measures the 10-message thread
again once the database holds every thread: a search in one thread must not pay for the others.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import best_of, conversation, table

SIZES = (10, 1_000, 10_000, 100_000)
BUDGET = 4_000
MODEL = "openai/gpt-4o"
COMMON = "memory budget index"


def measure(memory, thread: str, size: int) -> list[float]:
    rare = f"{size // 2}"
    timings = {
        "window": lambda: memory.context(thread, "next question?", with_dropped=False),
        "summary": lambda: memory.context(thread, "next question?", with_dropped=False, policy="summary"),
        "recall 3": lambda: memory.context(thread, f"what about {COMMON}?", with_dropped=False, recall=3),
        "search common": lambda: memory.search(COMMON, thread_id=thread),
        "search rare": lambda: memory.search(rare, thread_id=thread),
    }
    runs = 21 if size < 100_000 else 7
    return [best_of(runs, action) * 1000 for action in timings.values()]


def main() -> str:
    from memchat import Memory

    rows = []
    threads = {}
    with tempfile.TemporaryDirectory() as folder:
        with Memory(str(Path(folder) / "bench.db")) as memory:
            for size in SIZES:
                chat = conversation(size)
                summary = [{"first_position": 0, "last_position": max(0, size - 40), "content": "Earlier: " + "facts " * 300, "model": MODEL}]
                (thread,) = memory.import_(
                    {"model": MODEL, "budget": BUDGET, "messages": chat, "summaries": summary if size > 40 else []}
                ).threads
                threads[size] = thread
                rows.append([f"{size:,}"] + measure(memory, thread, size))
            total = sum(SIZES)
            rows.append([f"10, in a database of {total:,}"] + measure(memory, threads[10], 10))
    baseline = rows[0]
    for row in rows:
        row += [f"{row[i] / baseline[i]:.2f}" for i in (2, 3)]
    header = [
        "messages in thread",
        "window ms",
        "summary policy ms",
        "recall 3 ms",
        f"search {COMMON!r} ms",
        "search one message ms",
        "summary vs 10",
        "recall vs 10",
    ]
    return table(
        "Long-term memory: one turn's context (budget 4,000) and search, median, from the DB", header, rows
    )


if __name__ == "__main__":
    print(main())
