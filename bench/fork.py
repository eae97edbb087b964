"""`memchat fork` of a long thread (issue 11's target: a 100,000-message thread in well under a
second), on SQLite and, when one answers, PostgreSQL. The copies share their originals' full-text
index entries (revision 0010): what a fork still writes is a row per message, its text included,
and its token counts.

    python bench/fork.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common import export_file, fresh_postgres_database, table

SIZES = (1_000, 100_000)


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
            rows.append([backend, f"{size:,}", f"{elapsed * 1000:.0f}"])
    return rows


def main() -> str:
    with tempfile.TemporaryDirectory() as folder:
        rows = _forks(str(Path(folder) / "fork.db"), Path(folder), "SQLite")
        postgres = fresh_postgres_database("fork")
        if postgres:
            rows += _forks(postgres, Path(folder), "PostgreSQL")
    return table(
        "`memchat fork`: a whole thread copied (rows, token counts, summaries; the full-text index shared) (ms)",
        ["backend", "messages", "fork"],
        rows,
    ) + "\n- target: a 100,000-message thread in well under a second\n"


if __name__ == "__main__":
    print(main())
