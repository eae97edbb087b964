"""Context assembly for one turn (budget 4,000 tokens) on threads of 10 to 100,000 messages.

memchat reads the thread from its database (newest first, stopping when the budget is full);
the peers, litellm's and LangChain's trim_messages, get the same history already in memory.
Targets: at 100,000 messages memchat is at least 20x faster than either peer, and its time at
100,000 is within 1.5x of its time at 10.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import best_of, conversation, export_file, table

SIZES = (10, 1_000, 10_000, 100_000)
BUDGET = 4_000
MODEL = "openai/gpt-4o"


def peers(chat: list[dict]):
    import tiktoken
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.messages import trim_messages as langchain_trim
    from litellm.utils import trim_messages as litellm_trim

    encoding = tiktoken.get_encoding("o200k_base")
    as_langchain = [HumanMessage(m["content"]) if m["role"] == "user" else AIMessage(m["content"]) for m in chat]

    def tiktoken_counter(messages) -> int:
        return sum(3 + len(encoding.encode(m.content)) for m in messages) + 3

    def litellm_run():
        return litellm_trim([dict(m) for m in chat], model="gpt-4o", max_tokens=BUDGET, trim_ratio=1.0)

    def langchain_run():
        return langchain_trim(
            as_langchain, max_tokens=BUDGET, token_counter=tiktoken_counter, strategy="last", start_on="human"
        )

    return litellm_run, langchain_run


def main() -> str:
    from memchat import Memory

    rows = []
    timings = {}
    with tempfile.TemporaryDirectory() as folder:
        with Memory(str(Path(folder) / "bench.db")) as memory:
            for size in SIZES:
                (thread,) = memory.import_(export_file(Path(folder) / f"{size}.json", size, MODEL).read_bytes())
                memory.context(thread, "next question?", budget=BUDGET, with_dropped=False)
                ours = best_of(101, lambda: memory.context(thread, "next question?", budget=BUDGET, with_dropped=False))
                litellm_run, langchain_run = peers(conversation(size))
                runs = {10: 7, 1_000: 5, 10_000: 3}.get(size, 1)
                theirs_litellm = best_of(runs, litellm_run)
                theirs_langchain = best_of(runs, langchain_run)
                timings[size] = ours
                rows.append(
                    [
                        f"{size:,}",
                        ours * 1000,
                        theirs_litellm * 1000,
                        theirs_langchain * 1000,
                        f"{theirs_litellm / ours:.1f}x",
                        f"{theirs_langchain / ours:.1f}x",
                        f"{ours / timings[SIZES[0]]:.2f}",
                    ]
                )
    header = [
        "messages",
        "memchat ms (from DB)",
        "litellm trim_messages ms",
        "LangChain trim_messages ms",
        "litellm / memchat",
        "LangChain / memchat",
        "memchat vs 10 msgs",
    ]
    return table("Context assembly, one turn, budget 4,000 tokens (median)", header, rows)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    print(main())
