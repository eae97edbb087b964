"""`memchat --server URL`: a whole `memchat say` process as a client of a warm `memchat serve`,
side by side in one run with the local `memchat say` (which loads litellm and opens the
database itself) and with `llm --version` (the start of the tool people compare us with; the
`llm` package is in the bench extra). Targets: the client's say <= 0.15x the local say, and no
slower than `llm --version`.

    python bench/client.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, memchat_command, run, table, whole_process_seconds

sys.path.insert(0, str(ROOT / "tests"))
from fake_openai import FakeOpenAI  # noqa: E402
from serve import _serve, _stop  # noqa: E402

RUNS = 15


def main() -> str:
    provider = FakeOpenAI()
    try:
        with tempfile.TemporaryDirectory() as folder:
            env = {**os.environ, "OPENAI_API_BASE": provider.url, "OPENAI_BASE_URL": provider.url,
                   "OPENAI_API_KEY": "sk-bench", "MEMCHAT_DB": str(Path(folder) / "client.db")}
            thread = run(memchat_command() + ["new", "--model", "openai/gpt-4o"], env=env).stdout.strip()
            served, base = _serve(env)
            try:
                client_env = {**env, "MEMCHAT_SERVER": base}
                say = memchat_command() + ["say", thread, "and then?"]
                for _ in range(3):  # the server's first turns load litellm and the tokenizer
                    subprocess.run(say, check=True, stdout=subprocess.DEVNULL, env=client_env)
                paths = {
                    "memchat say (local: loads litellm, opens the database)": (say, env),
                    "memchat --server URL say (a client of a warm memchat serve)": (say, client_env),
                    "python -c pass": ([sys.executable, "-c", "pass"], env),
                }
                llm = shutil.which("llm", path=str(Path(sys.executable).parent)) or shutil.which("llm")
                if llm:
                    paths["llm --version"] = ([llm, "--version"], env)
                timings = {name: whole_process_seconds(RUNS, args, path_env) * 1000 for name, (args, path_env) in paths.items()}
            finally:
                _stop(served)
    finally:
        provider.close()
    local = timings["memchat say (local: loads litellm, opens the database)"]
    client = timings["memchat --server URL say (a client of a warm memchat serve)"]
    rows = [[name, f"{ms:.0f}", f"{ms / local:.3f}"] for name, ms in timings.items()]
    notes = [f"client say vs local say: {client / local:.3f}x (target <= 0.15x)"]
    if "llm --version" in timings:
        notes.append(f"client say vs `llm --version`: {client / timings['llm --version']:.2f}x (target <= 1.0x)")
    else:
        notes.append("`llm --version` is missing: install the bench extra (`pip install '.[bench]'`)")
    text = table(
        f"A whole `memchat say` process, local and as a client of `memchat serve` (median of {RUNS}; a local provider)",
        ["command", "ms", "vs local say"],
        rows,
    )
    return text + "\n" + "\n".join(f"- {note}" for note in notes) + "\n"


if __name__ == "__main__":
    print(main())
