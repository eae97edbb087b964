"""Context assembly for one turn (budget 4,000 tokens) on threads of 10 to 100,000 messages.

memchat reads the thread from its database (newest first, stopping when the budget is full);
the peers, litellm's and LangChain's trim_messages, get the same history already in memory.
Targets: at 100,000 messages memchat is at least 20x faster than either peer, and its time at
100,000 is within 1.5x of its time at 10.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import best_of, conversation, export_file, long_conversation, table

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
    with tempfile.TemporaryDirectory() as folder:
        with Memory(str(Path(folder) / "bench.db")) as memory:

            def measure(label: str, chat: list[dict], with_peers: bool) -> float:
                (thread,) = memory.import_(export_file(Path(folder) / "thread.json", len(chat), MODEL, chat).read_bytes()).threads
                turn = lambda: memory.context(thread, "next question?", budget=BUDGET, with_dropped=False)  # noqa: E731
                sent = turn()
                ours = best_of(101, turn)
                row = [label, len(sent.messages), sent.prompt_tokens, ours * 1000, ours]
                if with_peers:
                    litellm_run, langchain_run = peers(chat)
                    runs = {10: 7, 1_000: 5, 10_000: 3}.get(len(chat), 1)
                    theirs = [best_of(runs, litellm_run), best_of(runs, langchain_run)]
                    row += [t * 1000 for t in theirs] + [f"{t / ours:.1f}x" for t in theirs]
                else:
                    row += ["", "", "", ""]
                rows.append(row)
                return ours

            baseline = measure("10", conversation(10), True)
            for size in SIZES[1:]:
                measure(f"{size:,}", conversation(size), True)
            measure("10 long (fill the budget)", long_conversation(10), False)
            for row in rows:
                row.append(f"{row.pop(4) / baseline:.2f}")
    header = [
        "messages in thread",
        "messages sent",
        "tokens sent",
        "memchat ms (from DB)",
        "litellm trim_messages ms",
        "LangChain trim_messages ms",
        "litellm / memchat",
        "LangChain / memchat",
        "memchat vs 10",
    ]
    return table("Context assembly, one turn, budget 4,000 tokens (median)", header, rows)


if __name__ == "__main__":
    print(main())
