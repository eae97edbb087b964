"""Agent threads (issue 26): the context of a 100,000-item agent thread against a 10-item one
(target: within 1.5x), a turn with tools against one without on the same thread (target: within
1.1x), and the same 1 MB image stored 100 times (target: stored once).

An agent thread here repeats a unit of 20 items: a user message, three function calls each with
its output (1,000-5,000 words of tool output, about as many tokens), the assistant's answer, then
six exchanges of chat-sized messages; so 30% of the items are calls and their outputs. The big
thread is written with the store's bulk append, in chunks, as an import would."""

from __future__ import annotations

import base64
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, WORDS, best_of, fresh_postgres_database, table

sys.path.insert(0, str(ROOT / "tests"))
from fake_openai import FakeOpenAI  # noqa: E402

BIG = 100_000
BUDGET = 16_000
MODEL = "openai/gpt-4o"
CHUNK = 2_000
TURN_THREAD = 1_000
TURN_RUNS = 21
IMAGE_BYTES = 1_000_000
IMAGE_TIMES = 100
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "The text of a file in the repository.",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_tests",
            "description": "Run the test suite and give back its output.",
            "parameters": {"type": "object", "properties": {"selection": {"type": "string"}}},
        },
    },
]


def agent_items(count: int, seed: int = 26):
    """`count` records of an agent thread, made lazily (the big thread's outputs are 270 MB)."""
    from memchat.records import MessageCreate

    rng = random.Random(seed)
    pool = [rng.choice(WORDS) for _ in range(12_000)]

    def words(low: int, high: int) -> str:
        size = rng.randint(low, high)
        start = rng.randrange(0, len(pool) - size)
        return " ".join(pool[start : start + size])

    made = 0
    unit = 0
    while made < count:
        records = [MessageCreate(role="user", content=f"{unit}: {words(10, 80)}?")]
        for call in range(3):
            call_id = f"call_{unit}_{call}"
            name, arguments = ("read_file", json.dumps({"path": f"src/m{unit}_{call}.py"}))
            records.append(
                MessageCreate(
                    role="assistant",
                    kind="function_call",
                    content=f"{name}({arguments})",
                    call_id=call_id,
                    name=name,
                    arguments=arguments,
                )
            )
            records.append(
                MessageCreate(role="tool", kind="function_call_output", content=words(1_000, 5_000), call_id=call_id)
            )
        records.append(MessageCreate(role="assistant", content=words(60, 400)))
        for _ in range(6):
            records.append(MessageCreate(role="user", content=words(10, 80)))
            records.append(MessageCreate(role="assistant", content=words(60, 400)))
        for record in records[: count - made]:
            yield record
        made += len(records)
        unit += 1


def agent_thread(memory, count: int) -> str:
    thread = memory.new_thread(title=f"{count} agent items", model=MODEL)
    chunk = []
    for record in agent_items(count):
        chunk.append(record)
        if len(chunk) == CHUNK:
            memory.store.append_messages(thread.id, chunk)
            chunk = []
    if chunk:
        memory.store.append_messages(thread.id, chunk)
    return thread.id


def context_figures(memory) -> tuple[str, list[str]]:
    """(a): Memory.context of the next turn, tools included, as a turn builds it (only what is sent is read)."""
    rows, notes = [], []
    started = time.perf_counter()
    big = agent_thread(memory, BIG)
    notes.append(f"writing the {BIG:,}-item thread took {time.perf_counter() - started:.0f} s")
    small = agent_thread(memory, 10)
    timings = {}
    for label, thread in (("10 items", small), (f"{BIG:,} items", big)):

        def turn(thread: str = thread):
            return memory.context(thread, "next step?", budget=BUDGET, tools=TOOLS, with_dropped=False)

        sent = turn()
        timings[label] = best_of(51, turn)
        kinds = [message.get("role") for message in sent.messages]
        rows.append([label, len(sent.messages), kinds.count("tool"), sent.prompt_tokens, timings[label] * 1000])
    baseline = timings["10 items"]
    for row in rows:
        row.append(f"{timings[row[0]] / baseline:.2f}")
    header = ["agent thread", "messages sent", "tool messages sent", "tokens sent", "ms (median of 51)", "vs 10 items"]
    return table(
        f"Agent thread context, tools included, budget {BUDGET:,} (Memory.context, from the DB)", header, rows
    ), notes


