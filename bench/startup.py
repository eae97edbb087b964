"""Start-up of commands that call no model (target: `memchat list` in under a fifth of
`python -c "import litellm"`), and what the schema check costs with and without Alembic."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import memchat_command, run, table, whole_process_seconds

RUNS = 9

SCHEMA_CHECK = r"""
import sys, time
from memchat.storage import database
engine = database.make_engine(sys.argv[1])
started = time.perf_counter(); database.ensure_current(engine); quick = time.perf_counter() - started
started = time.perf_counter(); database.upgrade(engine); alembic = time.perf_counter() - started
print(quick, alembic)
"""


def main() -> str:
    import os

    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "start.db")
        env = {**os.environ, "MEMCHAT_DB": db, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        for i in range(20):
            run(memchat_command() + ["new", "--title", f"thread {i}"], env=env)
        commands = {
            'python -c "import litellm"': [sys.executable, "-c", "import litellm"],
            "memchat list": memchat_command() + ["list"],
            "memchat --help": memchat_command() + ["--help"],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        timings = {name: whole_process_seconds(RUNS, args, env) for name, args in commands.items()}
        baseline = timings['python -c "import litellm"']
        rows = [[name, seconds * 1000, f"{seconds / baseline:.3f}"] for name, seconds in timings.items()]
        starts = table(
            f"Start-up, whole process (median of {RUNS}; litellm with its local cost map)",
            ["command", "ms", "vs import litellm"],
            rows,
        )
        quick, alembic = map(float, run([sys.executable, "-c", SCHEMA_CHECK, "sqlite:///" + db], env=env).stdout.split())
        schema = table(
            "Schema check of a database already at head (in a fresh process, first call)",
            ["how", "ms"],
            [["one query on alembic_version (what memchat does)", quick * 1000], ["Alembic upgrade to head (no-op)", alembic * 1000]],
        )
    return starts + "\n" + schema


if __name__ == "__main__":
    print(main())
