"""`memchat serve` measured as a client sees it, against the provider called directly and
against LiteLLM's proxy (no memory) forwarding to the same local provider, in one run:

- overhead per turn = (client -> memchat serve -> provider) - (client -> provider), p50/p95/p99,
  on a 10-message and a 100,000-message conversation (budget 4,000; target 100,000 vs 10 <= 1.25x);
- the same overhead through LiteLLM's proxy (`litellm[proxy]`, run offline from a config file),
  when MEMCHAT_BENCH_LITELLM names its `litellm` command, installed in a virtual environment of its
  own (`python3 -m venv proxy && proxy/bin/pip install 'litellm[proxy]'`: the proxy's pins would
  hold memchat's litellm back);
- throughput: clients on distinct conversations at once, turns/s with 1 and 2 workers on SQLite
  and with 2 replicas on PostgreSQL (when one answers), and whether every turn was stored.

    python bench/serve.py
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import ROOT, WORDS, export_file, fresh_postgres_database, memchat_command, run, table

sys.path.insert(0, str(ROOT / "tests"))
from fake_openai import FakeOpenAI  # noqa: E402
from serving import free_port  # noqa: E402

REQUESTS = 300
WARMUP = 30
BUDGET = 4000
PROXY_KEY = "sk-bench-master"
THROUGHPUT_CLIENTS = 8
THROUGHPUT_TURNS = 25
SAME_HISTORY = "LiteLLM proxy, the client resending what memchat sent"


def _wait(url: str, process: subprocess.Popen, seconds: float = 90) -> None:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def _serve(env: dict, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        memchat_command() + ["serve", "--port", str(port), "--log-level", "warning", *args],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    _wait(f"http://127.0.0.1:{port}/healthz", process)
    return process, f"http://127.0.0.1:{port}"


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _litellm_proxy(provider_url: str, folder: Path) -> tuple[subprocess.Popen, str] | None:
    command = os.environ.get("MEMCHAT_BENCH_LITELLM")
    if not command:
        return None
    config = folder / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o\n"
        f"      api_base: {provider_url}\n"
        "      api_key: sk-bench\n"
        "general_settings:\n"
        f"  master_key: {PROXY_KEY}\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [command, "--config", str(config), "--port", str(port), "--host", "127.0.0.1", "--num_workers", "1"],
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    _wait(f"http://127.0.0.1:{port}/health/liveliness", process, seconds=180)
    return process, f"http://127.0.0.1:{port}"


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def _chat_sized(n: int, words: int, seed: str) -> str:
    rng = random.Random(f"{seed} {n}")
    return f"{seed} {n}: " + " ".join(rng.choice(WORDS) for _ in range(words)) + "?"


CHAT_QUESTION_WORDS = 50
CHAT_ANSWER_WORDS = 220
"""About 70 and 300 tokens: the sizes chat logs show (as `common.conversation`)."""


def overhead(env: dict, provider: FakeOpenAI, threads: dict[str, str], folder: Path) -> tuple[str, dict]:
    """Each path's overhead over the provider alone, measured in one interleaved run, in two
    kinds of turn: short ones (a few words each way, so a 4,000-token window holds some 500
    messages) and chat-sized ones (questions of ~70 tokens, answers of ~300, ~20 messages)."""
    served, base = _serve(env)
    proxy = _litellm_proxy(provider.url, folder)
    client = httpx.Client(timeout=60)
    provider.on(
        lambda body: body["messages"][-1]["content"].startswith("Q "),
        lambda body: _chat_sized(len(body["messages"]), CHAT_ANSWER_WORDS, "A"),
    )
    question = {"short": lambda n: f"and then? {n}", "chat-sized": lambda n: _chat_sized(n, CHAT_QUESTION_WORDS, "Q")}

    def direct(url: str, messages: list[dict], headers: dict | None = None):
        return client.post(url, headers=headers, json={"model": "gpt-4o", "messages": messages, "max_tokens": 400})

    paths: dict[str, object] = {}
    sent: dict[str, list[dict]] = {kind: [] for kind in question}
    for kind, ask in question.items():
        paths[f"provider alone, {kind} turns"] = lambda n, ask=ask: direct(
            f"{provider.url}/chat/completions", [{"role": "user", "content": ask(n)}]
        )
        for name, thread in threads.items():
            if not name.endswith(kind):
                continue

            def turn(n: int, thread=thread, ask=ask, kind=kind, small=name.startswith("10 ")):
                answer = client.post(
                    f"{base}/v1/responses",
                    json={"model": "openai/gpt-4o", "conversation": thread, "input": ask(n), "max_output_tokens": 400},
                )
                if small:
                    sent[kind] = provider.last_messages
                return answer

            paths[f"memchat serve, {name} turns"] = turn
        if proxy:
            auth = {"Authorization": f"Bearer {PROXY_KEY}"}
            paths[f"LiteLLM proxy (no memory), {kind} turns"] = lambda n, ask=ask: direct(
                f"{proxy[1]}/v1/chat/completions", [{"role": "user", "content": ask(n)}], auth
            )
            # A client without memory resends its history itself: the proxy gets the very list
            # memchat sent for the 10-message conversation just before, so litellm's
            # per-message work is the same on both sides.
            paths[f"{SAME_HISTORY}, {kind} turns"] = lambda n, kind=kind: direct(
                f"{proxy[1]}/v1/chat/completions", sent[kind], auth
            )
    timings: dict[str, list[float]] = {name: [] for name in paths}
    try:
        for n in range(WARMUP + REQUESTS):
            for name, call in paths.items():
                started = time.perf_counter()
                answer = call(n)
                elapsed = time.perf_counter() - started
                if answer.status_code != 200:
                    raise SystemExit(f"{name}: {answer.status_code} {answer.text[:200]}")
                if n >= WARMUP:
                    timings[name].append(elapsed)
    finally:
        _stop(served)
        if proxy:
            _stop(proxy[0])
    rows, figures, notes = [], {}, []
    for kind in question:
        direct_cuts = _percentiles(timings[f"provider alone, {kind} turns"])
        for name, samples in timings.items():
            if not name.endswith(f"{kind} turns"):
                continue
            cuts = _percentiles(samples)
            if name.startswith("provider alone"):
                rows.append([name, *(f"{c * 1000:.2f}" for c in cuts), "-", "-", "-"])
                continue
            extra = [max(c - d, 0.0) * 1000 for c, d in zip(cuts, direct_cuts)]
            figures[name] = extra
            rows.append([name, *(f"{e:.2f}" for e in (c * 1000 for c in cuts)), *(f"{e:.2f}" for e in extra)])
        small = figures[f"memchat serve, 10 messages, {kind} turns"][0]
        large = figures[f"memchat serve, 100,000 messages, {kind} turns"][0]
        window = len(sent[kind]) - 1
        notes.append(
            f"{kind} turns (a window of ~{window} messages): 100,000 vs 10 messages, overhead p50 "
            f"{large / small:.2f}x (target <= 1.25x)"
        )
        if proxy:
            proxy_p50 = figures[f"LiteLLM proxy (no memory), {kind} turns"][0]
            same_p50 = figures[f"{SAME_HISTORY}, {kind} turns"][0]
            notes.append(
                f"{kind} turns: memchat (10 messages) vs LiteLLM proxy, overhead p50 {small / proxy_p50:.2f}x (target <= 1.0x)"
            )
            notes.append(
                f"{kind} turns: memchat (10 messages) vs LiteLLM proxy sent the same history by its client, "
                f"overhead p50 {small / same_p50:.2f}x"
            )
    if not proxy:
        notes.append(
            "LiteLLM's proxy rows are missing: set MEMCHAT_BENCH_LITELLM to the `litellm` command of a virtual "
            "environment holding `litellm[proxy]`"
        )
    text = table(
        f"`memchat serve`: a turn as the client sees it, {REQUESTS} requests per path, budget {BUDGET} (ms)",
        ["path", "p50", "p95", "p99", "overhead p50", "overhead p95", "overhead p99"],
        rows,
    )
    return text + "\n" + "\n".join(f"- {note}" for note in notes) + "\n", figures


def _throughput_run(bases: list[str], conversations: list[str]) -> tuple[float, list[str]]:
    failures: list[str] = []

    def client_turns(index: int) -> None:
        with httpx.Client(timeout=120) as client:
            for turn in range(THROUGHPUT_TURNS):
                answer = client.post(
                    f"{bases[index % len(bases)]}/v1/responses",
                    json={"model": "openai/gpt-4o", "conversation": conversations[index], "input": f"turn {turn}"},
                )
                if answer.status_code != 200:
                    failures.append(answer.text[:200])

    workers = [threading.Thread(target=client_turns, args=(i,)) for i in range(len(conversations))]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(conversations) * THROUGHPUT_TURNS / (time.perf_counter() - started), failures


def throughput(env: dict, folder: Path) -> str:
    rows = []
    setups = [("SQLite, 1 worker", env, 1, ["--workers", "1"]), ("SQLite, 2 workers", env, 1, ["--workers", "2"])]
    postgres = fresh_postgres_database("serve")
    if postgres:
        setups.append(("PostgreSQL, 2 replicas", {**env, "MEMCHAT_DB": postgres}, 2, []))
    for label, setup_env, replicas, args in setups:
        conversations = [
            run(memchat_command() + ["new", "--model", "openai/gpt-4o"], env=setup_env).stdout.strip()
            for _ in range(THROUGHPUT_CLIENTS)
        ]
        servers = [_serve(setup_env, *args) for _ in range(replicas)]
        try:
            rate, failures = _throughput_run([base for _, base in servers], conversations)
        finally:
            for process, _ in servers:
                _stop(process)
        from memchat import Memory

        with Memory(setup_env["MEMCHAT_DB"]) as memory:
            stored = sum(len(memory.messages(c)) for c in conversations)
        expected = 2 * THROUGHPUT_CLIENTS * THROUGHPUT_TURNS
        rows.append([label, f"{rate:.1f}", f"{stored}/{expected}", len(failures)])
    return table(
        f"`memchat serve` throughput: {THROUGHPUT_CLIENTS} clients on distinct conversations, {THROUGHPUT_TURNS} turns each",
        ["setup", "turns/s", "messages stored", "failed requests"],
        rows,
    )


def main() -> str:
    provider = FakeOpenAI()
    try:
        with tempfile.TemporaryDirectory() as folder:
            env = {"OPENAI_API_BASE": provider.url, "OPENAI_BASE_URL": provider.url, "OPENAI_API_KEY": "sk-bench",
                   "MEMCHAT_DB": str(Path(folder) / "serve.db")}
            threads = {}
            for size in (10, 100_000):
                path = export_file(Path(folder) / f"{size}.json", size)
                for kind in ("short", "chat-sized"):
                    thread = run(memchat_command() + ["import", str(path)], env=env).stdout.strip()
                    run(memchat_command() + ["set", thread, "--budget", str(BUDGET)], env=env)
                    threads[f"{size:,} messages, {kind}"] = thread
            text, _ = overhead(env, provider, threads, Path(folder))
            return text + "\n" + throughput(env, Path(folder))
    finally:
        provider.close()


if __name__ == "__main__":
    print(main())
