"""Full-text search over stored messages, and recall of older messages into a turn's context."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from memchat import InvalidInput, llm
from memchat.storage.fulltext import fts5_scoped, fts5_search, highlights, recall_words

COUNT = llm.counter("openai/gpt-4o")

CONVERSATION = [
    ("user", "We are planning a trip to Lisbon in May."),
    ("assistant", "Lisbon in May is warm; take tram 28 through Alfama."),
    ("user", "My passport number is X1234567, keep it in mind."),
    ("assistant", "Noted: passport X1234567."),
    ("user", "The tram in Lisbon: is tram 28 crowded? Is the tram worth it?"),
    ("assistant", "Tram 28 is crowded in the morning; ride it early."),
    ("user", "What about Porto?"),
    ("assistant", "Porto is three hours north by train."),
]


@pytest.fixture
def trip(memory):
    [thread_id] = memory.import_(
        {"title": "Trip", "model": "openai/gpt-4o", "messages": [{"role": r, "content": c} for r, c in CONVERSATION]}
    ).threads
    return thread_id


def positions(hits):
    return [hit.message.position for hit in hits]


def test_search_finds_every_word_ranks_by_relevance_and_marks_the_matches(memory, trip):
    hits = memory.search("lisbon tram")
    assert set(positions(hits)) == {1, 4}
    assert positions(hits)[0] == 4, "three mentions of tram outrank one"
    text, spans = highlights(hits[0].snippet)
    assert {text[start:end].lower() for start, end in spans} >= {"tram", "lisbon"}
    assert hits[0].thread_title == "Trip" and hits[0].message.role == "user"
    assert hits[0].score >= hits[1].score


def test_search_syntax_phrases_or_and_exclusion(memory, trip):
    assert positions(memory.search('"tram 28" -crowded')) == [1]
    assert set(positions(memory.search("porto OR passport"))) == {2, 3, 6, 7}
    assert memory.search("x1234567")[0].message.position in (2, 3)
    assert memory.search("submarine") == []


def test_search_stems_words(memory, trip):
    assert 0 in positions(memory.search("plans"))


def test_search_in_one_thread_and_after_changes(memory, trip):
    other = memory.new_thread(title="Other")
    memory.import_({"title": "Other", "messages": [{"role": "user", "content": "A tram in Vienna"}]})
    assert len({hit.message.thread_id for hit in memory.search("tram")}) == 2
    assert {hit.message.thread_id for hit in memory.search("tram", thread_id=trip)} == {trip}
    memory.delete(trip)
    assert [hit.thread_title for hit in memory.search("tram")] == ["Other"]
    assert memory.search("tram", thread_id=other.id) == []


def test_search_looks_at_contents_only(memory, trip):
    assert memory.search(trip) == [] and memory.search(trip, thread_id=trip) == []


def test_search_input_that_cannot_match_is_refused(memory, trip):
    with pytest.raises(InvalidInput, match="at least one word"):
        memory.search("-- !!")
    with pytest.raises(InvalidInput, match="at least one word"):
        memory.search("-tram")


def test_fts5_queries_quote_every_word():
    assert fts5_search('tram "alfama hill" OR porto -crowded') == '(("tram") AND ("alfama hill" OR "porto")) NOT "crowded"'
    assert fts5_search('NEAR( "a" AND b)*') == '(("NEAR") AND ("a") AND ("AND") AND ("b"))'
    assert recall_words("What was my passport number, again? The PASSPORT!") == ["passport", "number"]
    assert recall_words("Joanna's dog won't bark, didn't it?") == ["joanna", "dog", "won", "bark"], "no contraction pieces"
    assert fts5_scoped('"a"', ['ab"c']) == 'content : ("a") AND thread_id : ("ab""c")'
    assert fts5_scoped('"a"', ["f", "o"]) == 'content : ("a") AND thread_id : ("f" OR "o")'
    assert fts5_scoped('"a"', None) == 'content : ("a")'


def test_recall_adds_matching_older_messages_as_marked_excerpts_inside_the_budget(memory, server, trip):
    memory.import_({"messages": [{"role": "user", "content": "My passport number? In another thread."}]})
    memory.configure(trip, budget=500, recall=2, system="You are a travel agent.")
    for i in range(8):
        memory.say(trip, f"small talk {i} " + "about nothing much " * 12)
    reply = memory.say(trip, "Remind me of my passport number?")
    sent = server.last_messages
    assert sent[0]["content"] == "You are a travel agent."
    excerpts = sent[1]
    assert excerpts["role"] == "system" and excerpts["content"].startswith("Excerpts recalled from earlier")
    lines = excerpts["content"].splitlines()[1:]
    assert lines[0].startswith("[#2 · user · ") and lines[0].endswith("] My passport number is X1234567, keep it in mind.")
    assert lines[1].startswith("[#3 · assistant · ") and "UTC]" in lines[1]
    recall = next(e for e in reply.context.entries if e.kind == "recall")
    assert recall.recalled == (2, 3)
    window = [e.position for e in reply.context.entries if e.kind == "history"]
    assert window and min(window) > 3
    assert COUNT(sent) <= 500


def test_recall_only_takes_messages_outside_the_window(memory, server, trip):
    memory.configure(trip, recall=3)
    context = memory.context(trip, "what about the tram and the passport?")
    assert [e.kind for e in context.entries if e.kind == "recall"] == []
    assert len([e for e in context.entries if e.kind == "history"]) == len(CONVERSATION)


def test_recall_on_one_turn_and_shown_by_context(memory, server, trip, memchat):
    for i in range(6):
        memory.say(trip, f"small talk {i} " + "about nothing much " * 12)
    context = memory.context(trip, "passport?", budget=250, recall=1)
    recall = next(e for e in context.entries if e.kind == "recall")
    assert len(recall.recalled) == 1 and recall.recalled[0] in (2, 3)
    assert context.prompt_tokens <= 250
    memory.say(trip, "passport?", budget=250)
    assert not any(m["content"].startswith("Excerpts") for m in server.last_messages), "recall is off for the thread"
    shown = memchat("context", trip, "passport?", "--budget", "250", "--recall", "1", check=True).stdout
    assert "recall  system" in shown and "(recalled)" in shown


def test_recall_with_a_summary_comes_after_it(memory, server):
    server.on(lambda body: body["messages"][-1]["content"].startswith("Summary so far:"), "SUMMARY: facts.")
    thread = memory.new_thread(policy="summary", recall=1, budget=400)
    memory.say(thread.id, "My locker code is 4711.")
    for i in range(25):
        memory.say(thread.id, f"chat {i} " + "filler words here " * 6)
    memory.say(thread.id, "What is my locker code?")
    sent = server.last_messages
    assert sent[0]["content"].startswith("Summary of the earlier conversation")
    assert sent[1]["content"].startswith("Excerpts recalled") and "My locker code is 4711." in sent[1]["content"]
    assert COUNT(sent) <= 400


def test_search_cli_text_and_json(memory, trip, memchat):
    run = memchat
    shown = run("search", "passport")
    assert shown.returncode == 0 and f"{trip} #2 user" in shown.stdout and "X1234567" in shown.stdout
    data = json.loads(run("search", "tram", "--json", "--thread", trip, "-n", "1").stdout)
    assert len(data) == 1 and data[0]["position"] == 4 and data[0]["thread"] == trip
    start, end = data[0]["highlights"][0]
    assert data[0]["snippet"][start:end].lower() == "tram"
    missing = run("search", "submarine")
    assert missing.returncode == 1 and "no message matches" in missing.stderr
    missing_json = run("search", "submarine", "--json")
    assert missing_json.returncode == 1 and json.loads(missing_json.stdout) == []
    bad = run("search", "!!")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_recall_takes_at_most_a_quarter_of_the_room_and_passes_over_an_excerpt_too_long(memory, server):
    from memchat.context import RECALL_SHARE

    long_match = "passport expire " * 60 + "with many more words about paperwork " * 20
    [thread] = memory.import_(
        {
            "model": "openai/gpt-4o",
            "budget": 600,
            "recall": 2,
            "messages": [
                {"role": "user", "content": long_match},
                {"role": "assistant", "content": "Noted."},
                {"role": "user", "content": "My passport expires in June."},
                {"role": "assistant", "content": "I will remember."},
            ]
            + [
                {"role": role, "content": f"small talk {i} " + "about nothing much " * 12}
                for i in range(10)
                for role in ("user", "assistant")
            ],
        }
    ).threads
    question = "When does my passport expire? The paperwork?"
    ranked = [m.position for m in memory.store.recall(thread, question, before=4, limit=6)]
    assert ranked[0] == 0, "the long message matches best"
    reply = memory.say(thread, question)
    recall = next(e for e in reply.context.entries if e.kind == "recall")
    assert 0 not in recall.recalled and 2 in recall.recalled
    room = 600 - COUNT([{"role": "user", "content": question}])
    assert recall.tokens <= int(room * RECALL_SHARE)
    assert COUNT(server.last_messages) <= 600


def test_the_message_next_to_a_strong_match_outranks_a_weak_match_alone(memory, server):
    """The answer shares no word with the question that recalls it: it comes because the message
    before it matches well, ahead of a message that shares a single common word."""
    chat = [("user", "What is the name of your dog?"), ("assistant", "Rex, a beagle from the shelter."),
            ("user", "Nice!")]
    chat += [(role, f"small talk {i} " + "about nothing much " * 12) for i in range(3) for role in ("user", "assistant")]
    chat += [("user", "My neighbour has a dog too."), ("assistant", "How lovely.")]
    chat += [(role, f"small talk {i} " + "about nothing much " * 12) for i in range(3, 15) for role in ("user", "assistant")]
    [thread] = memory.import_({"model": "openai/gpt-4o", "budget": 800,
                               "messages": [{"role": r, "content": c} for r, c in chat]}).threads
    question = "Remind me, what was the name of the dog?"
    two = next(e for e in memory.context(thread, question, recall=2).entries if e.kind == "recall")
    assert two.recalled == (0, 1), "k counts messages: the match and the answer next to it, not the weaker match"
    assert "Rex, a beagle" in two.content
    one = next(e for e in memory.context(thread, question, recall=1).entries if e.kind == "recall")
    assert one.recalled == (0,)
    three = next(e for e in memory.context(thread, question, recall=3).entries if e.kind == "recall")
    assert three.recalled == (0, 1, 9), "then the weaker match"


def test_a_word_weighs_by_how_rare_it_is_in_the_thread_not_in_the_database(memory):
    """A word said all through one conversation tells little there, however rare it is in the
    others: recall in a thread ranks the same whatever else the database holds."""
    chat = [pair for i in range(3) for pair in (("user", f"Lisbon day {i}: we walked a lot."), ("assistant", f"Nice, day {i}."))]
    chat += [("user", "I lost my passport."), ("assistant", "Call the embassy.")]
    chat += [("user", "Lisbon again tomorrow."), ("assistant", "Enjoy.")]
    [thread] = memory.import_({"model": "openai/gpt-4o", "messages": [{"role": r, "content": c} for r, c in chat]}).threads

    def ranked() -> list[int]:
        return [m.position for m in memory.store.recall(thread, "Lisbon passport?", before=len(chat), limit=3)]

    alone = ranked()
    assert alone[0] == 6, "the one message with the word rare in this thread"
    other = [{"role": "user", "content": f"passport renewal form {i}"} for i in range(200)]
    memory.import_({"model": "openai/gpt-4o", "messages": other})
    assert ranked() == alone


def test_a_word_in_more_messages_than_recall_reads_is_weighed_from_how_far_back_they_reach():
    from memchat.storage.fulltext import WordMatches, document_frequency, rank_recalled, recall_scan

    def matches(positions: list[int], complete: bool) -> WordMatches:
        return WordMatches(positions, [0.0] * len(positions), complete)

    assert document_frequency(matches([90, 50, 10], complete=True), 100) == 3
    assert document_frequency(matches([99, 98, 97, 96], complete=False), 100) == 100, "in every message read"
    assert document_frequency(matches([99, 89, 79, 69, 59], complete=False), 1000) == 5 * 1000 / (1000 - 59)
    assert recall_scan(1) > recall_scan(8) >= recall_scan(1000) > 0, "a bounded read, shared by the words"
    common = matches(list(range(999, 999 - 250, -1)), complete=False)
    rare = matches([10], complete=True)
    ranked = rank_recalled([common, rare], 1000, keep=5)
    assert ranked[0] == 10 and ranked[1:3] in ([11, 9], [9, 11]), "the rare word's message, then its neighbours"


def test_a_match_said_in_the_same_sitting_as_the_other_words_ranks_higher(memory):
    """Two messages share one word with the question; the older one was said the same day as a
    message holding the question's other word, and comes first."""
    january, march = datetime(2026, 1, 1, 10, tzinfo=timezone.utc), datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    said = [("user", "We booked a hotel in Porto.")] + [("assistant", "Fine."), ("user", "Ok.")] * 2 + [
        ("assistant", "Plenty of time."),
        ("user", "The hotel has a pool too."),
    ]
    later = [("assistant", "Fine."), ("user", "Ok.")] * 3 + [("assistant", "The train to Porto leaves at nine.")]
    messages = [
        {"role": role, "content": text, "created_at": (start + timedelta(minutes=i)).isoformat()}
        for start, part in ((january, said), (march, later))
        for i, (role, text) in enumerate(part)
    ]
    [thread] = memory.import_({"model": "openai/gpt-4o", "messages": messages}).threads
    ranked = [m.position for m in memory.store.recall(thread, "Porto pool?", before=len(messages), limit=20)]
    assert ranked[0] == 6, "the one message with the rarer word"
    assert ranked.index(0) < ranked.index(13), "Porto said the day the pool was, before Porto said later"