def turn_figures(memory, server) -> str:
    """(b): a whole warm turn through litellm to a local provider, with tools and without, interleaved."""
    thread = agent_thread(memory, TURN_THREAD)
    memory.say(thread, "warm up", budget=BUDGET, tools=TOOLS)
    timings = {"without tools": [], "with 2 tools": []}
    for index in range(TURN_RUNS):
        for label in timings if index % 2 == 0 else reversed(list(timings)):
            tools = TOOLS if label == "with 2 tools" else None
            started = time.perf_counter()
            memory.say(thread, f"step {index}?", budget=BUDGET, tools=tools)
            timings[label].append(time.perf_counter() - started)
    plain = statistics.median(timings["without tools"])
    rows = [
        [label, statistics.median(values) * 1000, f"{statistics.median(values) / plain:.3f}"]
        for label, values in timings.items()
    ]
    return table(
        f"A turn with tools against one without ({TURN_THREAD:,}-item agent thread, budget {BUDGET:,}, median of {TURN_RUNS}, interleaved)",
        ["turn", "ms", "vs without tools"],
        rows,
    )


def image_figures(folder: Path) -> str:
    """(c): the same 1 MB image in 100 user messages, added as Responses input items."""
    from memchat import Memory
    from memchat.items import from_responses_input

    image = b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(IMAGE_BYTES - 8)
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    item = {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What is in this picture?"},
            {"type": "input_image", "image_url": url},
        ],
    }
    rows = []
    sqlite_path = folder / "images.db"
    targets = [("SQLite", str(sqlite_path))]
    postgres = fresh_postgres_database("images")
    if postgres:
        targets.append(("PostgreSQL", postgres))
    for backend, url_of_db in targets:
        with Memory(url_of_db) as memory:
            thread = memory.new_thread(title="one image, 100 times")
            before = database_bytes(memory, backend, sqlite_path)
            started = time.perf_counter()
            for _ in range(IMAGE_TIMES):
                memory.add_items(thread.id, from_responses_input([item]))
            seconds = time.perf_counter() - started
            grown = database_bytes(memory, backend, sqlite_path) - before
            blobs = count_blobs(memory)
            rows.append(
                [
                    backend,
                    IMAGE_TIMES,
                    blobs,
                    f"{grown / 2**20:.2f}",
                    f"{IMAGE_TIMES * IMAGE_BYTES / 2**20:.1f}",
                    seconds / IMAGE_TIMES * 1000,
                ]
            )
    return table(
        "The same 1 MB image in 100 messages (Memory.add_items of a Responses input_image)",
        ["backend", "messages", "blobs rows", "database growth MiB", "the bytes given MiB", "ms per message"],
        rows,
    )


def database_bytes(memory, backend: str, sqlite_path: Path) -> int:
    if backend == "SQLite":
        with sqlite3.connect(sqlite_path) as connection:
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            size = connection.execute("PRAGMA page_size").fetchone()[0]
        return pages * size
    from sqlalchemy import text

    with memory.store.engine.connect() as connection:
        return connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one()


def count_blobs(memory) -> int:
    from sqlalchemy import text

    with memory.store.engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM blobs")).scalar_one()


def main() -> str:
    from memchat import Memory

    server = FakeOpenAI()
    saved = {name: os.environ.get(name) for name in ("OPENAI_API_BASE", "OPENAI_BASE_URL", "OPENAI_API_KEY")}
    os.environ.update(OPENAI_API_BASE=server.url, OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-bench")
    try:
        with tempfile.TemporaryDirectory() as folder:
            with Memory(str(Path(folder) / "agents.db")) as memory:
                context, notes = context_figures(memory)
                turn = turn_figures(memory, server)
            images = image_figures(Path(folder))
    finally:
        server.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return "\n".join([context, turn, images, *(f"- {note}" for note in notes)]) + "\n"


if __name__ == "__main__":
    print(main())
