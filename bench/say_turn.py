"""A whole `memchat say` turn, as a user runs it (a new process, a local OpenAI-protocol server),
on a 100,000-message thread against a 10-message thread (target: within 1.25x), and where the
time of one turn goes before the request leaves the process."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, export_file, memchat_command, run, table

sys.path.insert(0, str(ROOT / "tests"))
from fake_openai import FakeOpenAI  # noqa: E402

RUNS = 7
BUDGET = 4000

PHASES = r"""
import json, sys, time
started = time.perf_counter()
from memchat import Memory, llm
imported = time.perf_counter()
memory = Memory()
thread = memory.thread(sys.argv[1])
opened = time.perf_counter()
llm._litellm()
litellm_ready = time.perf_counter()
context = memory.context(thread.id, "one more question", budget=int(sys.argv[2]), with_dropped=False)
built = time.perf_counter()
llm.complete(model=context.model, messages=context.messages, max_tokens=256)
called = time.perf_counter()
memory.say(thread.id, "one more question", budget=int(sys.argv[2]))
said = time.perf_counter()
print(json.dumps({
    "import memchat (sqlalchemy, sqlmodel, typer)": imported - started,
    "open the database, schema check": opened - imported,
    "import and set up litellm": litellm_ready - opened,
    "build the context (read, count, fit)": built - litellm_ready,
    "model call to the local server": called - built,
    "whole turn again, warm (context, call, store)": said - called,
}))
"""


def main() -> str:
    server = FakeOpenAI()
    env = {"OPENAI_API_BASE": server.url, "OPENAI_API_KEY": "sk-bench"}
    try:
        with tempfile.TemporaryDirectory() as folder:
            env["MEMCHAT_DB"] = str(Path(folder) / "say.db")
            threads = {}
            for size in (10, 100_000):
                path = export_file(Path(folder) / f"{size}.json", size)
                threads[size] = run(memchat_command() + ["import", str(path)], env=env).stdout.strip()
            timings = {10: [], 100_000: []}
            for _ in range(RUNS):
                for size, thread in threads.items():
                    started = time.perf_counter()
                    run(memchat_command() + ["say", thread, "and then?", "--budget", str(BUDGET), "--no-stream"], env=env)
                    timings[size].append(time.perf_counter() - started)
            small, large = statistics.median(timings[10]), statistics.median(timings[100_000])
            whole = table(
                f"`memchat say`, whole process, budget {BUDGET} (median of {RUNS})",
                ["thread", "seconds", "vs 10 messages"],
                [["10 messages", small, "1.00"], ["100,000 messages", large, f"{large / small:.2f}"]],
            )
            phases = json.loads(
                run([sys.executable, "-c", PHASES, threads[100_000], str(BUDGET)], env=env).stdout
            )
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            interpreter = time.perf_counter() - started
            rows = [["start the Python interpreter", interpreter * 1000]]
            rows += [[phase, seconds * 1000] for phase, seconds in phases.items()]
            breakdown = table("Where a `say` turn's time goes (100,000-message thread, one run)", ["phase", "ms"], rows)
    finally:
        server.close()
    return whole + "\n" + breakdown


if __name__ == "__main__":
    print(main())