def test_a_message_naming_a_date_recalls_what_was_said_that_day(memory):
    days = [datetime(2026, month, 1, 9, tzinfo=timezone.utc) for month in (1, 3, 5)]
    said = {0: "We talked about the garden.", 1: "We talked about the boat.", 2: "We talked about the garden again."}
    messages = [
        {"role": role, "content": f"{said[index]} ({role} {i})", "created_at": (day + timedelta(minutes=i)).isoformat()}
        for index, day in enumerate(days)
        for i, role in enumerate(("user", "assistant") * 3)
    ]
    [thread] = memory.import_({"model": "openai/gpt-4o", "messages": messages}).threads
    for question in ("What did we discuss on 1 March 2026?", "And on March 1st, 2026?", "What about 2026-03-01?",
                     "Anything in March 2026 about the garden?"):
        ranked = [m.position for m in memory.store.recall(thread, question, before=len(messages), limit=6)]
        assert sorted(ranked) == list(range(6, 12)), question
    ranked = [m.position for m in memory.store.recall(thread, "the garden on 1 May 2026?", before=14, limit=2)]
    assert ranked == [13, 12], "only messages older than the window; the date's and the word's both"


def test_a_short_message_is_recalled_with_the_words_said_just_before_it(memory, server):
    chat = [("user", "We adopted a beagle, we call him Rex."), ("assistant", "Rex the beagle, lovely!")]
    chat += [(role, f"small talk {i} " + "about nothing much " * 12) for i in range(8) for role in ("user", "assistant")]
    chat += [("user", "The beagle chewed my shoes today."), ("assistant", "Beagles love to chew.")]
    [thread] = memory.import_({"model": "openai/gpt-4o", "budget": 400, "recall": 2,
                               "messages": [{"role": r, "content": c} for r, c in chat]}).threads
    context = memory.context(thread, "And his name?", with_dropped=False)
    assert 0 not in [e.position for e in context.entries if e.kind == "history"], "the adoption is outside the window"
    recall = next(e for e in context.entries if e.kind == "recall")
    assert recall.recalled == (0, 1) and "call him Rex" in recall.content, "found through the window's 'beagle'"
    longer = memory.context(thread, "Remind me of the name of the pet you told me about?", with_dropped=False)
    assert not [e for e in longer.entries if e.kind == "recall"], "a message with words of its own is read alone"


