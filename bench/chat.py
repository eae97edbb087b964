"""`memchat chat` as a person sees it: the installed script in a pseudo-terminal (pexpect), each
turn timed from Enter to the end of its streamed reply, against the provider called directly in
the same run. A turn's own overhead (target: under 50 ms after the first) is the difference: what
memchat and litellm add to the model call, the warm process's whole point.

    python bench/chat.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import ROOT, memchat_command, table

sys.path.insert(0, str(ROOT / "tests"))
from fake_openai import FakeOpenAI  # noqa: E402

TURNS = 100
WARMUP = 5
TARGET_MS = 50
TYPING_SECONDS = 8
"""Before the first message, as a person types it: the session loads litellm meanwhile."""


def main() -> str:
    import pexpect

    provider = FakeOpenAI()
    try:
        with tempfile.TemporaryDirectory() as folder:
            env = {
                **os.environ, "OPENAI_API_BASE": provider.url, "OPENAI_BASE_URL": provider.url, "OPENAI_API_KEY": "sk-bench",
                "MEMCHAT_DB": str(Path(folder) / "chat.db"), "XDG_DATA_HOME": str(Path(folder) / "data"),
                "TERM": "xterm", "NO_COLOR": "1", "PROMPT_TOOLKIT_NO_CPR": "1",
            }
            command = memchat_command()
            started = time.perf_counter()
            child = pexpect.spawn(command[0], [*command[1:], "chat", "--model", "openai/gpt-4o", "--budget", "4000"],
                                  env=env, encoding="utf-8", timeout=120, dimensions=(40, 200))
            child.delaybeforesend = None  # pexpect waits 50 ms before each send unless told not to
            child.expect(r"chat on thread \w+")
            child.waitnoecho(timeout=120)
            ready = time.perf_counter() - started
            time.sleep(TYPING_SECONDS)
            turns: list[float] = []
            for n in range(WARMUP + TURNS):
                begun = time.perf_counter()
                child.sendline(f"and then? {n}")
                child.expect(rf"reply {len(provider.requests) + 1}\r?\n")
                if n == 0 or n >= WARMUP:
                    turns.append(time.perf_counter() - begun)
                child.waitnoecho(timeout=60)
            child.sendeof()
            child.expect(pexpect.EOF)
            with httpx.Client() as client:
                direct = []
                for n in range(TURNS):
                    begun = time.perf_counter()
                    with client.stream(
                        "POST", f"{provider.url}/chat/completions",
                        json={"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": f"and then? {n}"}]},
                    ) as answer:
                        for _ in answer.iter_bytes():
                            pass
                    direct.append(time.perf_counter() - begun)
    finally:
        provider.close()
    model = statistics.median(direct) * 1000
    first, warm = turns[0] * 1000, [t * 1000 for t in turns[1:]]
    cuts = statistics.quantiles(warm, n=100, method="inclusive")
    rows = [
        ["session ready for typing (`memchat chat` started)", f"{ready * 1000:.0f}", "-", "-"],
        [f"first turn, typed in {TYPING_SECONDS} s", f"{first:.1f}", f"{first - model:.1f}", "-"],
        [f"later turns, p50 ({TURNS})", f"{cuts[49]:.1f}", f"{cuts[49] - model:.1f}", f"< {TARGET_MS}"],
        ["later turns, p95", f"{cuts[94]:.1f}", f"{cuts[94] - model:.1f}", "-"],
        ["provider alone (streamed), p50", f"{model:.1f}", "-", "-"],
    ]
    return table(
        "`memchat chat`: a turn from Enter to the end of its streamed reply, in a pseudo-terminal (ms)",
        ["", "time", "overhead (minus the provider alone)", "target"],
        rows,
    )


if __name__ == "__main__":
    print(main())
