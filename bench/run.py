"""Run every benchmark and print the results as Markdown (what docs/benchmarks.md holds).

    pip install ".[bench]" && python bench/run.py | tee docs/benchmarks.md

Each table compares timings measured side by side in this one run, on this machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import adversary  # noqa: E402
import agent_threads  # noqa: E402
import chat  # noqa: E402
import client  # noqa: E402
import context_assembly  # noqa: E402
import daemon  # noqa: E402
import fork  # noqa: E402
import import_export  # noqa: E402
import long_term_memory  # noqa: E402
import recall_quality  # noqa: E402
import say_turn  # noqa: E402
import serve  # noqa: E402
import startup  # noqa: E402
from common import machine  # noqa: E402


def main() -> None:
    print("# memchat benchmarks\n")
    print(f"Machine: {machine()}.\n")
    print('Rerun with `pip install ".[bench]" && python bench/run.py`.\n', flush=True)
    for name, bench in (
        ("context assembly", context_assembly),
        ("say", say_turn),
        ("serve", serve),
        ("chat", chat),
        ("client mode", client),
        ("background server", daemon),
        ("fork", fork),
        ("agent threads", agent_threads),
        ("import and export", import_export),
        ("long-term memory", long_term_memory),
        ("recall quality", recall_quality),
        ("start-up", startup),
        ("adversarial probe", adversary),
    ):
        print(f"running {name}...", file=sys.stderr, flush=True)
        print(bench.main(), flush=True)


if __name__ == "__main__":
    main()