def test_dates_a_message_names():
    from memchat.storage.fulltext import dates_named

    def days(text: str) -> list[tuple[str, str]]:
        return [(start.date().isoformat(), end.date().isoformat()) for start, end in dates_named(text)]

    assert days("What dish did Nate make on 9 November, 2022?") == [("2022-11-09", "2022-11-10")]
    assert days("on Sept. 4th 2021, then 2021-09-06") == [("2021-09-04", "2021-09-05"), ("2021-09-06", "2021-09-07")]
    assert days("in December 2023 or 2024-02") == [("2023-12-01", "2024-01-01"), ("2024-02-01", "2024-03-01")]
    assert days("on 31 June 2023") == [("2023-06-01", "2023-07-01")], "no such day: the month"
    assert days("I paid 2023 dollars for 3 items") == []


def test_an_excerpt_too_long_for_the_room_is_passed_over_for_the_next():
    from memchat.context import Excerpt, fit_excerpts

    def count(text: str) -> int:
        return len(text.split())

    def cost(role: str, tokens: int) -> int:
        return tokens

    hit = Excerpt(4, "user", "short match", "2026-01-01 00:00 UTC")
    long_answer = Excerpt(5, "assistant", "word " * 200, "2026-01-01 00:00 UTC")
    other = Excerpt(9, "user", "another match", "2026-01-01 00:00 UTC")
    assert fit_excerpts([hit, long_answer, other], 3, 60, count, cost).recalled == (4, 9)
    assert fit_excerpts([other, hit], 1, 60, count, cost).recalled == (9,), "k excerpts, best first"
    assert fit_excerpts([long_answer], 3, 60, count, cost) is None
