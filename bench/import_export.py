"""Import throughput (target: 100,000 messages in under 10 s, token counts included; from an
llm logs database, 100,000 messages in under 15 s) and export peak memory (target: flat, a
100,000-message thread costs about what a 10-message one does)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from common import best_of, conversation, export_file, memchat_command, run, table

PEAK = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_kib(args: list[str], env: dict) -> int:
    """Peak resident memory of one run of a command (each probe process has only that child)."""
    return int(run([sys.executable, "-c", PEAK, *args], env=env).stdout)


LLM_CONVERSATION = 1_000
"""Messages in each conversation of the llm logs database (100 of them make 100,000)."""


def llm_logs(path: Path, messages: int) -> Path:
    """An llm logs database written by the real llm package (its message store): conversations
    of ShareGPT-sized messages, as the JSON import reads."""
    import sqlite_utils
    from llm.logs import LogStore
    from llm.parts import assistant, user

    database = sqlite_utils.Database(path)
    database.execute("PRAGMA synchronous = OFF")  # building the fixture only: no sync a message
    store = LogStore(database)
    chat = conversation(messages)
    for start in range(0, messages, LLM_CONVERSATION):
        said = [(user if m["role"] == "user" else assistant)(m["content"]) for m in chat[start : start + LLM_CONVERSATION]]
        store.create_thread(name=f"conversation {start // LLM_CONVERSATION}", tip=store.ensure_chain(said))
    return path


def main() -> str:
    with tempfile.TemporaryDirectory() as folder:
        env = {"MEMCHAT_DB": str(Path(folder) / "transfer.db")}
        rows = []
        threads = {}
        for size in (10, 100_000):
            path = export_file(Path(folder) / f"{size}.json", size)
            started = time.perf_counter()
            threads[size] = run(memchat_command() + ["import", str(path)], env=env).stdout.strip()
            seconds = time.perf_counter() - started
            rows.append(["memchat JSON", f"{size:,}", f"{path.stat().st_size / 1e6:.1f}", seconds, f"{size / seconds:,.0f}"])
        logs = llm_logs(Path(folder) / "logs.db", 100_000)
        started = time.perf_counter()
        run(memchat_command() + ["import", "--from", "llm", str(logs)], env=env)
        seconds = time.perf_counter() - started
        rows.append(["llm logs database", "100,000", f"{logs.stat().st_size / 1e6:.1f}", seconds, f"{100_000 / seconds:,.0f}"])
        imports = table(
            "`memchat import` (new process; parse, validate, count tokens, write)",
            ["from", "messages", "file MB", "seconds", "messages/s"],
            rows,
        )
        memory = []
        for size, thread in threads.items():  # the JSON imports' threads
            started = time.perf_counter()
            kib = peak_kib(memchat_command() + ["export", thread, "-o", str(Path(folder) / f"out-{size}.json")], env)
            memory.append([f"{size:,}", kib / 1024, time.perf_counter() - started])
        memory = [row + [f"{row[1] / memory[0][1]:.2f}"] for row in memory]
        exports = table(
            "`memchat export` to a file (new process): peak resident memory",
            ["messages", "peak MiB", "seconds", "vs 10 messages"],
            memory,
        )
        usage = usage_stats(env["MEMCHAT_DB"])
    return imports + "\n" + exports + "\n" + usage


def usage_stats(database: str) -> str:
    """`memchat stats` over the imports above (200,000 messages, the llm half with each reply's
    model, tokens and latency): aggregates in SQL, median of 5, in-process."""
    from memchat import Memory

    rows = []
    with Memory(database) as memory:
        messages = sum(thread.message_count for thread in memory.threads())
        for by in (None, "model", "day", "thread"):
            rows.append([by or "(one row)", best_of(5, lambda by=by: memory.stats(by=by)) * 1000])
    return table(f"`memchat stats` over {messages:,} messages (ms, median of 5)", ["--by", "ms"], rows)


if __name__ == "__main__":
    print(main())
