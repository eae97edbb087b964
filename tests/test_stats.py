"""`memchat stats`: turns, tokens, cost and latency where they went, failed and cut-off turns,
summary calls apart; unknown prices shown as unknown; a fork's copies not counted twice; each
tenant sees its own."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from memchat import InvalidInput, ProviderError, ReplyCutOff, Unanswered

PRICED, UNPRICED = "openai/gpt-4o-mini", "openai/memchat-unpriced-model"


@pytest.fixture
def history(memory, server):
    """Two threads: three answered turns, one failed and one cut off on a priced model; one
    turn on a model litellm has no price for; and an imported summary call."""
    trip = memory.new_thread(title="Trip", model=PRICED)
    server.reply("One.", "Two.", "Three.")
    for question in ("a", "b", "c"):
        memory.say(trip.id, question)
    server.fail(400, "bad request")
    with pytest.raises(Unanswered) as caught:
        memory.say(trip.id, "d")
    assert isinstance(caught.value.cause, ProviderError)
    other = memory.new_thread(title="Other", model=UNPRICED)
    server.reply("Unpriced.")
    memory.say(other.id, "e")
    server.reply("a long reply cut off")
    server.drop_after(2)
    with pytest.raises(Unanswered) as caught:
        memory.say(other.id, "f", stream=True)
    assert isinstance(caught.value.cause, ReplyCutOff)
    [summarized] = memory.import_({
        "title": "Summarized", "model": PRICED,
        "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
        "summaries": [{"first_position": 0, "last_position": 1, "content": "s", "model": "openai/gpt-4o",
                       "usage": {"prompt_tokens": 100, "completion_tokens": 10}, "cost": 0.25, "latency_ms": 900}],
    }).threads
    return trip.id, other.id, summarized


def test_totals_by_model_with_failures_cut_offs_and_unknown_prices(memory, history):
    found = memory.stats(by="model")
    rows = {row["model"]: row for row in found["turns"]}
    priced, unpriced = rows[PRICED], rows[UNPRICED]
    assert (priced["calls"], priced["failed"], priced["partial"]) == (3, 1, 0)
    assert (priced["prompt_tokens"], priced["completion_tokens"]) == (63, 15)
    assert priced["cost"] > 0 and priced["unknown_cost"] == 0
    assert priced["latency_p50_ms"] is not None and priced["latency_p50_ms"] <= priced["latency_p95_ms"]
    assert (unpriced["calls"], unpriced["partial"], unpriced["failed"]) == (2, 1, 0)
    assert unpriced["cost"] is None and unpriced["unknown_cost"] == 2
    [summaries] = found["summaries"]
    assert (summaries["model"], summaries["calls"], summaries["prompt_tokens"]) == ("openai/gpt-4o", 1, 100)
    assert summaries["cost"] == 0.25
    assert (summaries["latency_p50_ms"], summaries["latency_p95_ms"]) == (900, 900)
    [everything] = memory.stats()["turns"]
    assert (everything["calls"], everything["failed"], everything["partial"]) == (5, 1, 1)
    assert everything["cost"] == priced["cost"] and everything["unknown_cost"] == 2


def test_by_thread_and_day_one_thread_and_since(memory, history):
    trip, other, summarized = history
    by_thread = {row["thread"]: row for row in memory.stats(by="thread")["turns"]}
    assert set(by_thread) == {trip, other}
    assert (by_thread[trip]["title"], by_thread[trip]["calls"]) == ("Trip", 3)
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert [row["day"] for row in memory.stats(by="day")["turns"]] == [today]
    assert memory.stats(other)["turns"][0]["calls"] == 2 and memory.stats(other)["summaries"] == []
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    assert memory.stats(since=tomorrow) == {"turns": [], "summaries": []}
    with pytest.raises(InvalidInput, match="stats: group --by one of model, day, thread"):
        memory.stats(by="week")


def test_a_forks_copies_are_not_counted_again(memory, history, server):
    trip, _, summarized = history
    before = memory.stats()
    fork = memory.fork(trip)
    memory.fork(summarized)
    assert memory.stats() == before
    server.reply("Four.")
    memory.say(fork.id, "g")
    assert memory.stats(fork.id)["turns"][0]["calls"] == 1
    assert memory.stats()["turns"][0]["calls"] == before["turns"][0]["calls"] + 1


def test_the_cli_table_and_json(memchat, memory, history):
    table = memchat("stats", "--by", "model")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "turns:" and lines[1].split() == [
        "MODEL", "CALLS", "FAILED", "PARTIAL", "PROMPT", "COMPLETION", "COST", "P50", "MS", "P95", "MS",
    ]
    unpriced = next(line for line in lines if line.startswith(UNPRICED))
    assert " unknown " in unpriced and "$0 " not in unpriced
    assert "summary calls:" in lines and any(line.startswith("openai/gpt-4o ") and "$0.2500" in line for line in lines)
    assert json.loads(memchat("stats", "--json").stdout) == memory.stats()
    bad = memchat("stats", "--since", "last tuesday")
    assert bad.returncode == 2 and "--since: 'last tuesday' is not a date" in bad.stderr


def test_show_list_and_the_usage_line_say_unknown_where_stats_does(memchat, memory, history, server):
    trip, other, summarized = history
    totals = memory.usage_totals()
    assert (totals[other]["cost"], totals[other]["unknown_cost"]) == (None, 2), "a reply and a cut-off one, unpriced"
    assert totals[trip]["cost"] == memory.stats(trip)["turns"][0]["cost"] and totals[trip]["unknown_cost"] == 0
    assert (totals[summarized]["cost"], totals[summarized]["unknown_cost"]) == (0.25, 0)
    shown = memchat("show", other, "--no-pager")
    assert shown.returncode == 0, shown.stderr
    assert "tokens, cost unknown (replies and summaries)" in shown.stdout and "$0" not in shown.stdout
    listed = {thread["id"]: thread["usage"] for thread in json.loads(memchat("list", "--json").stdout)}
    assert (listed[other]["cost"], listed[other]["unknown_cost"]) == (None, 2)
    assert listed[trip] == totals[trip]
    server.reply("Again.")
    said = memchat("say", other, "g", "-u", "--no-stream")
    assert said.returncode == 0 and ", cost unknown, " in said.stderr, said.stderr
    priced = memchat("say", trip, "h", "-u", "--no-stream")
    assert priced.returncode == 0 and re.search(r", cost \$0\.0\d+, ", priced.stderr), priced.stderr


def test_the_offline_echo_model_costs_a_known_nothing(memchat, memory):
    thread = memory.new_thread(model="memchat/echo")
    memory.say(thread.id, "hi")
    assert memory.messages(thread.id)[-1].cost == 0.0
    assert memory.usage_totals(thread.id)[thread.id]["cost"] == 0.0
    said = memchat("say", thread.id, "again", "-u")
    assert said.returncode == 0 and ", cost $0, " in said.stderr, said.stderr
    assert "tokens, cost $0 (replies and summaries)" in memchat("show", thread.id, "--no-pager").stdout
    [row] = [line for line in memchat("stats").stdout.splitlines() if line.startswith("all ")]
    assert " $0 " in row and "unknown" not in row


@pytest.mark.isolation
def test_through_a_server_each_tenant_sees_its_own(memchat, memory, server):
    from serving import Served

    keys = [memory.create_key(name) for name in ("ann", "bob")]
    served = Served()
    try:
        def client(key: str, *args: str) -> subprocess.CompletedProcess:
            return memchat("--server", served.url, *args, env={"MEMCHAT_DB": "/nonexistent/never-opened.db", "MEMCHAT_API_KEY": key})

        thread = client(keys[0], "new", "--model", PRICED).stdout.strip()
        server.reply("Hi Ann.")
        assert client(keys[0], "say", thread, "hello").returncode == 0
        ann = json.loads(client(keys[0], "stats", "--json", "--by", "thread").stdout)
        assert [(row["thread"], row["calls"]) for row in ann["turns"]] == [(thread, 1)]
        assert json.loads(client(keys[1], "stats", "--json").stdout) == {"turns": [], "summaries": []}
        assert client(keys[1], "stats", thread).returncode == 3
    finally:
        served.stop()
