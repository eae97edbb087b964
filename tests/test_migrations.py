"""The schema exists only through the Alembic revisions, and they agree with the models."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import memchat.storage.models  # noqa: F401
from memchat import Memory, StorageError
from memchat.config import database_url
from memchat.storage import database
from memchat.tokens import tokenizer_for


@pytest.fixture
def engine(db_url):
    engine = database.make_engine(database_url(db_url))
    yield engine
    engine.dispose()


def test_first_use_brings_an_empty_database_to_head(db_url):
    with Memory(db_url) as memory:
        memory.new_thread(title="x")
        revision, head = memory.schema_revision()
    assert revision == head is not None


def test_upgrade_downgrade_upgrade(engine):
    database.upgrade(engine)
    assert {"threads", "messages"} <= set(inspect(engine).get_table_names())
    database.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    database.upgrade(engine)
    assert database.current_revision(engine) == database.head_revision()


def test_models_and_migrations_agree(engine):
    database.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": database.include_name})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(tmp_path):
    engine = database.make_engine(database_url(str(tmp_path / "pragmas.db")))
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
    engine.dispose()


def test_a_database_from_a_newer_memchat_is_refused_untouched(engine):
    database.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfuture'"))
    with pytest.raises(StorageError, match="newer memchat"):
        database.upgrade(engine)
    assert database.current_revision(engine) == "f00dfuture"


def test_the_migration_scripts_ship_with_the_package():
    location = database.migrations_dir()
    assert (location / "env.py").is_file()
    assert list((location / "versions").glob("*.py"))


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgres_urls_as_users_write_them_use_psycopg(scheme):
    engine = database.make_engine(f"{scheme}://someone@db.invalid:5432/memory")
    assert engine.url.drivername == "postgresql+psycopg"
    engine.dispose()


def test_the_fast_schema_check_knows_the_newest_revision():
    assert database.HEAD_REVISION == database.head_revision()


@pytest.mark.slow
def test_a_current_database_is_recognised_without_alembic(db_url):
    import subprocess
    import sys

    with Memory(db_url) as memory:
        memory.new_thread()
    probe = (
        "import sys; from memchat import Memory; Memory(sys.argv[1]).threads(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'litellm')))"
    )
    result = subprocess.run([sys.executable, "-c", probe, db_url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_upgrading_a_0001_database_keeps_its_threads_and_counts_lazily(db_url, server):
    engine = database.make_engine(database_url(db_url))
    database.upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO threads (id, title, created_at, updated_at) VALUES ('abc123', 'old', :t, :t)"),
            {"t": "2026-01-01 00:00:00"},
        )
        for position, (role, content) in enumerate([("user", "hello from 0001"), ("assistant", "hi back")]):
            connection.execute(
                text(
                    "INSERT INTO messages (thread_id, position, role, content, status, token_count, created_at) "
                    "VALUES ('abc123', :p, :r, :c, 'complete', 99, :t)"
                ),
                {"p": position, "r": role, "c": content, "t": "2026-01-01 00:00:00"},
            )
    engine.dispose()
    with Memory(db_url) as memory:
        memory.say("abc123", "still there?")
        assert server.last_messages[:2] == [
            {"role": "user", "content": "hello from 0001"},
            {"role": "assistant", "content": "hi back"},
        ]
        o200k = tokenizer_for("openai/gpt-4o")
        expected = [{"o200k_base": o200k.count("hello from 0001")}, {"o200k_base": o200k.count("hi back")}]
        assert [m["tokens"] for m in memory.export("abc123")["messages"]][:2] == expected
        assert [hit.message.content for hit in memory.search("hello")] == ["hello from 0001"], "0004 indexes old messages"
        thread = memory.thread("abc123")
        assert (thread.policy, thread.recall, thread.summary_model) == ("window", 0, None)


def test_the_full_text_index_goes_and_comes_back_with_its_revision(db_url):
    engine = database.make_engine(database_url(db_url))
    database.upgrade(engine)
    with Memory(db_url) as memory:
        memory.import_({"messages": [{"role": "user", "content": "a searchable sentence"}]})
    database.downgrade(engine, "0003")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM messages")).scalar() == 1, "no cascade from rebuilt threads"
    names = set(inspect(engine).get_table_names())
    assert "summaries" not in names and not any(name.startswith("messages_fts") for name in names)
    database.upgrade(engine)
    engine.dispose()
    with Memory(db_url) as memory:
        assert [hit.message.content for hit in memory.search("searchable")] == ["a searchable sentence"]
        memory.import_({"messages": [{"role": "user", "content": "another searchable one"}]})
        assert len(memory.search("searchable")) == 2


def test_downgrading_below_forks_that_read_their_origins_copies_what_they_inherit(db_url, engine):
    chat = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"said {i}"} for i in range(6)]
    with Memory(db_url) as memory:
        (origin,) = memory.import_({"title": "origin", "messages": chat}).threads
        fork = memory.fork(origin, at=3)
        memory.add_messages(fork.id, [("user", "in the fork")])
        deeper = memory.fork(fork.id, at=4)
    database.downgrade(engine, "0011")
    with engine.connect() as connection:
        def held(thread_id):
            rows = connection.execute(
                text("SELECT position, content FROM messages WHERE thread_id = :t ORDER BY position"), {"t": thread_id}
            )
            return [tuple(row) for row in rows]

        assert held(fork.id) == [(i, f"said {i}") for i in range(4)] + [(4, "in the fork")]
        assert held(deeper.id) == held(fork.id)
        assert len(held(origin)) == 6
    database.upgrade(engine)
    with Memory(db_url) as memory:
        assert [m.content for m in memory.messages(deeper.id)] == [f"said {i}" for i in range(4)] + ["in the fork"]
