"""Fuzzing the import path: whatever the input, a one-line InvalidInput or a clean import."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memchat import InvalidInput, Memory

from helpers import sqlite_only

pytestmark = sqlite_only

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
payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(json.dumps),
    exports.map(json.dumps),
    st.lists(exports, max_size=3).map(json.dumps),
    exports.map(lambda data: json.dumps(data)[: len(json.dumps(data)) // 2]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=payloads)
def test_import_never_fails_any_other_way(tmp_path_factory, payload):
    with Memory(str(tmp_path_factory.mktemp("fuzz") / "m.db")) as memory:
        try:
            ids = memory.import_(payload)
        except InvalidInput as exc:
            assert "\n" not in str(exc)
            assert memory.threads() == []
        else:
            assert len(memory.threads()) == len(ids) > 0


@pytest.fixture
def db_url(tmp_path):
    """Each example opens its own database: one run, not one per backend."""
    return str(tmp_path / "unused.db")
