"""Fuzzing the import path: whatever the input, a one-line InvalidInput or a clean import."""

import json
import shutil

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from memchat import InvalidInput, Memory

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "tool", "robot", ""]), "content": st.text(max_size=30)},
        optional={"status": st.sampled_from(["complete", "partial", "bogus"]), "created_at": st.text(max_size=30)},
    ),
    max_size=5,
)
exports = st.fixed_dictionaries(
    {"messages": messages},
    optional={"title": json_values, "model": json_values, "system": json_values, "budget": json_values},
)
replayable = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=30)},
        optional={"status": st.sampled_from(["complete", "partial", "failed"])},
    ),
    max_size=6,
)
plausible_exports = st.fixed_dictionaries(
    {"messages": replayable},
    optional={"title": st.text(max_size=20), "system": st.text(max_size=20), "budget": st.integers(1, 10_000)},
)
payloads = st.one_of(
    plausible_exports.map(json.dumps),
    st.lists(plausible_exports, min_size=1, max_size=3).map(json.dumps),
    st.binary(max_size=200),
    json_values.map(json.dumps),
    exports.map(json.dumps),
    st.lists(exports, max_size=3).map(json.dumps),
    exports.map(lambda data: json.dumps(data)[: len(json.dumps(data)) // 2]),
)


@pytest.fixture(scope="module")
def empty_database(tmp_path_factory):
    """A migrated, empty database: each example imports into a copy of its own (migrating a new
    file for each of 300 examples is most of the test's time otherwise)."""
    path = tmp_path_factory.mktemp("template") / "m.db"
    with Memory(str(path)) as memory:
        assert memory.threads() == []  # the first read migrates it
    return path


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=payloads)
def test_import_never_fails_any_other_way(tmp_path_factory, empty_database, payload):
    database = tmp_path_factory.mktemp("fuzz") / "m.db"
    shutil.copy(empty_database, database)
    with Memory(str(database)) as memory:
        try:
            ids = memory.import_(payload).threads
        except InvalidInput as exc:
            event("refused")
            assert "\n" not in str(exc)
            assert memory.threads() == []
        else:
            event("imported")
            assert len(memory.threads()) == len(ids) > 0
            data = json.loads(payload)
            for thread_id, exported in zip(ids, data if isinstance(data, list) else [data], strict=True):
                assert_stored_as_given(memory, thread_id, exported)


def assert_stored_as_given(memory, thread_id, exported):
    """Every message stored with the role, content and status it came with; a leading system
    message becomes the thread's system prompt."""
    given = list(exported["messages"])
    system = exported.get("system")
    if given and given[0]["role"] == "system" and (system is None or given[0]["content"] == system):
        system = given.pop(0)["content"]
    thread = memory.thread(thread_id)
    assert thread.system == (system if system and system.strip() else None)
    assert thread.title == exported.get("title", "")
    stored = [(m.role, m.content, m.status) for m in memory.messages(thread_id)]
    assert stored == [(m["role"], m["content"], m.get("status", "complete")) for m in given]
