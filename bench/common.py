"""Shared helpers for the benchmarks: synthetic conversations, timing, tables."""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# The benchmarks of a local `memchat say` measure that, and start no background server in the
# user's data directory; bench/daemon.py turns it on in a data directory of its own.
os.environ.setdefault("MEMCHAT_DAEMON", "off")

ROOT = Path(__file__).resolve().parents[1]
WORDS = (
    "the a memory model token budget thread message context window reply user assistant system prompt "
    "database index query fast slow cost time history summary turn provider stream json export import "
    "python sqlite postgres alembic migration schema test bench ratio table row column value answer "
    "question because which where when how why what often never always maybe perhaps indeed quite"
).split()


def long_conversation(messages: int, words: int = 360, seed: int = 11) -> list[dict]:
    """Messages of `words` words each: ten of them fill a 4,000-token budget."""
    rng = random.Random(seed)
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": " ".join(rng.choice(WORDS) for _ in range(words))}
        for i in range(messages)
    ]


def conversation(messages: int, seed: int = 7) -> list[dict]:
    """Alternating user and assistant messages of the lengths chat logs show (ShareGPT-like:
    questions of 10-80 words, answers of 60-400 words, about 70 and 300 tokens on average)."""
    rng = random.Random(seed)
    chat = []
    for i in range(messages):
        user = i % 2 == 0
        size = rng.randint(10, 80) if user else rng.randint(60, 400)
        words = " ".join(rng.choice(WORDS) for _ in range(size))
        chat.append({"role": "user" if user else "assistant", "content": f"{i}: {words}."})
    return chat


def export_file(path: Path, messages: int, model: str = "openai/gpt-4o", chat: list[dict] | None = None) -> Path:
    chat = conversation(messages) if chat is None else chat
    path.write_text(json.dumps({"title": f"{messages} messages", "model": model, "messages": chat}))
    return path


def best_of(runs: int, action) -> float:
    """The median of `runs` timings, in seconds, with the garbage collector held off so that a
    collection triggered by earlier work is not billed to whatever runs next."""
    gc.collect()
    gc.disable()
    try:
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            action()
            timings.append(time.perf_counter() - started)
    finally:
        gc.enable()
    return statistics.median(timings)


def whole_process_seconds(runs: int, args: list[str], env: dict) -> float:
    """The median of `runs` whole runs of a command (start-up included, output discarded), in seconds."""
    return best_of(
        runs, lambda: subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    )


POSTGRES = os.environ.get("MEMCHAT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def fresh_postgres_database(label: str) -> str | None:
    """The URL of a new, empty PostgreSQL database for one benchmark, if a server answers."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3) as admin:
            name = f"memchat_bench_{label}_{os.getpid()}"
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
    except Exception:
        return None
    return POSTGRES.rsplit("/", 1)[0] + f"/{name}"


def memchat_command() -> list[str]:
    script = Path(sys.executable).parent / "memchat"
    return [str(script)] if script.exists() else [sys.executable, "-m", "memchat"]


def run(args: list[str], *, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, input=input)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} failed: {result.stderr.strip()}")
    return result


def table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [header] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [f"### {title}", "", "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells[1:]]
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def machine() -> str:
    """The line a run's results are read against: cores, CPU, memory, system, Python and date."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor() or "unknown CPU",
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
